"""Vector-set formats and the synthetic generator (workbench.vectors.formats)."""

from __future__ import annotations

import struct

import h5py
import numpy as np
import pytest

from workbench.vectors.formats import (
    VectorSet,
    load_vectors,
    read_bvecs,
    read_fvecs,
    read_ivecs,
    save_npz,
    synthetic_clusters,
    write_vecs,
)
from workbench.errors import DatasetError, DimensionError


@pytest.fixture
def arrays():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((50, 8)).astype(np.float32)
    queries = rng.standard_normal((5, 8)).astype(np.float32)
    d = ((queries[:, None, :] - base[None, :, :]) ** 2).sum(-1)
    neighbors = np.argsort(d, axis=1)[:, :10]
    distances = np.sqrt(np.take_along_axis(d, neighbors, axis=1)).astype(np.float32)
    return base, queries, neighbors, distances


def vecs_bytes(rows, fmt: str) -> bytes:
    """Reference writer with struct, independent of write_vecs."""
    return b"".join(struct.pack("<i", len(r)) + struct.pack(f"<{len(r)}{fmt}", *r) for r in rows)


@pytest.mark.parametrize("distance, metric", [("angular", "cosine"), ("euclidean", "l2"), ("dot", "ip")])
def test_ann_benchmarks_hdf5(tmp_path, arrays, distance, metric):
    base, queries, neighbors, distances = arrays
    path = tmp_path / f"toy-8-{distance}.hdf5"
    with h5py.File(path, "w") as f:
        f.attrs["distance"] = distance
        f.attrs["point_type"] = "float"
        f.create_dataset("train", data=base)
        f.create_dataset("test", data=queries)
        f.create_dataset("neighbors", data=neighbors.astype(np.int32))
        f.create_dataset("distances", data=distances)
    vs = load_vectors(path)
    assert vs.name == f"toy-8-{distance}" and vs.metric == metric
    np.testing.assert_array_equal(vs.base, base)
    np.testing.assert_array_equal(vs.queries, queries)
    np.testing.assert_array_equal(vs.neighbors, neighbors)
    np.testing.assert_array_equal(vs.distances, distances)
    assert vs.base.dtype == np.float32 and vs.neighbors.dtype == np.int64
    assert load_vectors(path, metric="ip").metric == "ip"  # explicit metric overrides the file


def test_hdf5_errors(tmp_path, arrays):
    base, queries, *_ = arrays
    path = tmp_path / "bad.hdf5"
    with h5py.File(path, "w") as f:
        f.attrs["distance"] = "hamming"
        f.create_dataset("train", data=base)
    with pytest.raises(DatasetError, match=r"bad.hdf5: missing dataset\(s\) test \(found train\)"):
        load_vectors(path)
    with h5py.File(path, "a") as f:
        f.create_dataset("test", data=queries)
    with pytest.raises(DatasetError, match="distance 'hamming' is not supported"):
        load_vectors(path)
    path.write_bytes(b"not hdf5")
    with pytest.raises(DatasetError, match="not a readable HDF5 file"):
        load_vectors(path)


@pytest.mark.parametrize("suffix, fmt, reader, dtype", [
    (".fvecs", "f", read_fvecs, np.float32), (".ivecs", "i", read_ivecs, np.int32),
    (".bvecs", "B", read_bvecs, np.uint8)])
def test_vecs_readers_against_struct(tmp_path, suffix, fmt, reader, dtype):
    rng = np.random.default_rng(1)
    rows = (rng.integers(0, 200, size=(7, 5)) if fmt in "iB" else rng.standard_normal((7, 5))).astype(dtype)
    path = tmp_path / f"x{suffix}"
    path.write_bytes(vecs_bytes(rows.tolist(), fmt))
    out = reader(path)
    assert out.dtype == dtype and out.shape == (7, 5)
    np.testing.assert_array_equal(out, rows)
    np.testing.assert_array_equal(reader(path, limit=3), rows[:3])
    write_vecs(tmp_path / f"y{suffix}", rows)
    assert (tmp_path / f"y{suffix}").read_bytes() == path.read_bytes()


def test_vecs_truncated_and_inconsistent(tmp_path):
    path = tmp_path / "t.fvecs"
    good = vecs_bytes([[1.0, 2.0, 3.0]] * 4, "f")
    path.write_bytes(good[:-2])
    with pytest.raises(DatasetError, match=r"t.fvecs: vector 3 is truncated \(14 of 16 bytes; dimension 3\)"):
        read_fvecs(path)
    np.testing.assert_array_equal(read_fvecs(path, limit=3), [[1, 2, 3]] * 3)  # the intact prefix reads
    path.write_bytes(vecs_bytes([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [4.0, 5.0]], "f") + b"\0" * 4)
    with pytest.raises(DatasetError, match=r"t.fvecs: vector 2 has dimension 2, vector 0 has 3"):
        read_fvecs(path)
    path.write_bytes(b"")
    with pytest.raises(DatasetError, match="t.fvecs: file is empty"):
        read_fvecs(path)
    path.write_bytes(b"\1\0")
    with pytest.raises(DatasetError, match=r"vector 0 is truncated \(2 bytes"):
        read_fvecs(path)
    path.write_bytes(struct.pack("<i", 0))
    with pytest.raises(DatasetError, match="vector 0 has dimension 0"):
        read_fvecs(path)
    with pytest.raises(DatasetError, match="missing.ivecs: file not found"):
        read_ivecs(tmp_path / "missing.ivecs")


def test_texmex_siblings(tmp_path, arrays):
    base, queries, neighbors, _ = arrays
    write_vecs(tmp_path / "toy_base.fvecs", base)
    only_base = load_vectors(tmp_path / "toy_base.fvecs")
    assert only_base.n_queries == 0 and only_base.neighbors is None and only_base.dim == 8
    write_vecs(tmp_path / "toy_query.fvecs", queries)
    write_vecs(tmp_path / "toy_groundtruth.ivecs", neighbors)
    vs = load_vectors(tmp_path / "toy_base.fvecs")
    assert vs.name == "toy" and vs.metric == "l2"
    np.testing.assert_array_equal(vs.queries, queries)
    np.testing.assert_array_equal(vs.neighbors, neighbors)


def test_bvecs_base_becomes_float32(tmp_path):
    rows = np.arange(12, dtype=np.uint8).reshape(3, 4)
    write_vecs(tmp_path / "b.bvecs", rows)
    vs = load_vectors(tmp_path / "b.bvecs")
    assert vs.base.dtype == np.float32
    np.testing.assert_array_equal(vs.base, rows)


def test_npz_round_trip_and_npy(tmp_path, arrays):
    base, queries, neighbors, distances = arrays
    vs = VectorSet("toy", base, queries, "cosine", neighbors, distances)
    save_npz(vs, tmp_path / "toy.npz")
    back = load_vectors(tmp_path / "toy.npz")
    assert (back.name, back.metric) == ("toy", "cosine")
    for a, b in [(back.base, base), (back.queries, queries), (back.neighbors, neighbors),
                 (back.distances, distances)]:
        np.testing.assert_array_equal(a, b)
    np.savez(tmp_path / "plain.npz", base=base, queries=queries)
    plain = load_vectors(tmp_path / "plain.npz")
    assert plain.metric == "l2" and plain.neighbors is None and plain.name == "plain"
    np.savez(tmp_path / "nobase.npz", queries=queries)
    with pytest.raises(DatasetError, match=r"nobase.npz: missing array\(s\) base \(found queries\)"):
        load_vectors(tmp_path / "nobase.npz")
    np.save(tmp_path / "b.npy", base.astype(np.float64))
    b = load_vectors(tmp_path / "b.npy", metric="ip")
    assert b.base.dtype == np.float32 and b.n_queries == 0 and b.metric == "ip"


def test_load_errors(tmp_path):
    with pytest.raises(DatasetError, match="nope.npz: file not found"):
        load_vectors(tmp_path / "nope.npz")
    (tmp_path / "x.csv").write_text("1,2\n")
    with pytest.raises(DatasetError, match=r"unknown vector format '.csv'"):
        load_vectors(tmp_path / "x.csv")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(DatasetError, match="obj.npy: not a readable .npy array"):
        load_vectors(tmp_path / "obj.npy")


def test_vectorset_validation(arrays):
    base, queries, neighbors, distances = arrays
    with pytest.raises(DimensionError, match="t: queries: dimension 7, base has 8"):
        VectorSet("t", base, queries[:, :7])
    bad = base.copy()
    bad[3, 2] = np.nan
    with pytest.raises(DatasetError, match=r"t: base: non-finite value nan at row 3, column 2"):
        VectorSet("t", bad, queries)
    with pytest.raises(DatasetError, match="value 1e\\+300 at row 0, column 0 overflows float32"):
        VectorSet("t", np.full((2, 8), 1e300), queries)
    with pytest.raises(DatasetError, match="t: unknown metric 'hamming'; expected one of cosine, ip, l2"):
        VectorSet("t", base, queries, "hamming")
    with pytest.raises(DatasetError, match=r"t: base: expected a 2-D array \(n, d\), got shape \(8,\)"):
        VectorSet("t", base[0], queries)
    with pytest.raises(DatasetError, match="dtype <U1 is not numeric"):
        VectorSet("t", np.array([["a"]]), queries)
    with pytest.raises(DatasetError, match=r"base is empty \(shape \(0, 8\)\)"):
        VectorSet("t", base[:0], queries)
    with pytest.raises(DatasetError, match="neighbors has 4 rows, queries has 5"):
        VectorSet("t", base, queries, neighbors=neighbors[:4])
    wrong = neighbors.copy()
    wrong[1, 4] = 50
    with pytest.raises(DatasetError, match=r"neighbors\[1, 4\] = 50 is not an id in base \(0..49\)"):
        VectorSet("t", base, queries, neighbors=wrong)
    with pytest.raises(DatasetError, match=r"distances shape \(5, 9\) differs from neighbors shape \(5, 10\)"):
        VectorSet("t", base, queries, neighbors=neighbors, distances=distances[:, :9])
    with pytest.raises(DatasetError, match="distances given without neighbors"):
        VectorSet("t", base, queries, distances=distances)
    with pytest.raises(DatasetError, match="ids must be integers"):
        VectorSet("t", base, queries, neighbors=neighbors + 0.5)


def test_synthetic_is_deterministic_and_clustered():
    a = synthetic_clusters(n=500, dim=16, n_queries=20, n_clusters=5, seed=3)
    b = synthetic_clusters(n=500, dim=16, n_queries=20, n_clusters=5, seed=3)
    c = synthetic_clusters(n=500, dim=16, n_queries=20, n_clusters=5, seed=4)
    np.testing.assert_array_equal(a.base, b.base)
    np.testing.assert_array_equal(a.queries, b.queries)
    assert not np.array_equal(a.base, c.base)
    assert a.base.dtype == np.float32 and a.base.shape == (500, 16) and a.queries.shape == (20, 16)
    # queries do not depend on n: growing the base keeps the same query set
    np.testing.assert_array_equal(synthetic_clusters(900, 16, 20, 5, seed=3).queries, a.queries)
    # points sit near one of 5 centres: k-means-free check via nearest-neighbour distance vs. global spread
    d = np.linalg.norm(a.base[:, None] - a.base[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    assert np.median(d.min(axis=1)) < 0.5 * np.median(d[np.isfinite(d)])


def test_synthetic_cosine_is_normalised_and_validates():
    vs = synthetic_clusters(200, 8, 10, 4, seed=0, metric="cosine")
    np.testing.assert_allclose(np.linalg.norm(vs.base, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(vs.queries, axis=1), 1.0, rtol=1e-5)
    assert vs.metric == "cosine"
    with pytest.raises(DatasetError, match="n_clusters must be >= 1, got 0"):
        synthetic_clusters(10, 4, 1, 0, seed=0)
    with pytest.raises(DatasetError, match="metric 'dot'"):
        synthetic_clusters(10, 4, 1, 2, seed=0, metric="dot")
