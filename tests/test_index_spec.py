"""The --index SPEC grammar and the registry of index libraries."""

from __future__ import annotations

import pytest

from workbench.errors import IndexSpecError
from workbench.index import spec as spec_module
from workbench.index.exact import ExactIndex
from workbench.index.spec import IndexSpec, library, parse_spec


def test_faiss_spec_with_commas_and_a_grid():
    s = parse_spec("faiss:IVF256,PQ48,RFlat?nprobe=8,16&k_factor=1,4")
    assert s.build == {"factory": "IVF256,PQ48,RFlat"}
    assert s.sweep == {"nprobe": (8, 16), "k_factor": (1.0, 4.0)}
    assert len(s.points()) == 4 and {"nprobe": 16, "k_factor": 4} in s.points()
    assert parse_spec(s.text) == s


def test_hnswlib_spec_and_defaults():
    s = parse_spec("hnswlib:M=32?ef=16,32")
    assert s.build == {"M": 32, "ef_construction": 200} and s.points() == [{"ef": 16}, {"ef": 32}]
    assert parse_spec("faiss:Flat").points() == [{}]
    assert parse_spec("hnswlib:M=16,ef_construction=100").label == "hnswlib:M=16,ef_construction=100"


def test_exact_is_a_library_of_its_own():
    s = parse_spec("exact")
    assert s == IndexSpec("exact", {}) == parse_spec("exact:") and s.text == "exact"
    assert isinstance(s.make("l2"), ExactIndex) and s.make("l2").metric == "l2"
    assert parse_spec("faiss:Flat").make("l2").library == "faiss"


def test_swept_values_have_the_library_types():
    s = parse_spec("faiss:IVF16,PQ8,RFlat?nprobe=2&k_factor=1.5")
    assert type(s.sweep["nprobe"][0]) is int and type(s.sweep["k_factor"][0]) is float


@pytest.mark.parametrize("text, message", [
    ("annoy:trees=10", "must start with one of faiss:, hnswlib:, exact"),
    ("hnswlib", "must start with one of"),
    ("faiss:", "missing the faiss factory string"),
    ("faiss:HNSW32,Flat?ef=16", "unknown faiss query parameter\\(s\\) ef"),
    ("faiss:HNSW32,Flat?efSearch=a", "'a' is not an integer"),
    ("faiss:IVF16,Flat?nprobe=2.7", "nprobe: '2.7' is not an integer"),
    ("faiss:HNSW32,Flat?efSearch=nan", "efSearch: 'nan' is not an integer"),
    ("faiss:IVF16,PQ8,RFlat?k_factor=nan", "k_factor: 'nan' must be a positive, finite number"),
    ("faiss:IVF16,Flat?nprobe=0", "nprobe: '0' must be a positive"),
    ("faiss:HNSW32,Flat?efSearch", "expected name=v1,v2"),
    ("faiss:IVF16,Flat?nprobe=1&nprobe=2", "query parameter nprobe given twice"),
    ("hnswlib:M=16?efSearch=10", "unknown hnswlib query parameter"),
    ("hnswlib:M=x", "M must be a positive integer, got 'x'"),
    ("hnswlib:M=16,R=4", "expected M=<int>,ef_construction=<int>"),
    ("exact:Flat", "exact search takes no build parameters"),
    ("exact?k=3", "unknown exact query parameter\\(s\\) k; accepted: none"),
])
def test_bad_specs_are_named(text, message):
    with pytest.raises(IndexSpecError, match=message):
        parse_spec(text)


def test_a_library_that_cannot_be_imported_breaks_only_its_own_specs(monkeypatch):
    monkeypatch.setitem(spec_module.LIBRARIES, "missing", "workbench.index.not_installed:Nothing")
    library.cache_clear()
    try:
        with pytest.raises(IndexSpecError, match="index library missing is unavailable: No module named"):
            parse_spec("missing:x")
        assert parse_spec("faiss:Flat").library == "faiss"
    finally:
        library.cache_clear()


def test_a_module_that_breaks_the_contract_is_named(monkeypatch):
    monkeypatch.setitem(spec_module.LIBRARIES, "broken", "workbench.index.metadata:Metadata")
    library.cache_clear()
    try:
        with pytest.raises(IndexSpecError, match="must define parse_build and the VectorIndex subclass Metadata"):
            parse_spec("broken:x")
    finally:
        library.cache_clear()
