"""`workbench filtered`: filtered vector search, pre-filter vs post-filter vs exact, across selectivity."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``workbench filtered``."""
    p = sub.add_parser(
        "filtered", help="filtered search: pre-filter, post-filter and exact subset across selectivity",
        description="Attach synthetic attributes (category, year, uniform u) to each vector in DuckDB, select "
                    "ids with 'u < s' for each selectivity s, and measure recall@k against the exact filtered "
                    "top-k, short results and single-query latency for each strategy and index. Writes "
                    "DIR/filtered.parquet, DIR/filtered_recall.png, DIR/filtered_latency.png, DIR/summary.json.")
    p.add_argument("data", metavar="DATA",
                   help="a vector file (.hdf5, .npz, .fvecs, .npy), or a dataset name / BEIR folder "
                        "(documents and queries embedded through the cache)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    p.add_argument("--index", action="append", dest="specs", metavar="SPEC",
                   help="index SPEC as in `workbench ann` (repeatable); default: Flat, faiss HNSW32, "
                        "faiss IVF, hnswlib M=16")
    p.add_argument("--k", type=int, default=10, help="neighbours per query (default 10)")
    p.add_argument("--selectivity", type=_floats, default=None, metavar="S1,S2,...",
                   help="fractions of ids allowed (default 0.001,0.003,0.01,0.03,0.1,0.3,0.5)")
    p.add_argument("--overfetch", type=_ints, default=None, metavar="F1,F2,...",
                   help="post-filter over-fetch factors (default 1,2,10)")
    p.add_argument("--queries", type=int, default=200, metavar="N", help="first N queries (default 200)")
    p.add_argument("--threads", type=int, default=1, help="search threads (default 1: one query at a time)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic attributes")
    p.add_argument("--no-tracking", action="store_true", help="do not log runs to the tracking store")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=handle)


def load_data(data: str) -> tuple[Any, Any, str, dict[str, str]]:
    """``(base, queries, metric, dataset info)`` for a vector file or an (embedded) IR collection."""
    path = Path(data)
    if path.is_file():
        from workbench.data.vectors import load_vectors
        from workbench.io import sha256_file

        vs = load_vectors(path)
        return vs.base, vs.queries, vs.metric, {"name": vs.name, "digest": sha256_file(path), "source": str(path)}
    from workbench.data import load_dataset
    from workbench.embed import embed_dataset

    ds = load_dataset(data)
    docs, queries = embed_dataset(ds)
    return docs, queries, "cosine", {"name": ds.name, "digest": ds.digest, "source": str(ds.path)}


def handle(args: argparse.Namespace) -> int:
    from workbench.bench.filtered import DEFAULT_OVERFETCH, DEFAULT_SELECTIVITIES, run_filtered
    from workbench.errors import WorkbenchError

    if args.queries < 1 or args.k < 1 or args.threads < 1:
        raise WorkbenchError(f"--queries, --k and --threads must be positive, got {args.queries}, {args.k}, "
                             f"{args.threads}")
    base, queries, metric, info = load_data(args.data)
    frame, summary = run_filtered(
        base, queries[: args.queries], metric, args.out, specs=args.specs, k=args.k,
        selectivities=args.selectivity or DEFAULT_SELECTIVITIES, overfetch=args.overfetch or DEFAULT_OVERFETCH,
        threads=args.threads, seed=args.seed, dataset=info, track=not args.no_tracking)
    lines = [f"filtered search on {info['name']}: {summary['n_base']} vectors, {summary['n_queries']} queries, "
             f"k={args.k}, {args.threads} thread(s), one query at a time"]
    cols = ["index", "strategy", "overfetch", "selectivity", "n_allowed", "recall", "frac_short", "p50_ms",
            "p95_ms", "qps"]
    lines.append(frame[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    lines.append(f"wrote {', '.join(summary['files'])}, {args.out / 'summary.json'}")
    from workbench.cli import emit

    emit(summary, args.json, lines)
    return 0
