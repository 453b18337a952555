"""Shared pieces of the Ray tests: Ray kept on loopback, and a real two-node cluster on this machine
(``ray.cluster_utils.Cluster``)."""

from __future__ import annotations

import contextlib
from typing import Iterator

import pytest

ATTEMPTS = 3   # a node's agents must start within Ray's fixed 15 s wait: on a loaded machine, try again
LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"   # "0": Ray takes 127.0.0.1 as every node's address


@contextlib.contextmanager
def loopback_ray() -> Iterator[pytest.MonkeyPatch]:
    """Ray on loopback only, without usage stats, not joining a cluster named by ``RAY_ADDRESS``."""
    from ray._private import ray_constants

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_USAGE_STATS_ENABLED", "0")
        mp.delenv("RAY_ADDRESS", raising=False)
        # Ray rewrites a 127.0.0.1 address to the machine's own IP unless this is off: in the processes Ray
        # starts (the variable) and in this one (the constant, read when ray was imported)
        mp.setenv(LOOPBACK_ONLY, "0")
        mp.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)
        yield mp


def _start(cpus: tuple[int, ...]):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, shutdown_at_exit=True,
                      head_node_args={"num_cpus": cpus[0], "include_dashboard": False, "no_monitor": True,
                                      "node_ip_address": "127.0.0.1"})
    try:
        for n in cpus[1:]:
            cluster.add_node(num_cpus=n, node_ip_address="127.0.0.1")
    except BaseException:
        cluster.shutdown()
        raise
    return cluster


@contextlib.contextmanager
def ray_cluster(cpus: tuple[int, ...] = (1, 1)) -> Iterator[object]:
    """A started cluster with one node per entry of ``cpus`` (the first is the head); shut down after."""
    with loopback_ray():
        cluster, error = None, None
        for _ in range(ATTEMPTS):
            try:
                cluster = _start(cpus)
                break
            except Exception as exc:  # Ray raises a bare Exception when a node times out at start
                error = exc
        if cluster is None:
            raise RuntimeError(f"a {len(cpus)}-node Ray cluster did not start in {ATTEMPTS} attempts: {error}")
        try:
            yield cluster
        finally:
            cluster.shutdown()


def add_node(cluster, cpus: int = 1):
    """One more loopback node in ``cluster``."""
    return cluster.add_node(num_cpus=cpus, node_ip_address="127.0.0.1")
