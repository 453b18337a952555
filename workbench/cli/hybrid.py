"""`workbench hybrid DATASET`: BM25, dense and fused retrieval evaluated on a collection's judgements;
`workbench hybrid-bench`: speed of BM25 and of fusion (against ranx)."""

from __future__ import annotations

import argparse

from workbench.cli import emit
from workbench.cli.args import checked_out, non_negative_int, out_dir, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("hybrid", help="evaluate BM25, dense and fused retrieval on a BEIR collection")
    p.add_argument("dataset", help="dataset name or BEIR folder")
    p.add_argument("--out", required=True, type=out_dir, metavar="DIR",
                   help="output folder (metrics.json, runs/NAME.trec, comparison.md)")
    p.add_argument("--folds", type=positive_int, default=5, help="cross-validation folds over queries for tuned fusion")
    p.add_argument("--depth", type=positive_int, default=100, help="results per query of each run")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the fold split and the randomization test")
    p.add_argument("--no-track", action="store_true", help="do not log runs to the tracking store")
    p.add_argument("--backend", default="torch", choices=("torch", "onnx", "onnx-int8", "openvino"),
                   help="embedding model runtime (an ONNX export costs some nDCG@10: compare)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_hybrid)

    b = sub.add_parser("hybrid-bench", help="BM25 index+retrieval time per collection; fusion time vs ranx")
    b.add_argument("datasets", nargs="*", default=["cranfield", "cisi", "medline"])
    b.add_argument("--queries", type=positive_int, default=1000)
    b.add_argument("--candidates", type=positive_int, default=1000)
    b.add_argument("--repeats", type=positive_int, default=3)
    b.add_argument("--out", type=out_dir, metavar="DIR", help="output folder of hybrid.json (default <output dir>/bench)")
    b.add_argument("--json", action="store_true", help="print the result as JSON")
    b.set_defaults(func=_bench)


def _hybrid(args: argparse.Namespace) -> int:
    from workbench.runners import hybrid
    from workbench.tracking.sink import NullSink

    sink = NullSink() if args.no_track else hybrid.tracking_sink(args.store)
    result = hybrid.run_hybrid(args.dataset, args.out, folds=args.folds, depth=args.depth, seed=args.seed,
                               sink=sink, backend=args.backend)
    p = result.payload
    backend = p["dense"]["variant"] or p["dense"]["backend"]
    lines = [f"{p['dataset']}: {p['n_queries']} judged queries, {p['n_docs']} documents, "
             f"{p['folds']}-fold CV for tuned methods, embeddings by {backend}",
             result.table().to_string(float_format=lambda v: f"{v:.4f}"),
             f"best single: {p['best_single']} ({p['methods'][p['best_single']]['ndcg@10']:.4f}), "
             f"best fused: {p['best_fused']} ({p['methods'][p['best_fused']]['ndcg@10']:.4f})",
             f"written to {args.out}"]
    b = p["bundle"]
    lines.append(f"retrieval bundle: {b['path']} ({b['method']} as shipped: nDCG@10 {b['ndcg@10']:.4f} on all "
                 f"judged queries, held-out {b['heldout_ndcg@10']:.4f})")
    run_id = getattr(sink, "parent_run_id", None)
    if run_id:
        lines.append(f"parent run: {run_id}  (register it: workbench register {run_id} --name NAME --alias champion)")
    elif not args.no_track:
        lines.append("parent run: not logged yet (the store was unavailable; it waits in the outbox: workbench runs sync)")
    emit({**{k: p[k] for k in ("dataset", "n_queries", "methods", "best_single", "best_fused", "bundle")},
          "backend": p["dense"]["backend"], "embedding_variant": p["dense"]["variant"], "parent_run_id": run_id},
         args.json, lines)
    return 0


def _bench(args: argparse.Namespace) -> int:
    from workbench.config import output_dir
    from workbench.runners.hybrid import run_hybrid_bench

    payload = run_hybrid_bench(args.datasets, checked_out(args.out, lambda: output_dir() / "bench"), queries=args.queries,
                               candidates=args.candidates, repeats=args.repeats)
    f = payload["fusion"]
    lines = [f"BM25 (bm25s, Lucene k1=1.5 b=0.75), index + top-100 retrieval of all queries, best of {args.repeats}:"]
    lines += [f"  {r['dataset']:10s} {r['docs']:6d} docs {r['queries']:4d} queries  "
              f"{r['bm25_index_and_retrieve_s']:.3f} s" for r in payload["bm25"]]
    lines.append(f"fusion of {f['n_queries']} queries x {f['candidates_per_list']} candidates per list (2 lists), "
                 f"best of {args.repeats}; ranx on {f['ranx_threads']} numba threads "
                 f"(compile {f['ranx_compile_s']:.1f} s, excluded):")
    lines += [f"  {r['method']:14s} ours {r['ours_s']:.3f} s   ranx {r['ranx_s']:.3f} s   "
              f"({r['speedup']:.1f}x)" for r in f["methods"]]
    lines.append(f"written to {payload['written']}")
    emit(payload, args.json, lines)
    return 0
