"""Named sweeps: the default sweeps (ANN and filtered, one IVF list rule: :func:`ivf_lists`), and the
issue's reference configurations with the figures measured on this machine class (46K MiniLM sentence
vectors, 384-d, cosine, recall@10, one query at a time on one thread)."""

from __future__ import annotations

import math

from workbench.errors import IndexSpecError
from workbench.index.scann import default_leaves
from workbench.index.spec import IndexSpec, parse_spec

# point -> (recall@10, QPS) quoted in issue 3; "tops out near" for IVF-PQ without refine
REFERENCE_FIGURES = {
    "hnswlib:M=16,ef_construction=200?ef=32": (0.978, 14_000),
    "faiss:HNSW32,Flat?efSearch=32": (0.983, 10_700),
    "faiss:IVF256,Flat?nprobe=16": (0.955, 4_400),
    "faiss:IVF256,PQ48?nprobe=256": (0.69, None),
}
REFERENCE_SPECS = (
    "hnswlib:M=16,ef_construction=200?ef=32",
    "faiss:HNSW32,Flat?efSearch=32",
    "faiss:IVF256,Flat?nprobe=16",
    "faiss:IVF256,PQ48?nprobe=16,64,256",   # nprobe=256 scans every list: the PQ ceiling
)


def ivf_lists(n: int) -> int:
    """The IVF list count of every default sweep: about sqrt(n), a power of two between 8 and 1024.

    A query costs about ``nlist`` centroid comparisons plus ``nprobe * n / nlist`` list entries, smallest
    near ``nlist = sqrt(nprobe * n)``; sqrt(n) lists also leave sqrt(n) training vectors per centroid, above
    the 39 below which faiss's k-means warns from about 1,500 vectors on. 256 lists on the 46K sentence set
    and on 50K vectors, 128 on 20K, 64 on 4K."""
    return int(min(1024, max(8, 2 ** round(math.log2(math.sqrt(n))))))


def _pq_subvectors(dim: int) -> int:
    """Sub-vectors of 8 dimensions where ``dim`` allows (else 4, 2, 1 sub-vector)."""
    return next(m for m in (dim // 8, dim // 4, dim // 2, dim) if m and dim % m == 0)


def _pq(n: int, dim: int) -> str:
    """The PQ code: 256 centroids a sub-vector, 16 below 10K vectors (too few to train 256)."""
    m = _pq_subvectors(dim)
    return f"PQ{m}" if n >= 10_000 else f"PQ{m}x4"


def default_specs(n: int, dim: int, sweep: str = "ann") -> list[IndexSpec]:
    """The default indexes of a sweep, sized for ``n`` vectors of dimension ``dim`` (IVF: ``ivf_lists(n)``).

    ``sweep="ann"`` (``workbench ann`` with no ``--index``): one sweep per family, including faiss fast-scan
    PQ (4-bit codes, SIMD lookup) with exact re-ranking, usearch and ScaNN (issue 13: the families users
    pick instead); OPQ is left out (its training alone takes minutes at 50K x 384).
    ``sweep="filtered"`` (``workbench filtered``): Flat (pre-filtering it is exact), faiss HNSW, faiss IVF
    and hnswlib, one operating point each."""
    nlist = ivf_lists(n)
    if sweep == "filtered":
        texts = ["faiss:Flat", "faiss:HNSW32,Flat?efSearch=64", f"faiss:IVF{nlist},Flat?nprobe=16",
                 "hnswlib:M=16,ef_construction=200?ef=64"]
        return [parse_spec(t) for t in texts]
    if sweep != "ann":
        raise IndexSpecError(f"unknown default sweep {sweep!r}; expected ann or filtered")
    pq = _pq(n, dim)
    probes = ",".join(str(p) for p in (1, 2, 4, 8, 16, 32, 64) if p <= nlist)
    leaves = default_leaves(n)      # ann-benchmarks' ScaNN setting: about 2 sqrt(n) leaves, AH, re-ordering
    scann_leaves = ",".join(str(p) for p in (4, 8, 16, 32, 64) if p <= leaves)
    texts = [
        "faiss:Flat",
        "faiss:SQfp16",
        "hnswlib:M=16,ef_construction=200?ef=10,16,32,64,128,256",
        "faiss:HNSW32,Flat?efSearch=16,32,64,128,256",
        "faiss:HNSW32,SQ8?efSearch=16,32,64,128,256",
        f"faiss:IVF{nlist},Flat?nprobe={probes}",
        f"faiss:IVF{nlist},SQ8?nprobe={probes}",
        f"faiss:IVF{nlist},{pq}?nprobe={probes}",
        f"faiss:IVF{nlist},{pq},RFlat?nprobe={probes}&k_factor=4",
        f"faiss:IVF{nlist},PQ{_pq_subvectors(dim)}x4fs,RFlat?nprobe={probes}&k_factor=4",
        "usearch:M=16,ef_construction=128,dtype=f32?ef=10,16,32,64,128",
        f"scann:leaves={leaves},reorder=100?leaves_to_search={scann_leaves}&pre_reorder=40,100",
    ]
    return [parse_spec(t) for t in texts]


def reference_specs() -> list[IndexSpec]:
    return [parse_spec(t) for t in REFERENCE_SPECS]


def family_tour_specs(n: int, dim: int) -> list[IndexSpec]:
    """One build per family with two or three query points (notebook 02). OPQ joins from 10K vectors
    (its sub-quantizers have 256 centroids each), trained on a 10K sample for 10 rounds instead of 50
    (2.5 minutes on the sentence set on 2 cores; the full training took 5)."""
    nlist, pq, m = ivf_lists(n), _pq(n, dim), _pq_subvectors(dim)
    texts = [
        "faiss:Flat",
        "faiss:SQfp16",
        "hnswlib:M=16,ef_construction=200?ef=16,64",
        "faiss:HNSW32,Flat?efSearch=16,64",
        "faiss:HNSW32,SQ8?efSearch=16,64",
        f"faiss:IVF{nlist},Flat?nprobe=4,16",
        f"faiss:IVF{nlist},SQ8?nprobe=4,16",
        f"faiss:IVF{nlist},{pq}?nprobe=4,16",
        f"faiss:IVF{nlist},{pq},RFlat?nprobe=4,16&k_factor=4",
    ]
    specs = [parse_spec(t) for t in texts]
    if n < 10_000:
        return specs
    opq = parse_spec(f"faiss:OPQ{m},IVF{nlist},{pq}?nprobe=4,16")
    specs.append(IndexSpec("faiss", {**opq.build, "train_size": 10_000, "opq_niter": 10}, opq.sweep))
    return specs
