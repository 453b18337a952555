"""Storage quantization (workbench.embed.quantize) against brute-force references."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from workbench.embed.quantize import (
    decode_binary,
    decode_float16,
    decode_int8,
    encode_binary,
    encode_float16,
    encode_int8,
    fit_int8,
    hamming_distances,
    plot_quantization_tradeoff,
    quantization_tradeoff,
)
from workbench.errors import DatasetError, DimensionError, QueryError

finite = st.floats(-1e3, 1e3, allow_nan=False, width=32)
matrices = st.tuples(st.integers(1, 12), st.integers(1, 20)).flatmap(
    lambda s: arrays(np.float32, s, elements=finite))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    base = rng.standard_normal((400, 32)).astype(np.float32)
    queries = rng.standard_normal((30, 32)).astype(np.float32)
    return base, queries


@given(matrices)
def test_float16_round_trip_within_half_precision(x):
    back = decode_float16(encode_float16(x))
    assert back.dtype == np.float32
    # float16 keeps 11 significant bits: relative error <= 2**-11, absolute 2**-25 near zero (subnormals)
    np.testing.assert_array_less(np.abs(back - x), np.maximum(np.abs(x) * 2.0**-11, 2.0**-24) + 1e-12)


@given(matrices)
def test_int8_error_within_half_a_step(x):
    ranges = fit_int8(x)
    codes = encode_int8(x, ranges)
    assert codes.dtype == np.uint8 and codes.shape == x.shape
    err = np.abs(decode_int8(codes, ranges) - x)
    # half a step, plus float32 rounding of low + code * step
    tol = ranges.step / 2 + 1e-5 * (np.abs(x).max(axis=0) + 1)
    assert np.all(err <= tol)
    assert codes.min(axis=0).tolist() == [0] * x.shape[1]  # each dimension's minimum maps to code 0


def test_int8_clips_outside_the_learned_range():
    ranges = fit_int8(np.array([[0.0, 1.0], [1.0, 1.0]], dtype=np.float32))
    codes = encode_int8(np.array([[-5.0, 1.0], [9.0, 1.0]], dtype=np.float32), ranges)
    assert codes.tolist() == [[0, 0], [255, 0]]
    np.testing.assert_allclose(decode_int8(codes, ranges), [[0.0, 1.0], [1.0, 1.0]])  # constant dim exact


@given(matrices)
def test_binary_codes_are_packed_sign_bits(x):
    codes = encode_binary(x)
    assert codes.shape == (x.shape[0], (x.shape[1] + 7) // 8)
    for row, code in zip(x, codes):
        bits = "".join(format(byte, "08b") for byte in code)[: x.shape[1]]
        assert bits == "".join("1" if v > 0 else "0" for v in row)
    np.testing.assert_array_equal(decode_binary(codes, x.shape[1]), np.where(x > 0, 1.0, -1.0))


@settings(max_examples=50)
@given(st.integers(1, 6), st.integers(1, 6), st.integers(1, 5), st.integers(0, 2**31 - 1))
def test_hamming_equals_popcount_reference(na, nb, nbytes, seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, size=(na, nbytes), dtype=np.uint8)
    b = rng.integers(0, 256, size=(nb, nbytes), dtype=np.uint8)
    ref = [[sum(bin(int(x) ^ int(y)).count("1") for x, y in zip(ra, rb)) for rb in b] for ra in a]
    assert hamming_distances(a, b).tolist() == ref


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_tradeoff_against_brute_force(data, metric):
    base, queries = data
    df = quantization_tradeoff(base, queries, k=10, metric=metric)
    assert df["scheme"].tolist() == ["float32", "float16", "int8", "binary"]
    assert df["bytes_per_vector"].tolist() == [128, 64, 32, 4]
    assert df["compression_ratio"].tolist() == [1.0, 2.0, 4.0, 32.0]
    r = df.set_index("scheme")
    assert r.loc["float32", "recall_at_10"] == 1.0 and r.loc["float32", "reconstruction_mse"] == 0.0
    assert r.loc["float16", "recall_at_10"] >= 0.99
    assert r.loc["int8", "recall_at_10"] >= 0.9
    assert np.isnan(r.loc["binary", "reconstruction_mse"])
    assert r.loc["float16", "reconstruction_mse"] < r.loc["int8", "reconstruction_mse"]
    # re-ranking the top 100 with float32 can only help
    assert (df["recall_at_10_rescored"] >= df["recall_at_10"] - 1e-12).all()
    assert df.attrs == {"k": 10, "metric": metric, "n_base": 400, "n_queries": 30, "dim": 32,
                        "rescore_candidates": 100}


def test_tradeoff_recall_matches_an_independent_computation(data):
    base, queries = data
    df = quantization_tradeoff(base, queries, k=5, metric="cosine").set_index("scheme")
    bn = base / np.linalg.norm(base, axis=1, keepdims=True)
    qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    truth = [set(np.argsort(-row, kind="stable")[:5]) for row in qn @ bn.T]
    # binary: Hamming distance on sign bits, ties to the lower id
    ham = ((queries[:, None, :] > 0) != (base[None, :, :] > 0)).sum(-1)
    found = [set(np.argsort(row, kind="stable")[:5]) for row in ham]
    expected = np.mean([len(f & t) / 5 for f, t in zip(found, truth)])
    assert df.loc["binary", "recall_at_5"] == pytest.approx(expected)
    # int8: cosine on decoded vectors
    ranges = fit_int8(base)
    x = decode_int8(encode_int8(base, ranges), ranges)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    found = [set(np.argsort(-row, kind="stable")[:5]) for row in qn @ xn.T]
    assert df.loc["int8", "recall_at_5"] == pytest.approx(np.mean([len(f & t) / 5 for f, t in zip(found, truth)]))
    assert df.loc["int8", "reconstruction_mse"] == pytest.approx(np.mean((x.astype(np.float64) - base) ** 2))


def test_bad_inputs(data):
    base, queries = data
    bad = base.copy()
    bad[2, 5] = np.nan
    with pytest.raises(DatasetError, match=r"base: non-finite value nan at row 2, column 5"):
        quantization_tradeoff(bad, queries)
    with pytest.raises(DimensionError, match="queries: dimension 31, base has 32"):
        quantization_tradeoff(base, queries[:, :31])
    with pytest.raises(DatasetError, match="metric 'hamming'"):
        quantization_tradeoff(base, queries, metric="hamming")
    with pytest.raises(QueryError, match=r"k must be in 1..400 \(the number of base vectors\), got 401"):
        quantization_tradeoff(base, queries, k=401)
    with pytest.raises(QueryError, match="need at least one query"):
        quantization_tradeoff(base, queries[:0])
    with pytest.raises(DimensionError, match="vectors: dimension 16, int8 ranges have 32"):
        encode_int8(queries[:, :16], fit_int8(base))
    with pytest.raises(DatasetError, match="overflows float16"):
        encode_float16(np.array([[1e6]], dtype=np.float32))
    with pytest.raises(DatasetError, match=r"vectors: expected a 2-D array \(n, d\), got shape \(32,\)"):
        encode_binary(base[0])
    with pytest.raises(DimensionError, match=r"query codes \(bytes\): dimension 3, base codes \(bytes\) have 4"):
        hamming_distances(np.zeros((1, 3), np.uint8), np.zeros((1, 4), np.uint8))


def test_plot_writes_a_png(tmp_path, data):
    base, queries = data
    df = quantization_tradeoff(base, queries, k=10)
    out = plot_quantization_tradeoff(df, tmp_path / "q.png", "random normal (test)")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_module_does_not_import_torch():
    code = "import sys, workbench.embed.quantize; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"
