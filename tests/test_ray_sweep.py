"""An ANN sweep on a real two-node Ray cluster on loopback against the same sweep run locally: the same recall
for every point, every point once, rows naming the node that measured them; a node killed mid-sweep costs
nothing (its configuration is measured again on the other node)."""

from __future__ import annotations

import functools
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from ray_support import ray_cluster
from workbench.bench.harness import BenchSet, run_sweep
from workbench.bench.results import read_results
from workbench.embed.sets import load_vector_set
from workbench.index.spec import parse_spec
from workbench.services.ray import connect

DATA = "synthetic:n=2000,dim=16,queries=40,clusters=15,seed=5,metric=cosine"
SPECS = ["faiss:Flat", "faiss:IVF16,Flat?nprobe=1,4", "hnswlib:M=8,ef_construction=40?ef=10,40",
         "faiss:HNSW8,Flat?efSearch=16"]
POINTS = 6
# one build thread on both sides: a graph built on several threads depends on their interleaving
SETTINGS = dict(k=5, threads=1, batch_threads=1, runs=1, warmup=5, progress=False)


def nap(shared, item):
    time.sleep(2.0)


def stall_off(node_id: str, marks: str, fn, shared, item):
    """``fn(shared, item)``, except on a node other than ``node_id``, where the task records that it started
    and then waits to be killed with its node."""
    import ray

    here = ray.get_runtime_context().get_node_id()
    if here != node_id:
        (Path(marks) / here).touch()
        time.sleep(600)
    return fn(shared, item)


@pytest.fixture(scope="module")
def cluster():
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])   # the workers cannot import a test module
    with ray_cluster((1, 1)) as c:
        yield c


@pytest.fixture(scope="module")
def executor(cluster):
    ex = connect(cluster.address)
    list(ex.map(nap, range(4), None))      # a worker up on each node, so the sweep's tasks spread at once
    yield ex
    ex.close()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    vs, _ = load_vector_set(DATA, progress=False)
    return BenchSet.from_vector_set(vs, source=DATA, gt_cache=tmp_path_factory.mktemp("gt"), progress=False)


def sweep(data, out, executor=None):
    return run_sweep(data, [parse_spec(s) for s in SPECS], out_dir=out, executor=executor, **SETTINGS)


def test_ray_sweep_equals_the_local_sweep_and_names_its_nodes(data, executor, tmp_path):
    local = sweep(data, tmp_path / "local")
    remote = sweep(data, tmp_path / "ray", executor)
    on_disk = read_results(tmp_path / "ray" / "results.parquet")
    assert len(on_disk) == POINTS and on_disk["point"].is_unique
    assert sorted(on_disk["point"]) == sorted(local["point"])
    recall = dict(zip(local["point"], local["recall"]))
    assert {p: r for p, r in zip(on_disk["point"], on_disk["recall"])} == recall
    alive = {n["node_id"] for n in executor.nodes()}
    assert set(remote["node"]) == alive and len(alive) == 2
    assert set(local["node"]) == {socket.gethostname()}


class KillingExecutor:
    """The Ray executor, with every task off the head node stalled until that node is removed, which
    happens as soon as the first result is back."""

    def __init__(self, inner, cluster, marks: Path):
        self.inner, self.cluster, self.marks = inner, cluster, marks
        self.head = cluster.head_node.node_id

    def map(self, fn, items, shared, num_cpus=1):
        stalled = functools.partial(stall_off, self.head, str(self.marks), fn)
        killer = None
        for out in self.inner.map(stalled, items, shared, num_cpus=num_cpus):
            if killer is None:
                victim = next(iter(self.cluster.worker_nodes))
                killer = threading.Thread(target=self.cluster.remove_node, args=(victim,))
                killer.start()
            yield out
        killer.join()

    def close(self):
        pass


def test_a_node_killed_mid_sweep_is_measured_again_on_the_other(data, cluster, executor, tmp_path):
    """Runs last: it removes the cluster's second node."""
    victim = next(iter(cluster.worker_nodes)).node_id
    marks = tmp_path / "marks"
    marks.mkdir()
    df = sweep(data, tmp_path / "ray", KillingExecutor(executor, cluster, marks))
    assert [p.name for p in marks.iterdir()] == [victim]          # the victim had started a configuration
    on_disk = read_results(tmp_path / "ray" / "results.parquet")
    assert len(on_disk) == POINTS and on_disk["point"].is_unique   # none missing, none twice
    assert set(df["node"]) == {cluster.head_node.node_id}
    assert not (tmp_path / "ray" / "failures.json").exists()
