"""The model registry: a run's retrieval bundle becomes a registered, loadable pyfunc model.

Registering logs the pyfunc (with the bundle and a model card) as a LoggedModel of the source run,
creates a model version carrying lineage tags (source run, dataset digest, embedding model, index sha256,
git commit) and points an alias at it. Aliases (``champion``, ``challenger``) replace the deprecated stages::

    mlflow.set_tracking_uri(store.uri)        # store: a workbench.tracking.Store
    model = mlflow.pyfunc.load_model("models:/cranfield-retriever@champion")
    model.predict(pd.DataFrame({"query": ["boundary layer transition"]}), params={"k": 5})
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from workbench.errors import TrackingError
from workbench.io import atomic_write_text
from workbench.tracking.bundle import BUNDLE_DIR, HYBRID, load_bundle
from workbench.tracking.query import get_run
from workbench.tracking.store import Store, with_retry

MODEL_NAME_IN_RUN = "retriever"
ALIASES = ("champion", "challenger")
_REQUIREMENTS = ("mlflow", "numpy", "pandas", "faiss-cpu", "hnswlib", "torch", "sentence-transformers")


@dataclass
class RegisteredVersion:
    """What :func:`register_retrieval_model` created."""

    name: str
    version: str
    alias: str | None
    model_uri: str       # models:/NAME/VERSION
    source_run_id: str
    tags: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def register_retrieval_model(store: Store, run_id: str, name: str, alias: str | None = None, *,
                             k: int | None = None, description: str | None = None) -> RegisteredVersion:
    """Register the retrieval bundle of run ``run_id`` in ``store`` as a new version of model ``name``.

    Raises :class:`TrackingError` if the run does not exist or has no ``retrieval_index`` artifact.
    ``alias`` (e.g. ``champion``) is moved to the new version. ``k`` is predict's default number of
    results (default: the bundle's).
    """
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow
    from mlflow.models import Model
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import Array, ColSpec, ParamSchema, ParamSpec, Schema

    if not name or "/" in name or "@" in name:
        raise TrackingError(f"model name must be non-empty without '/' or '@', got {name!r}")
    c = store.client()
    run = get_run(c, run_id)
    names = {a.path for a in with_retry(c.list_artifacts, run_id)}
    if BUNDLE_DIR not in names:
        raise TrackingError(f"run {run_id} ({run.info.run_name}) has no '{BUNDLE_DIR}' artifact to register "
                            f"(it has {sorted(names) or 'no artifacts'}); log a folder written by "
                            f"workbench.tracking.write_retrieval_bundle with the run")
    # Model.log and register_model use mlflow's global URIs: point them at this store.
    mlflow.set_tracking_uri(store.uri)
    mlflow.set_registry_uri(store.uri)
    # Model.log files the logged model under the *active* experiment, not the run's: without this it
    # lands in the default experiment, whose artifact root is ./mlruns of the current directory.
    mlflow.set_experiment(experiment_id=run.info.experiment_id)
    with tempfile.TemporaryDirectory(prefix="workbench-register-") as tmp:
        bundle_dir = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=BUNDLE_DIR,
                                                              dst_path=tmp))
        bundle = load_bundle(bundle_dir)  # verifies the index checksum before anything is registered
        lineage = _lineage(run, bundle.config)
        hybrid = bundle.config.get("kind") == HYBRID
        card = Path(tmp) / "model_card.md"
        atomic_write_text(card, (hybrid_model_card if hybrid else model_card)(store, name, run, bundle.config, lineage))
        signature = ModelSignature(
            inputs=Schema([ColSpec("string", "query", required=False),
                           ColSpec(Array("double"), "vector", required=False)]),
            outputs=Schema([ColSpec(Array("string"), "ids"), ColSpec(Array("double"), "scores")]),
            params=ParamSchema([ParamSpec("k", "long", int(k or bundle.config.get("k", 10)))]))
        info = Model.log(artifact_path=None, name=MODEL_NAME_IN_RUN, flavor=mlflow.pyfunc, run_id=run_id,
                         python_model=str(Path(__file__).with_name("retriever_code.py")),
                         artifacts={"bundle": str(bundle_dir), "model_card": str(card)},
                         signature=signature, input_example=_example(bundle.dim, hybrid),
                         pip_requirements=_requirements(), tags=lineage)
        with_retry(c.log_artifact, run_id, str(card), "model_card")
    try:
        version = mlflow.register_model(info.model_uri, name, tags=lineage)
    except Exception as exc:
        raise TrackingError(f"registering run {run_id} as model {name!r} failed: {exc}") from exc
    text = description or _summary(run, bundle.config, lineage)
    with_retry(c.update_model_version, name, version.version, description=text)
    if alias:
        set_alias(store, name, alias, version.version)
    return RegisteredVersion(name=name, version=str(version.version), alias=alias,
                             model_uri=f"models:/{name}/{version.version}", source_run_id=run_id, tags=lineage)


def set_alias(store: Store, name: str, alias: str, version: str | int) -> None:
    """Point ``models:/NAME@ALIAS`` at ``version`` (an alias names one version; it moves)."""
    if not alias or not alias.replace("-", "_").isidentifier() or alias.lower().startswith("v"):
        raise TrackingError(f"alias {alias!r} must be a word like 'champion' (and not start with 'v', which "
                            f"MLflow reserves for versions)")
    with_retry(store.client().set_registered_model_alias, name, alias, str(version))


_FRESH_PROCESS = """
import json, sys
import mlflow, pandas as pd
mlflow.set_tracking_uri(sys.argv[1])
model = mlflow.pyfunc.load_model(sys.argv[2])
out = model.predict(pd.DataFrame({"query": json.loads(sys.argv[3])}), params={"k": int(sys.argv[4])})
print(json.dumps({"ids": out["ids"].tolist(), "scores": out["scores"].tolist()}))
"""


def predict_in_fresh_process(store: Store, model_uri: str, queries: list[str], k: int,
                             timeout: float = 600) -> dict[str, Any]:
    """Load ``model_uri`` (e.g. ``models:/NAME@champion``) from ``store`` in a new Python process, which
    knows nothing of this one, and search ``queries``: ``{"ids", "scores", "seconds"}`` (load + search)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _FRESH_PROCESS, store.uri, model_uri, json.dumps(queries),
                           str(k)], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise TrackingError(f"loading {model_uri} from {store.uri} in a fresh process failed: {tail}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return {**out, "seconds": time.perf_counter() - start}


def _lineage(run: Any, config: dict[str, Any]) -> dict[str, str]:
    tags = run.data.tags
    dataset = config.get("dataset") or {}
    return {
        "workbench.source_run_id": run.info.run_id,
        "workbench.source_run_name": run.info.run_name or "",
        "workbench.source_experiment_id": run.info.experiment_id,
        "workbench.dataset.name": dataset.get("name") or tags.get("workbench.dataset.name", ""),
        "workbench.dataset.digest": dataset.get("digest") or tags.get("workbench.dataset.digest", ""),
        "workbench.embedding_model": config.get("embedding_model") or "",
        "workbench.index.class": config["index_class"],
        "workbench.index.sha256": config["index_sha256"],
        "workbench.index.metric": config["metric"],
        "workbench.index.query_params": json.dumps(config.get("query_params") or {}, sort_keys=True),
        "workbench.git.commit": tags.get("workbench.git.commit", "unknown"),
        "workbench.git.dirty": tags.get("workbench.git.dirty", "unknown"),
    }


def model_card(store: Store, name: str, run: Any, config: dict[str, Any], lineage: dict[str, str]) -> str:
    """A Markdown model card: what the model is, what it was measured on, and where it came from."""
    metrics = "\n".join(f"| {k} | {v:.6g} |" for k, v in sorted(run.data.metrics.items())) or "| - | - |"
    params = "\n".join(f"| {k} | {v} |" for k, v in sorted(run.data.params.items())) or "| - | - |"
    return f"""# Model card: {name}

A retrieval configuration registered from run `{run.info.run_id}` ({run.info.run_name}).

## Use
```python
import mlflow, pandas as pd
mlflow.set_tracking_uri("{store.uri}")
model = mlflow.pyfunc.load_model("models:/{name}@champion")   # or models:/{name}/<version>
model.predict(pd.DataFrame({{"query": ["..."]}}), params={{"k": {config.get("k", 10)}}})
```
Input: a `query` text column (embedded with `{config.get("embedding_model") or "vectors only"}`,
normalize={config.get("normalize")}) or a `vector` column of {config["dim"]}-dimensional vectors.
Output: `ids` (document ids, best first) and `scores` ({"similarity" if config["metric"] != "l2"
else "squared L2 distance"}).

## Index
- class: `{config["index_class"]}`, metric: {config["metric"]}, {config["ntotal"]} vectors of dimension {config["dim"]}
- query parameters: `{json.dumps(config.get("query_params") or {})}`
- index file sha256: `{config["index_sha256"]}`

## Data
- dataset: {lineage["workbench.dataset.name"] or "unknown"}, digest `{lineage["workbench.dataset.digest"] or "unknown"}`

## Measured (source run)
| metric | value |
|---|---|
{metrics}

| parameter | value |
|---|---|
{params}

## Lineage
- source run: `{run.info.run_id}` in experiment {run.info.experiment_id}
- code: git commit `{lineage["workbench.git.commit"]}` (dirty: {lineage["workbench.git.dirty"]})
- limitations: scores and recall hold for the dataset above; other collections need their own measurement.
"""


def _example(dim: int, hybrid: bool = False) -> Any:
    """A one-row input example (a query text for a hybrid model, else a unit vector): mlflow checks the
    model serves it while logging."""
    import numpy as np
    import pandas as pd

    if hybrid:
        return pd.DataFrame({"query": ["effects of treatment on patients"]})
    return pd.DataFrame({"vector": [np.full(dim, dim ** -0.5)]})


def _summary(run: Any, config: dict[str, Any], lineage: dict[str, str]) -> str:
    """The model version's one-paragraph description (the card's first lines)."""
    data = lineage.get("workbench.dataset.name") or "?"
    if config.get("kind") != HYBRID:
        return f"{run.info.run_name}: retrieval over {data}"
    f, fig = config["fusion"], config.get("figures") or {}
    return (f"Hybrid retriever over {data} ({config['ntotal']} documents): BM25 + dense "
            f"({config['embedding_model']}) fused by {f['method']} {json.dumps(f['params'])}; nDCG@10 "
            f"{fig.get('ndcg@10', float('nan')):.4f} on all {fig.get('n_queries', '?')} judged queries "
            f"(cross-validated estimate {fig.get('heldout_ndcg@10', float('nan')):.4f}); run {run.info.run_id}")


def hybrid_model_card(store: Store, name: str, run: Any, config: dict[str, Any], lineage: dict[str, str]) -> str:
    """The model card of a hybrid bundle: the retrievers, the fusion and how it was chosen, the data, the
    figures of the source run, where it came from."""
    f, fig = config["fusion"], config.get("figures") or {}
    rows = "\n".join(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in fig.items())
    bm25 = config["bm25"]
    return f"""# Model card: {name}

{_summary(run, config, lineage)}.

## What it is
A hybrid retriever for English text: for each query, BM25 (bm25s, `{bm25['method']}` k1={bm25['k1']} b={bm25['b']},
stopwords {bm25['stopwords']}, stemmer {bm25['stemmer']}) and dense retrieval (`{config['embedding_model']}`,
normalised embeddings, exact inner product over the {config['ntotal']} stored document vectors) each return
their top {config['depth']}; the two lists are fused by **{f['method']}** with parameters
`{json.dumps(f['params'])}` and the best k are returned. {config.get('chosen_by', '')}

## Use
```python
import mlflow, pandas as pd
mlflow.set_tracking_uri("{store.uri}")
model = mlflow.pyfunc.load_model("models:/{name}@champion")   # or models:/{name}/<version>
model.predict(pd.DataFrame({{"query": ["..."]}}), params={{"k": {config.get("k", 10)}}})
```
Input: a `query` text column. Output: `ids` (document ids, best first) and `scores` (fused scores).

## Data
- collection: {lineage["workbench.dataset.name"] or "unknown"}, digest `{lineage["workbench.dataset.digest"] or "unknown"}`,
  {config['ntotal']} documents; judged queries evaluated with pytrec_eval (queries without results count 0)

## Figures (source run)
| figure | value |
|---|---|
{rows or "| - | - |"}

`ndcg@10` is this exact configuration on every judged query (what the registered model reproduces);
`heldout_ndcg@10` is the method's cross-validated figure (each fold's queries scored with parameters
chosen on the other folds), the honest estimate for new queries of the same kind.

## Lineage
- source run: `{run.info.run_id}` ({run.info.run_name}) in experiment {run.info.experiment_id}
- bundle digest: `{config["index_sha256"]}`
- code: git commit `{lineage["workbench.git.commit"]}` (dirty: {lineage["workbench.git.dirty"]})
- limitations: the figures hold for this collection; another collection needs its own evaluation (and its own
  fusion weight), and the embedding model must be the one named above.
"""


def _requirements() -> list[str]:
    """Pinned to this environment, so that mlflow does not load the model in a subprocess to infer them."""
    out = []
    for dist in _REQUIREMENTS:
        try:
            out.append(f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            continue
    return out
