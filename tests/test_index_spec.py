"""The --index SPEC grammar."""

from __future__ import annotations

import pytest

from workbench.index.base import IndexSpecError
from workbench.index.spec import parse_spec


def test_faiss_spec_with_commas_and_a_grid():
    s = parse_spec("faiss:IVF256,PQ48,RFlat?nprobe=8,16&k_factor=1,4")
    assert s.build == {"factory": "IVF256,PQ48,RFlat"}
    assert s.sweep == {"nprobe": (8, 16), "k_factor": (1, 4)}
    assert len(s.points()) == 4 and {"nprobe": 16, "k_factor": 4} in s.points()
    assert parse_spec(s.text) == s


def test_hnswlib_spec_and_defaults():
    s = parse_spec("hnswlib:M=32?ef=16,32")
    assert s.build == {"M": 32, "ef_construction": 200} and s.points() == [{"ef": 16}, {"ef": 32}]
    assert parse_spec("faiss:Flat").points() == [{}]
    assert parse_spec("hnswlib:M=16,ef_construction=100").label == "hnswlib:M=16,ef_construction=100"


@pytest.mark.parametrize("text, message", [
    ("annoy:trees=10", "must start with one of faiss:, hnswlib:"),
    ("faiss:", "missing the faiss factory string"),
    ("faiss:HNSW32,Flat?ef=16", "unknown faiss query parameter\\(s\\) ef"),
    ("faiss:HNSW32,Flat?efSearch=a", "'a' is not a number"),
    ("faiss:HNSW32,Flat?efSearch", "expected name=v1,v2"),
    ("hnswlib:M=16?efSearch=10", "unknown hnswlib query parameter"),
    ("hnswlib:M=x", "'x' is not a number"),
    ("hnswlib:M=16,R=4", "expected M=<int>,ef_construction=<int>"),
])
def test_bad_specs_are_named(text, message):
    with pytest.raises(IndexSpecError, match=message):
        parse_spec(text)
