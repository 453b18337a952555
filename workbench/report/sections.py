"""The report's sections, each built from one or more notebooks' ``results.json``: a title, a sentence
saying what was measured, its figures first, then tidy tables with units (formatted for people)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from workbench.bench.pareto import RERUN_NOISE
from workbench.report import format as f
from workbench.report.source import NotebookRun, SeriesRun

TARGETS = ("0.90", "0.95", "0.99")


@dataclass
class Table:
    """A tidy table of formatted cells; ``numeric`` columns are right-aligned."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    numeric: set[int] = field(default_factory=set)
    note: str = ""


@dataclass
class Section:
    title: str
    text: str
    figures: list[tuple[str, bytes]]  # (caption, PNG bytes)
    tables: list[Table]
    source: str  # the notebook(s) that measured it


def _figures(nb: NotebookRun, names: Sequence[str] | None = None) -> list[tuple[str, bytes]]:
    wanted = names if names is not None else list(nb.figures)
    return [(f"{nb.name}/{n}", nb.figures[n]) for n in wanted if n in nb.figures]


def _looks_numeric(cell: str) -> bool:
    return cell == f.MISSING or bool(re.match(r"[-+]?\d[\d,.]*(\s?[a-zA-Zµ%×]+)?\*?( \(best single\))?"
                                              r"( #\d+)?( ≈)?$", cell))


def _table(title: str, columns: list[str], rows: list[list[str]], note: str = "") -> Table:
    """A table whose columns of figures (every cell a number, with or without unit) are right-aligned."""
    numeric = {i for i in range(1, len(columns)) if rows and all(_looks_numeric(r[i]) for r in rows)}
    return Table(title, columns, rows, numeric, note)


def quickstart(nb: NotebookRun) -> Section:
    r = nb.results
    metrics = r.get("metrics", {})
    names = ["ndcg@10", "recall@100", "map", "mrr@10"]
    rows = [[m, *[f.ratio(v.get(n)) for n in names]] for m, v in metrics.items()]
    return Section(f"Quickstart: lexical, dense and fused retrieval on {r.get('dataset')}",
                   f"{f.integer(r.get('n_docs'))} documents, {f.integer(r.get('n_judged_queries'))} judged queries, "
                   f"model {r.get('model')}.", _figures(nb), [_table("Retrieval quality", ["method", *names], rows)],
                   nb.name)


def quantization(nb: NotebookRun) -> Section:
    r = nb.results
    rows = [[name, f.size(q.get("bytes_per_vector")), f"{q.get('compression_ratio', 0):.0f}×",
             f.recall(q.get("recall_at_10")), f.recall(q.get("recall_at_10_rescored"))]
            for name, q in r.get("quantization", {}).items()]
    return Section("Storage quantization",
                   f"{f.integer(r.get('n_documents'))} documents embedded with {r.get('model')}; recall@10 of "
                   "each storage type against float32 search, before and after rescoring with full vectors.",
                   _figures(nb), [_table("Storage types", ["type", "size / vector", "compression", "recall@10",
                                                           "recall@10 rescored"], rows)], nb.name)


def index_types(nb: NotebookRun) -> Section:
    r = nb.results
    rows = [[spec, v.get("family", ""), f.format_seconds(v.get("build_s")), f.ratio(v.get("bytes_per_vector"), 1),
             f.ratio(v.get("formula_bytes"), 1), f.recall(v.get("best_recall"))]
            for spec, v in sorted(r.get("indexes", {}).items(), key=lambda kv: kv[1].get("bytes_per_vector", 0))]
    return Section(f"Index types on {r.get('dataset')}: build time and size",
                   f"{f.integer(r.get('n_base'))} vectors of dimension {r.get('dim')}, k = {r.get('k')}.",
                   _figures(nb, ["build_size.png", "parameter_effect.png"]),
                   [_table("Build time and size", ["index", "family", "build time", "bytes / vector",
                                                   "formula (bytes)", "best recall@10"], rows)], nb.name)


def best_qps_table(best: Mapping[str, Any], title: str = "Best QPS at a recall target") -> Table:
    """Per family, the best median QPS at each target with its rank among the families there; ≈ where its
    QPS interval overlaps another family's (the note lists those pairs)."""
    rows, ties = [], {t: set() for t in TARGETS}
    for family, by_target in best.items():
        cells = []
        for t in TARGETS:
            point = (by_target or {}).get(t)
            cells.append(f.ranked_qps(point) if point else f.MISSING)
            for other in (point or {}).get("tied_with", []):
                ties[t].add(tuple(sorted((family, other))))
        rows.append([family, *cells])
    tied = "; ".join(f"at {t}: " + ", ".join(f"{a} {f.TIED} {b}" for a, b in sorted(pairs))
                     for t, pairs in ties.items() if pairs)
    note = (f"Median QPS over the timed passes; #n = rank among the families at that target; {f.TIED} = its QPS "
            f"interval, widened by the rerun noise ({RERUN_NOISE:.0%}), overlaps another family's, so the two are not "
            "distinguishable at this noise level"
            + (f" ({tied})" if tied else "") + f". {f.MISSING} = the target was not reached by any measured point.")
    return _table(title, ["family", *[f"QPS at recall ≥ {t}" for t in TARGETS]], rows, note=note)


def tradeoffs(nb: NotebookRun) -> Section:
    r = nb.results
    operating = []
    for family, by_target in r.get("best_qps_at_recall", {}).items():
        point = (by_target or {}).get("0.95")
        if point:
            operating.append([family, point.get("point", "").split("?")[-1] if "?" in point.get("point", "") else
                              f.MISSING, f.recall(point.get("recall")), f.qps(point.get("qps"))])
    return Section(f"Recall / QPS trade-off on {r.get('dataset')}",
                   f"{f.integer(r.get('n_points'))} measured points over every index family, "
                   f"{f.integer(r.get('n_queries'))} queries one at a time on {r.get('threads')} thread(s), k = "
                   f"{r.get('k')}. Pareto frontier first, then the fastest point at each recall target.",
                   _figures(nb, ["recall_qps.png", "recall_batch_qps.png"]),
                   [best_qps_table(r.get("best_qps_at_recall", {})),
                    _table("Operating point at recall ≥ 0.95", ["family", "query parameter", "recall@10", "QPS"],
                           operating)], nb.name)


def filtered(nb: NotebookRun) -> Section:
    r = nb.results
    recall = r.get("recall", {})
    levels = list(next(iter(recall.values()), {}))
    rows = [[curve, *[f.recall(v.get(s)) for s in levels]] for curve, v in recall.items()]
    fastest = [[p.get("curve", ""), f.percent(p.get("selectivity")), f.recall(p.get("recall")), f.qps(p.get("qps")),
                f.milliseconds(p.get("p50_ms")), f.percent(p.get("frac_short"))]
               for p in r.get("fastest_at_recall_0.9", [])]
    return Section(f"Filtered search on {r.get('dataset')}",
                   f"{f.integer(r.get('n_queries'))} queries, k = {r.get('k')}, over the share of the collection the "
                   f"filter allows. Disallowed ids returned: {f.integer(r.get('max_disallowed_returned'))}. "
                   "Under-return: the share of queries that got fewer than k results.",
                   _figures(nb, ["filtered_recall.png", "filtered_latency.png"]),
                   [_table("Recall@10 by selectivity", ["method", *[f"recall @ {s}" for s in levels]], rows),
                    _table("Fastest method reaching recall 0.9, per selectivity",
                           ["method", "selectivity", "recall@10", "QPS", "p50 latency", "under-return"], fastest)],
                   nb.name)


def hybrid(nb: NotebookRun) -> Section:
    r = nb.results
    datasets = r.get("datasets", {})
    methods = list(dict.fromkeys(m for d in datasets.values() for m in d.get("ndcg@10", {})))
    rows = []
    for m in methods:
        cells = []
        for d in datasets.values():
            v, p = d.get("ndcg@10", {}).get(m), d.get("p_vs_best_single", {}).get(m)
            mark = "*" if p is not None and p < 0.05 and m != d.get("best_single") else ""
            best = " (best single)" if m == d.get("best_single") else ""
            cells.append(f"{f.ratio(v, 4)}{mark}{best}" if v is not None else f.MISSING)
        rows.append([m, *cells])
    s = r.get("searcher", {})
    monitor = [["searches", f.integer(s.get("searches"))], ["p50 latency", f.milliseconds(s.get("latency_p50_ms"))],
               ["p99 latency", f.milliseconds(s.get("latency_p99_ms"))], ["cache hits", f.percent(s.get("cache_hit_rate"))],
               ["failures", f.integer(s.get("failures"))]]
    return Section("Hybrid retrieval: nDCG@10 per collection",
                   f"Tuned methods are {r.get('folds')}-fold cross-validated over queries. * = differs from the best "
                   "single retriever of that collection at p < 0.05 (paired randomization test).",
                   _figures(nb, ["weight_curves.png", "per_query_differences.png"]),
                   [_table("nDCG@10", ["method", *datasets], rows), _table("The served searcher", ["", "value"], monitor)],
                   nb.name)


def point_in_time(nb: NotebookRun) -> Section:
    r = nb.results
    rows = [["naive join (latest value)", f.ratio(r.get("naive_auc_offline")), f.ratio(r.get("naive_auc_later"))],
            ["point-in-time join", f.ratio(r.get("pit_auc_offline")), f.ratio(r.get("pit_auc_later"))]]
    online = r.get("online_status_amount", {})
    counts = [["transactions", f.integer(r.get("n_transactions"))], ["fraud rate", f.percent(r.get("fraud_rate"))],
              ["training rows", f.integer(r.get("n_train"))], ["later (unseen) rows", f.integer(r.get("n_later"))],
              ["online/offline mismatches", f.integer(r.get("online_mismatches"))],
              *[[f"online feature {k}", f.integer(v)] for k, v in online.items()]]
    return Section("Point-in-time joins: label leakage in the feature store",
                   f"{f.integer(r.get('n_accounts'))} accounts over {r.get('days')} days; the model trains on the "
                   f"first {r.get('train_days')} days, labels arrive {r.get('label_delay_days')} days late. A naive "
                   "join leaks the future: its offline AUC is high and falls on later data; the point-in-time "
                   "join's does not.", _figures(nb, ["timeline.png", "scores.png"]),
                   [_table("AUC of the fraud model", ["training join", "AUC offline", "AUC on later data"], rows),
                    _table("The stream", ["", "count"], counts)], nb.name)


def generic(nb: NotebookRun, title: str) -> Section:
    """Top-level and one-level-nested scalars (the notebook's headline figures), when no layout is known."""
    rows = []
    for key, value in nb.results.items():
        if isinstance(value, dict):
            rows += [[f"{key} / {k}", f.text(v)] for k, v in value.items() if not isinstance(v, (dict, list))]
        elif not isinstance(value, list):
            rows.append([key, f.text(value)])
    return Section(title, "", _figures(nb), [_table("Key figures", ["figure", "value"], rows)] if rows else [],
                   nb.name)


LAYOUTS: dict[str, Callable[[NotebookRun], Section]] = {
    "00_quickstart": quickstart,
    "01_embeddings_and_storage": quantization,
    "02_index_types": index_types,
    "03_recall_latency_tradeoffs": tradeoffs,
    "04_filtered_search": filtered,
    "05_hybrid_fusion": hybrid,
    "07_feature_store_point_in_time": point_in_time,
}
TITLES = {
    "06_experiment_tracking_and_registry": "Experiment tracking and the model registry",
    "08_vector_databases": "Vector databases: pgvector and LanceDB beside the in-process indexes",
    "09_benchmark_report": "This report",
}


def environment(series: SeriesRun) -> Section:
    from datetime import datetime, timezone

    t = series.tags
    started = datetime.fromtimestamp(series.start_ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    versions = sorted((k.removeprefix("workbench.version."), v) for k, v in t.items()
                      if k.startswith("workbench.version."))
    rows = [["CPU", t.get("workbench.cpu", f.MISSING)], ["cores", t.get("workbench.cores", f.MISSING)],
            ["Python", t.get("workbench.python", f.MISSING)],
            ["git commit", t.get("workbench.git.commit", f.MISSING)[:12]
             + (" (uncommitted changes)" if t.get("workbench.git.dirty") == "true" else "")],
            ["date", started], ["parameters", "CI (small)" if series.params.get("ci") == "True" else "full"],
            ["total wall time", f.format_seconds(series.metrics.get("total_wall_time_s"))],
            ["series run", f"{series.run_id} (group {series.group})"]]
    times = [[nb.name, f.format_seconds(nb.wall_s)] for nb in series.notebooks]
    return Section("Environment", "Where and when these figures were measured.", [],
                   [_table("Machine and code", ["", "value"], rows),
                    _table("Library versions", ["library", "version"], [list(v) for v in versions]),
                    _table("Wall time per notebook", ["notebook", "wall time"], times)], "workbench run")


def build_sections(series: SeriesRun) -> list[Section]:
    """Every notebook's section in series order, then the environment."""
    sections = []
    for nb in series.notebooks:
        layout = LAYOUTS.get(nb.name)
        sections.append(layout(nb) if layout else generic(nb, TITLES.get(nb.name, nb.name)))
    return [s for s in sections if s.figures or s.tables] + [environment(series)]
