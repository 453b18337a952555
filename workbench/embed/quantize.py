"""Storage quantization of float32 embeddings: float16, int8 scalar, and binary (sign bits).

- float16: half precision, 2 bytes a dimension.
- int8: per-dimension uniform scalar quantization with 256 levels between the minimum and maximum of
  that dimension in the data (faiss ``SQ8``); 1 byte a dimension; a decoded value is within half a
  step of the original (values outside the learned range are clipped to it).
- binary: one sign bit a dimension (``x > 0``), packed with ``np.packbits``; searched by Hamming
  distance (Charikar, "Similarity estimation techniques from rounding algorithms", 2002).

:func:`quantization_tradeoff` measures all three against exact float32 search. Queries stay float32
for float16 and int8 (asymmetric distance, as faiss does) and are binarised for binary search.
Nothing here imports torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.data.registry import load_dataset
from workbench.embed.encoder import embed_dataset
from workbench.errors import DatasetError, QueryError
from workbench.io import atomic_write_json, atomic_write_text
from workbench.plotting import pyplot, save_png
from workbench.vectors.formats import check_matrix
from workbench.vectors.kernel import check_dim, check_metric, prepare, scores, top_k_of_scores
from workbench.vectors.recall import recall_ids

SCHEMES = ("float32", "float16", "int8", "binary")
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def encode_float16(x: np.ndarray) -> np.ndarray:
    """float16 codes of float32 vectors (values beyond float16's range raise)."""
    x = check_matrix(x, "vectors")
    big = np.abs(x) > np.finfo(np.float16).max
    if big.any():
        i, j = np.argwhere(big)[0]
        raise DatasetError(f"vectors: value {x[i, j]} at row {i}, column {j} overflows float16")
    return x.astype(np.float16)


def decode_float16(codes: np.ndarray) -> np.ndarray:
    return np.asarray(codes, dtype=np.float32)


@dataclass(frozen=True)
class Int8Ranges:
    """Per-dimension ranges of the int8 quantizer: value = ``low + code * step``, code in 0..255."""

    low: np.ndarray  # (d,) float32
    step: np.ndarray  # (d,) float32, (max - min) / 255; 1.0 for a constant dimension

    @property
    def dim(self) -> int:
        return int(self.low.shape[0])


def fit_int8(x: np.ndarray) -> Int8Ranges:
    """Learn each dimension's [min, max] on ``x`` (the vectors to be stored)."""
    x = check_matrix(x, "vectors")
    if x.shape[0] == 0:
        raise DatasetError("vectors: cannot learn int8 ranges from 0 vectors")
    low, high = x.min(axis=0), x.max(axis=0)
    step = (high - low) / np.float32(255)
    step[step == 0] = 1.0  # a constant dimension decodes exactly to low with code 0
    return Int8Ranges(low.astype(np.float32), step.astype(np.float32))


def encode_int8(x: np.ndarray, ranges: Int8Ranges) -> np.ndarray:
    """uint8 codes: ``round((x - low) / step)`` clipped to 0..255."""
    x = check_matrix(x, "vectors")
    check_dim("vectors", x.shape[1], ranges.dim, "int8 ranges have")
    codes = np.rint((x - ranges.low) / ranges.step)
    return np.clip(codes, 0, 255).astype(np.uint8)


def decode_int8(codes: np.ndarray, ranges: Int8Ranges) -> np.ndarray:
    codes = np.asarray(codes)
    check_dim("int8 codes", codes.shape[-1], ranges.dim, "int8 ranges have")
    return (ranges.low + codes.astype(np.float32) * ranges.step).astype(np.float32)


def encode_binary(x: np.ndarray) -> np.ndarray:
    """Sign bits (``x > 0``) packed big-endian into ``ceil(d / 8)`` bytes a vector."""
    x = check_matrix(x, "vectors")
    return np.packbits(x > 0, axis=1)


def decode_binary(codes: np.ndarray, dim: int) -> np.ndarray:
    """±1 float32 vectors from sign bits (the direction only: magnitudes are not stored)."""
    bits = np.unpackbits(np.asarray(codes, dtype=np.uint8), axis=1, count=dim)
    return np.where(bits == 1, np.float32(1), np.float32(-1))


def hamming_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(len(a), len(b))`` Hamming distances between packed bit codes of equal width."""
    a, b = np.asarray(a, dtype=np.uint8), np.asarray(b, dtype=np.uint8)
    check_dim("query codes (bytes)", a.shape[1], b.shape[1], "base codes (bytes) have")
    out = np.empty((a.shape[0], b.shape[0]), dtype=np.int32)
    rows = max(1, (1 << 25) // max(1, b.size))  # bound the (rows, n, bytes) XOR temporary to ~32 MB
    for s in range(0, a.shape[0], rows):
        out[s:s + rows] = _POPCOUNT[a[s:s + rows, None, :] ^ b[None, :, :]].sum(axis=2, dtype=np.int32)
    return out


def _hamming_top_k(q_codes: np.ndarray, b_codes: np.ndarray, k: int) -> np.ndarray:
    # integer distances tie often: rank by (distance, id) through one exact int64 key
    n = b_codes.shape[0]
    key = hamming_distances(q_codes, b_codes).astype(np.int64) * n + np.arange(n)
    return top_k_of_scores(-key, k)


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean id overlap of ``found`` with the exact top-k ``truth``."""
    return float(recall_ids(found, truth, truth.shape[1]).mean())


def quantization_tradeoff(base: np.ndarray, queries: np.ndarray, k: int = 10, metric: str = "cosine",
                          rescore_factor: int = 10) -> pd.DataFrame:
    """One row per scheme (float32, float16, int8, binary): size, reconstruction error, recall@k.

    Columns: ``scheme``, ``bytes_per_vector`` (codes only; int8's 2 x d float32 ranges are shared by
    the whole set), ``compression_ratio`` (float32 bytes / code bytes), ``reconstruction_mse`` (mean
    squared error per component of decode(encode(x)); NaN for binary, which keeps no magnitudes),
    ``recall_at_{k}`` (top-k searched on the codes vs. exact float32 top-k, id overlap) and
    ``recall_at_{k}_rescored``: the top ``rescore_factor * k`` candidates from the codes re-ranked with
    the float32 vectors, the usual way binary and int8 indexes are served (Yamada et al., "Efficient
    Passage Retrieval with Hashing for Open-domain Question Answering", ACL 2021; Shakir, Aarsen & Lee,
    "Binary and Scalar Embedding Quantization", Hugging Face, 2024). Search on float16/int8 codes applies
    ``metric`` to the decoded vectors with float32 queries; binary ranks by Hamming distance between
    sign codes (an estimate of the angle, whatever ``metric`` is). ``df.attrs`` holds k, metric, sizes.
    """
    base = check_matrix(base, "base")
    queries = check_matrix(queries, "queries")
    check_dim("queries", queries.shape[1], base.shape[1], "base has")
    check_metric(metric, DatasetError)
    if not 1 <= k <= base.shape[0]:
        raise QueryError(f"k must be in 1..{base.shape[0]} (the number of base vectors), got {k}")
    if queries.shape[0] == 0:
        raise QueryError("queries: need at least one query vector")
    n, d = base.shape
    q = prepare(queries, metric, "queries")
    exact_scores = scores(q, prepare(base, metric, "base"), metric)
    truth = top_k_of_scores(exact_scores, k)
    n_cand = min(n, rescore_factor * k)  # ranked by (score, id), so the first k are the codes' top-k

    def rescored(candidates: np.ndarray) -> float:
        s = np.take_along_axis(exact_scores, candidates, axis=1)
        return _recall(np.take_along_axis(candidates, top_k_of_scores(s, k), axis=1), truth)

    ranges = fit_int8(base)
    decoded = {"float32": base, "float16": decode_float16(encode_float16(base)),
               "int8": decode_int8(encode_int8(base, ranges), ranges)}
    rows = []
    for scheme in SCHEMES:
        if scheme == "binary":
            b_codes, q_codes = encode_binary(base), encode_binary(queries)
            nbytes, mse = b_codes.shape[1], float("nan")
            cand = _hamming_top_k(q_codes, b_codes, n_cand)
        else:
            x = decoded[scheme]
            nbytes = d * {"float32": 4, "float16": 2, "int8": 1}[scheme]
            mse = float(np.mean(np.square(x.astype(np.float64) - base)))
            cand = top_k_of_scores(scores(q, prepare(x, metric, f"{scheme} vectors"), metric), n_cand)
        rows.append({"scheme": scheme, "bytes_per_vector": int(nbytes), "compression_ratio": 4 * d / nbytes,
                     "reconstruction_mse": mse, f"recall_at_{k}": _recall(cand[:, :k], truth),
                     f"recall_at_{k}_rescored": rescored(cand)})
    df = pd.DataFrame(rows)
    df.attrs.update({"k": k, "metric": metric, "n_base": n, "n_queries": int(queries.shape[0]), "dim": d,
                     "rescore_candidates": n_cand})
    return df


def plot_quantization_tradeoff(df: pd.DataFrame, path: str | os.PathLike, title: str) -> Path:
    """Recall@k against bytes per vector (log scale), with and without float32 re-ranking; saves a PNG."""
    plt = pyplot()
    from matplotlib.lines import Line2D

    k = df.attrs.get("k") or int(next(c for c in df.columns if c.startswith("recall_at_")).split("_")[2])
    plain, resc = f"recall_at_{k}", f"recall_at_{k}_rescored"
    fig, ax = plt.subplots(figsize=(10, 4.8))
    colours = dict(zip(SCHEMES, ("#333333", "#1f77b4", "#2ca02c", "#d62728")))
    for _, row in df.iterrows():
        c = colours.get(row["scheme"], "#777777")
        ax.scatter(row["bytes_per_vector"], row[plain], s=70, color=c, zorder=3)
        if resc in df and row["scheme"] != "float32":
            ax.scatter(row["bytes_per_vector"], row[resc], s=70, facecolors="none", edgecolors=c, linewidths=1.8,
                       zorder=3)
            ax.plot([row["bytes_per_vector"]] * 2, [row[plain], row[resc]], color=c, ls=":", lw=1)
        ax.annotate(row["scheme"], (row["bytes_per_vector"], row[plain]), textcoords="offset points",
                    xytext=(7, -16), fontsize=9, color=c)
    ax.set_xscale("log", base=2)
    ticks = sorted(df["bytes_per_vector"].unique())
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.set_xlim(min(ticks) / 1.6, max(ticks) * 1.6)
    ax.set_ylim(min(0.0, float(df[plain].min()) - 0.05), 1.04)
    ax.set_xlabel("bytes per vector (log scale)")
    ax.set_ylabel(f"recall@{k} vs exact float32 search")
    ax.grid(True, which="major", alpha=0.3)
    handles = [Line2D([], [], marker="o", ls="", color="#555555", label="search on the codes"),
               Line2D([], [], marker="o", ls="", markerfacecolor="none", markeredgecolor="#555555",
                      label=f"top {df.attrs.get('rescore_candidates', 10 * k)} re-ranked\nwith float32")]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=9)
    table = [f"{'scheme':<8}{'bytes':>6}{'ratio':>6}{'recall':>8}{'re-rank':>8}"] + [
        f"{r['scheme']:<8}{r['bytes_per_vector']:>6}{r['compression_ratio']:>5.0f}x{r[plain]:>8.3f}"
        + (f"{r[resc]:>8.3f}" if resc in df else "") for _, r in df.iterrows()]
    ax.text(1.02, 0.62, "\n".join(table), transform=ax.transAxes, family="monospace", fontsize=8, va="top")
    sub = ", ".join(f"{key}={df.attrs[key]}" for key in ("k", "metric", "n_base", "n_queries", "dim")
                    if key in df.attrs)
    ax.set_title(f"{title}\n{sub}" if sub else title, fontsize=10)
    fig.tight_layout()
    return save_png(fig, path)


def quantization_report(dataset: str, out_dir: str | os.PathLike, k: int = 10, metric: str = "cosine",
                        limit: int | None = None) -> pd.DataFrame:
    """Embed a collection (through the cache), measure the trade-off, write ``quantization.csv/.json/.png``."""
    ds = load_dataset(dataset)
    docs, queries = embed_dataset(ds, limit=limit)
    df = quantization_tradeoff(docs, queries, k=k, metric=metric)
    out = Path(out_dir)
    atomic_write_text(out / "quantization.csv", df.to_csv(index=False))
    atomic_write_json(out / "quantization.json", {"dataset": ds.name, "digest": ds.digest, **df.attrs,
                                                  "rows": df.to_dict(orient="records")})
    plot_quantization_tradeoff(df, out / "quantization.png",
                               f"Storage quantization of all-MiniLM-L6-v2 embeddings: {ds.name}")
    return df

