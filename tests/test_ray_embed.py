"""``workbench embed --ray``: a pool of embedder actors on Ray Data gives the local embeddings, in the same
order, and the driver alone fills the cache under the local keys, once."""

from __future__ import annotations

import numpy as np
import pytest

from ray_support import loopback_ray
from workbench.cli import main
from workbench.data import load_dataset
from workbench.embed import Embedder
from workbench.runners.embed_ray import embed_on_ray

DATASET, LIMIT = "cranfield", 12

pytestmark = [pytest.mark.slow,   # loads the model in two actors and in this process
              pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")]  # Ray's own settings


def test_ray_embeddings_equal_the_local_ones_and_fill_the_cache_once(tmp_path):
    with loopback_ray() as mp:
        mp.setenv("WORKBENCH_CACHE", str(tmp_path / "ray-cache"))
        r = embed_on_ray(DATASET, "local", limit=LIMIT, actors=2)
    assert r["encoded"] == r["unique"] == 2 * LIMIT and r["cache_hits"] == 0 and r["actors"] == 2
    assert sum(r["texts_by_node"].values()) == r["encoded"]
    entries = sorted((tmp_path / "ray-cache" / "embeddings").rglob("*.emb"))
    assert len(entries) == r["unique"]
    written = {p: p.stat().st_mtime_ns for p in entries}

    ds = load_dataset(DATASET)
    texts = ds.doc_texts()[:LIMIT] + ds.query_texts()[:LIMIT]
    again = Embedder(cache_dir=tmp_path / "ray-cache", show_progress=False)
    from_ray = again.encode(texts)
    assert again.last_stats["encoded"] == 0                       # a local run finds every key
    assert {p: p.stat().st_mtime_ns for p in entries} == written   # and rewrites nothing
    local = Embedder(cache_dir=tmp_path / "local-cache", show_progress=False).encode(texts)
    cosine = (from_ray * local).sum(1) / np.linalg.norm(from_ray, axis=1) / np.linalg.norm(local, axis=1)
    assert cosine.min() >= 0.9999


def test_an_unreachable_cluster_is_one_error_line_and_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path))
    assert main(["embed", DATASET, "--limit", "3", "--ray", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: cannot reach the Ray cluster at 127.0.0.1:1: Connection refused"]
