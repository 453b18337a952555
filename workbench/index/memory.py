"""Bytes per vector by formula, to set beside the measured serialized size.

Per vector, ignoring per-index constants (centroids, codebooks, rotation matrices) and HNSW's upper
levels (about 1/M of the nodes): raw float32 is 4d; ``SQ8`` d; ``SQfp16`` 2d; ``PQ{m}x{b}`` m*b/8;
an IVF list entry adds its 8-byte id; ``RFlat`` keeps the 4d raw vector beside the code; an HNSW
level-0 node holds 2M links of 4 bytes (faiss) or 8M + 4 (hnswlib's link count) plus an 8-byte label.
"""

from __future__ import annotations

import re
from typing import Sequence

import pandas as pd

from workbench.index.spec import IndexSpec


def _code_bytes(token: str, dim: int) -> tuple[float, str] | None:
    if token == "Flat":
        return 4 * dim, "4d"
    if token == "SQfp16":
        return 2 * dim, "2d"
    if token == "SQ8":
        return dim, "d"
    if token == "SQ4":
        return dim / 2, "d/2"
    m = re.fullmatch(r"PQ(\d+)(?:x(\d+))?(?:np)?", token)
    if m:
        sub, bits = int(m.group(1)), int(m.group(2) or 8)
        return sub * bits / 8, f"m*b/8 (m={sub}, b={bits})"
    return None


def bytes_per_vector_formula(spec: IndexSpec, dim: int) -> tuple[float | None, str]:
    """``(bytes, formula)`` per vector for ``spec`` at dimension ``dim``; ``(None, reason)`` when unknown."""
    if spec.library == "hnswlib":
        m = spec.build["M"]
        return 8 * m + 4 + 4 * dim + 8, f"8M + 4 + 4d + 8 (M={m})"
    tokens = spec.build["factory"].split(",")
    total, parts = 0.0, []
    for tok in tokens:
        if re.fullmatch(r"OPQ\d+(_\d+)?", tok):
            continue                                   # a d x d rotation, per index not per vector
        ivf = re.fullmatch(r"IVF\d+", tok)
        hnsw = re.fullmatch(r"HNSW(\d+)", tok)
        if ivf:
            total, parts = total + 8, parts + ["8 (list id)"]
        elif hnsw:
            m = int(hnsw.group(1))
            total, parts = total + 8 * m, parts + [f"8M links (M={m})"]
        elif tok == "RFlat":
            total, parts = total + 4 * dim, parts + ["4d (refine)"]
        elif (code := _code_bytes(tok, dim)) is not None:
            total, parts = total + code[0], parts + [code[1]]
        else:
            return None, f"no formula for {tok!r}"
    return total, " + ".join(parts)


def memory_table(results: pd.DataFrame, specs: Sequence[IndexSpec], dim: int) -> pd.DataFrame:
    """One row per built index of a sweep's ``results`` (the harness's rows): its family, measured bytes per
    vector (serialized size / vectors, so per-index constants included), build time and best recall, beside
    the formula's bytes, the formula itself and the ratio to raw float32 (4d bytes)."""
    by_label = {s.label: s for s in specs}
    table = (results.groupby("index", sort=False)
             .agg(family=("family", "first"), bytes_per_vector=("bytes_per_vector", "first"),
                  build_s=("build_s", "first"), best_recall=("recall", "max"))
             .reset_index())
    formulas = [bytes_per_vector_formula(by_label[i], dim) for i in table["index"]]
    table["formula_bytes"] = [f[0] for f in formulas]
    table["formula"] = [f[1] for f in formulas]
    table["vs_float32"] = table["bytes_per_vector"] / (4 * dim)
    return table
