"""The Ray executor on a real two-node cluster on loopback: every item once, the node that ran it, the shared
object put once, failures reported (an exception, a worker that dies), retries after a worker death."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ray_support import ray_cluster
from workbench.errors import ClusterError
from workbench.services.ray import TaskFailure, connect


@pytest.fixture(scope="module")
def cluster():
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])   # the workers cannot import a test module
    with ray_cluster((1, 1)) as c:
        yield c


@pytest.fixture(scope="module")
def executor(cluster):
    ex = connect(cluster.address)
    yield ex
    ex.close()


def scaled_sum(shared, item):
    time.sleep(1.0)        # long enough that the second node's worker is up before the first node is done
    return float((shared["base"] * item).sum())


def fail_on_three(shared, item):
    if item == 3:
        raise ValueError("item 3 is refused")
    return item


def die_first_time(shared, item):
    """The worker process dies on the first attempt of item 1 (a marker file remembers the attempt)."""
    marker = Path(shared) / f"attempt-{item}"
    if item == 1 and not marker.exists():
        marker.touch()
        os._exit(1)
    return item


def test_every_item_once_with_its_node(cluster, executor):
    base = np.arange(1000, dtype=np.float64)
    out = list(executor.map(scaled_sum, range(8), {"base": base}))
    assert sorted(item for item, _, _ in out) == list(range(8))
    for item, result, _ in out:
        assert result == pytest.approx(float(base.sum() * item))
    nodes = {node for _, _, node in out}
    alive = {n["node_id"] for n in executor.nodes()}
    assert nodes == alive and len(nodes) == 2          # spread over both nodes
    assert all(executor.node_names[n].endswith("(127.0.0.1)") for n in nodes)
    assert executor.describe().endswith("2 node(s), 2 CPUs")


def test_a_raising_task_is_reported_and_the_rest_finish(executor):
    out = {item: result for item, result, _ in executor.map(fail_on_three, range(6), None)}
    assert sorted(out) == list(range(6))
    assert out[3] == TaskFailure(3, "ValueError: item 3 is refused")
    assert [out[i] for i in (0, 1, 2, 4, 5)] == [0, 1, 2, 4, 5]


def test_a_dead_worker_is_retried(executor, tmp_path):
    out = {item: result for item, result, _ in executor.map(die_first_time, range(4), str(tmp_path))}
    assert out == {0: 0, 1: 1, 2: 2, 3: 3}
    assert (tmp_path / "attempt-1").exists()            # the first attempt did die


def test_a_dead_worker_without_retries_is_reported(executor, tmp_path):
    executor.max_retries = 0
    try:
        out = {item: result for item, result, node in executor.map(die_first_time, range(3), str(tmp_path))}
    finally:
        executor.max_retries = 3
    assert isinstance(out[1], TaskFailure) and "died" in out[1].error.lower()
    assert out[0] == 0 and out[2] == 2


def test_a_task_larger_than_any_node_is_refused(executor):
    with pytest.raises(ClusterError, match="needs 4 CPUs but the largest node has 1"):
        list(executor.map(scaled_sum, [1], {"base": np.ones(3)}, num_cpus=4))


@pytest.mark.parametrize("address, message", [("127.0.0.1:1", "cannot reach the Ray cluster at 127.0.0.1:1"),
                                              ("nowhere", "expected 'local', 'auto', HOST:PORT")])
def test_an_unreachable_address_is_one_clear_error(address, message):
    with pytest.raises(ClusterError, match=message):
        connect(address)
