"""`workbench embed DATASET`: embed a collection's documents and queries through the cache."""

from __future__ import annotations

import argparse
from pathlib import Path

from workbench.cli import emit
from workbench.cli.args import checked_out, out_dir, positive_int

BACKENDS = ("torch", "onnx", "onnx-int8", "openvino")   # workbench.embed.backends.BACKENDS, without importing torch


def _backends(text: str) -> list[str]:
    names = [b.strip() for b in text.split(",") if b.strip()]
    bad = [b for b in names if b not in BACKENDS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown backend(s) {', '.join(bad) or repr(text)}; "
                                         f"expected some of {', '.join(BACKENDS)}")
    return names


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("embed", help="embed a collection (documents and queries) through the cache")
    p.add_argument("dataset", help="dataset name or BEIR folder")
    p.add_argument("--limit", type=positive_int, default=None, help="only the first N documents and queries")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--backend", default="torch", choices=BACKENDS,
                   help="model runtime: PyTorch or an ONNX Runtime export (made once into the cache)")
    p.add_argument("--ray", metavar="ADDRESS", default=None,
                   help="embed the new texts on Ray with a pool of embedder actors: auto (RAY_ADDRESS or a running "
                        "`ray start`), local (a one-node Ray in this process), HOST:PORT or ray://HOST:PORT; "
                        "this process alone writes the cache")
    p.add_argument("--actors", type=positive_int, default=None,
                   help="with --ray: embedder actors of one CPU each (default: one per CPU of the cluster)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_embed)

    q = sub.add_parser("quantize",
                       help="storage quantization trade-off (float16, int8, binary) on an embedded collection")
    q.add_argument("dataset", help="dataset name or BEIR folder")
    q.add_argument("--k", type=positive_int, default=10)
    q.add_argument("--metric", default="cosine", choices=("cosine", "ip", "l2"))
    q.add_argument("--limit", type=positive_int, default=None, help="first N documents and queries only")
    q.add_argument("--out", type=out_dir, default=None, metavar="DIR",
                   help="output folder (default <output dir>/quantization/DATASET)")
    q.add_argument("--json", action="store_true", help="print the table as JSON")
    q.set_defaults(func=_quantize)

    b = sub.add_parser("embed-bench",
                       help="encoding throughput of the Embedder against a bare SentenceTransformer.encode")
    b.add_argument("dataset", help="dataset name or BEIR folder")
    b.add_argument("--limit", type=positive_int, default=1000)
    b.add_argument("--repeats", type=positive_int, default=3)
    b.add_argument("--backend", type=_backends, default=None, metavar="B[,B...]",
                   help="compare these backends (onnx, onnx-int8) with a bare PyTorch encode: texts/s and cosine")
    b.add_argument("--out", type=out_dir, default=None, metavar="DIR",
                   help="output folder of embed.json (default <output dir>/bench)")
    b.add_argument("--json", action="store_true", help="print the result as JSON")
    b.set_defaults(func=_bench)


def _embed(args: argparse.Namespace) -> int:
    import time

    from workbench.data import load_dataset
    from workbench.embed import Embedder

    if args.ray is not None:
        return _embed_on_ray(args)
    start = time.perf_counter()
    ds = load_dataset(args.dataset)
    emb = Embedder(batch_size=args.batch_size, show_progress=not args.json, backend=args.backend)
    texts = ds.doc_texts()[:args.limit] + ds.query_texts()[:args.limit]  # a None limit keeps all
    vecs = emb.encode(texts, desc=f"{ds.name}")
    stats = dict(emb.last_stats)
    stats["seconds"] = round(time.perf_counter() - start, 4)
    payload = {"dataset": ds.name, "model": emb.model_id, "backend": emb.backend, "dim": int(vecs.shape[1]), **stats}
    emit(payload, args.json, [f"{ds.name}: {stats['n_texts']} texts, dim {vecs.shape[1]}, "
                              f"encoded {stats['encoded']}, cache hits {stats['cache_hits']}, "
                              f"{stats['seconds']:.2f} s"]
         + ([f"cache: {emb.cache.root}"] if emb.cache is not None else []))
    return 0


def _embed_on_ray(args: argparse.Namespace) -> int:
    from workbench.runners.embed_ray import embed_on_ray

    r = embed_on_ray(args.dataset, args.ray, limit=args.limit, batch_size=args.batch_size, backend=args.backend,
                     actors=args.actors, progress=not args.json)
    emit(r, args.json, [f"{r['dataset']}: {r['n_texts']} texts, dim {r['dim']}, encoded {r['encoded']} on "
                        f"{r['actors']} actor(s), cache hits {r['cache_hits']}, {r['seconds']:.2f} s",
                        r["ray"]] + [f"  node {node[:12]}: {n} texts" for node, n in r["texts_by_node"].items()])
    return 0


def _quantize(args: argparse.Namespace) -> int:
    from workbench.config import output_dir
    from workbench.embed.quantize import quantization_report

    target = checked_out(args.out, lambda: output_dir() / "quantization" / Path(args.dataset).name)
    table = quantization_report(args.dataset, target, k=args.k, metric=args.metric, limit=args.limit)
    emit({"out": str(target), "rows": table.to_dict(orient="records")}, args.json,
         [table.to_string(index=False), f"written to {target}"])
    return 0


def _bench(args: argparse.Namespace) -> int:
    from workbench.config import output_dir
    from workbench.data import load_dataset
    from workbench.embed.throughput import compare_throughput
    from workbench.io import atomic_write_json

    folder = checked_out(args.out, lambda: output_dir() / "bench")
    ds = load_dataset(args.dataset)
    texts = ds.doc_texts()[:args.limit]
    if args.backend:
        return _bench_backends(args, ds.name, texts, folder)
    result = compare_throughput(texts, repeats=args.repeats)
    result["dataset"] = ds.name
    out = folder / "embed.json"
    atomic_write_json(out, result)
    emit(result, args.json, [
        f"{ds.name}: {result['n_texts']} texts, best of {args.repeats}",
        f"bare SentenceTransformer.encode: {result['bare_texts_per_s']:.1f} texts/s",
        f"workbench Embedder (no cache):   {result['wrapper_texts_per_s']:.1f} texts/s "
        f"({result['relative']:+.1%})",
        f"written to {out}"])
    return 0


def _bench_backends(args: argparse.Namespace, name: str, texts: list[str], folder: Path) -> int:
    from workbench.embed.throughput import compare_backends
    from workbench.io import atomic_write_json

    result = compare_backends(texts, args.backend, repeats=args.repeats)
    result["dataset"] = name
    out = folder / "embed_backends.json"
    atomic_write_json(out, result)
    lines = [f"{name}: {result['n_texts']} texts, best of {args.repeats}",
             f"bare SentenceTransformer.encode (torch): {result['bare_texts_per_s']:.1f} texts/s"]
    lines += [f"{r['backend']:>10}: {r['texts_per_s']:.1f} texts/s ({r['speedup']:.2f}x), cosine to torch "
              f"min {r['min_cosine']:.7f} mean {r['mean_cosine']:.7f}" for r in result["backends"]]
    emit(result, args.json, lines + [f"written to {out}"])
    return 0
