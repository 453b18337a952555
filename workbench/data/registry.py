"""Named datasets, resolved from ``$WORKBENCH_DATA`` and then ``data/``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from workbench.config import data_dirs
from workbench.data.beir import BeirDataset, load_beir
from workbench.errors import DatasetError

KNOWN_DATASETS = ("cranfield", "cisi", "medline")


@dataclass(frozen=True)
class DatasetLocation:
    name: str
    path: Path | None  # None when not found

    @property
    def present(self) -> bool:
        return self.path is not None


def _is_beir(path: Path) -> bool:
    return (path / "corpus.jsonl").is_file() and (path / "queries.jsonl").is_file()


def find_dataset(name: str) -> Path:
    """Folder of a named dataset; DatasetError naming every place looked in when it is absent."""
    for root in data_dirs():
        if _is_beir(root / name):
            return root / name
    looked = ", ".join(str(d / name) for d in data_dirs())
    hint = f" Run `workbench data fetch {name}`." if name in KNOWN_DATASETS else ""
    raise DatasetError(f"dataset {name!r} not found (looked in {looked}; set WORKBENCH_DATA).{hint}")


def list_datasets() -> list[DatasetLocation]:
    """The known collections plus any other BEIR folder in the data directories."""
    names = list(KNOWN_DATASETS)
    for root in data_dirs():
        if root.is_dir():
            names += sorted(p.name for p in root.iterdir() if _is_beir(p) and p.name not in names)
    out = []
    for name in names:
        try:
            out.append(DatasetLocation(name, find_dataset(name)))
        except DatasetError:
            out.append(DatasetLocation(name, None))
    return out


def load_dataset(name_or_path: str | Path, split: str = "test") -> BeirDataset:
    """Load a named dataset (``cranfield``) or a BEIR folder given by path."""
    p = Path(name_or_path)
    if p.is_dir():
        return load_beir(p, split=split)
    if isinstance(name_or_path, str) and "/" not in name_or_path:
        return load_beir(find_dataset(name_or_path), split=split, name=name_or_path)
    raise DatasetError(f"{name_or_path}: not a dataset name or a BEIR folder")
