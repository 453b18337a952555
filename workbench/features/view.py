"""Feature views: what a view holds (keys, features, time columns, ttl) and how its schema is versioned."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Mapping, Sequence

from workbench.errors import FeatureStoreError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESERVED_PREFIX = "_wb_"



@dataclass(frozen=True)
class FeatureView:
    """A group of features keyed by ``entities`` and stamped by ``timestamp_field`` (Feast's shape).

    ``dtypes`` maps key and feature columns to DuckDB types; when ``None`` they are inferred from the first
    source ingested (integers as BIGINT, floats as DOUBLE). ``ttl`` bounds how old a value may be at the time
    it is read (inclusive); ``None`` means no bound.
    """

    name: str
    entities: Sequence[str]
    features: Sequence[str]
    timestamp_field: str = "event_timestamp"
    created_timestamp_column: str | None = None
    ttl: timedelta | None = None
    dtypes: Mapping[str, str] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "entities", tuple(self.entities))
        object.__setattr__(self, "features", tuple(self.features))
        if not _NAME.match(self.name):
            raise FeatureStoreError(f"feature view name {self.name!r} must match {_NAME.pattern}")
        if not self.entities:
            raise FeatureStoreError(f"feature view {self.name!r} needs at least one entity column")
        if not self.features:
            raise FeatureStoreError(f"feature view {self.name!r} needs at least one feature")
        if self.ttl is not None and not isinstance(self.ttl, timedelta):
            raise FeatureStoreError(f"feature view {self.name!r}: ttl must be a datetime.timedelta (e.g. "
                                    f"timedelta(hours=1)) or None, got {type(self.ttl).__name__} {self.ttl!r}")
        if self.ttl is not None and self.ttl < timedelta(0):
            raise FeatureStoreError(f"feature view {self.name!r}: ttl {self.ttl} is negative")
        seen: set[str] = set()
        for col in self.columns:
            if col.startswith(RESERVED_PREFIX):
                raise FeatureStoreError(f"feature view {self.name!r}: column {col!r} uses the reserved prefix "
                                        f"{RESERVED_PREFIX!r}")
            if col in seen:
                raise FeatureStoreError(f"feature view {self.name!r}: column {col!r} appears twice")
            seen.add(col)
        if self.dtypes is not None:
            missing = [c for c in (*self.entities, *self.features) if c not in self.dtypes]
            if missing:
                raise FeatureStoreError(f"feature view {self.name!r}: dtypes lack {missing}")

    @property
    def columns(self) -> tuple[str, ...]:
        """Every stored column: keys, features, event time, created time (when the view has one)."""
        ts = (self.timestamp_field,) + ((self.created_timestamp_column,) if self.created_timestamp_column else ())
        return (*self.entities, *self.features, *ts)

    @property
    def ttl_us(self) -> int | None:
        """ttl in whole microseconds (the storage resolution), or None."""
        return None if self.ttl is None else self.ttl // timedelta(microseconds=1)

    def with_dtypes(self, dtypes: Mapping[str, str]) -> "FeatureView":
        return replace(self, dtypes=dict(dtypes))

    def schema(self) -> dict:
        """What defines a version: a change here makes a new version (ttl is not part of it)."""
        assert self.dtypes is not None
        return {"entities": list(self.entities), "features": list(self.features),
                "timestamp_field": self.timestamp_field,
                "created_timestamp_column": self.created_timestamp_column,
                "dtypes": {c: self.dtypes[c] for c in (*self.entities, *self.features)}}


def parse_ref(ref: str) -> tuple[str, str]:
    """``"view:feature"`` -> ``("view", "feature")``."""
    view, sep, feature = ref.partition(":")
    if not sep or not view or not feature:
        raise FeatureStoreError(f"feature reference {ref!r} must look like 'view:feature'")
    return view, feature


def quote(name: str) -> str:
    """A SQL identifier, quoted so that any column name is safe."""
    return '"' + name.replace('"', '""') + '"'
