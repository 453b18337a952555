"""Ray as the executor of a sweep: one task per item, the shared data put once in the object store.

``connect(address)`` opens the process's one Ray connection and returns a :class:`RayExecutor`:

- ``"local"``: a new one-node Ray inside this process (all cores, or ``num_cpus``), listening on loopback,
  without dashboard; it stops on ``close()``;
- ``"auto"``: the cluster named by ``RAY_ADDRESS`` or the one a ``ray start --head`` on this machine runs;
- ``"HOST:PORT"`` (the GCS address ``ray start --head`` prints) or ``"ray://HOST:PORT"`` (Ray Client): that
  cluster. Every node needs the same Python environment with ``workbench`` installed.

``RayExecutor.map(fn, items, shared)`` runs ``fn(shared, item)`` as one Ray task per item (Ray Core tasks,
https://docs.ray.io/en/latest/ray-core/tasks.html) and yields ``(item, result, node_id)`` as tasks finish.
A task whose worker or node dies is resubmitted by Ray (``max_retries``); one that finally fails, or raises,
is yielded as a :class:`TaskFailure` with node ``None``: the caller records it, nothing goes missing.

Ray is imported only when a connection is made, so :class:`TaskFailure` is cheap to import.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from workbench.errors import ClusterError

LOCAL, AUTO = "local", "auto"
MAX_RETRIES = 3            # resubmissions of a task whose worker or node died (Ray's own default)
REACH_TIMEOUT_S = 5.0      # for the TCP probe of HOST:PORT before Ray's own, much longer, connect timeout
POLL_S = 10.0              # how often a waiting map checks that some live node can still run its tasks
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class TaskFailure:
    """A task that failed for good (after Ray's retries): the item it was given and the error, one line."""

    item: Any
    error: str


def _one_line(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)          # RayTaskError wraps the task's own exception
    exc = cause if isinstance(cause, BaseException) else exc
    text = " ".join(l.strip() for l in str(exc).splitlines() if l.strip())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"Ray address {address!r}: expected 'local', 'auto', HOST:PORT or ray://HOST:PORT")
    return host, int(port)


def _probe(address: str) -> None:
    """Nothing once a TCP connection to ``address`` succeeds; a ClusterError naming why otherwise."""
    host, port = _host_port(address)
    try:
        with socket.create_connection((host, port), timeout=REACH_TIMEOUT_S):
            return
    except OSError as exc:
        raise ClusterError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}") from None


def _call(fn: Callable[[Any, Any], Any], shared: Any, item: Any) -> tuple[Any, str, str]:
    """Runs on the worker: the result, the node's id, and ``host (ip)`` for people."""
    import ray

    result = fn(shared, item)
    return result, ray.get_runtime_context().get_node_id(), f"{socket.gethostname()} ({ray.util.get_node_ip_address()})"


class RayExecutor:
    """The sweep executor on a Ray connection (see the module docstring); ``close()`` ends the connection."""

    def __init__(self, address: str, max_retries: int = MAX_RETRIES) -> None:
        import ray

        self._ray = ray
        self.address = address
        self.max_retries = max_retries
        #: ``host (ip)`` of every node that returned a result, by node id
        self.node_names: dict[str, str] = {}

    def nodes(self) -> list[dict[str, Any]]:
        """The live nodes: ``{"node_id", "host", "ip", "cpus"}`` each."""
        return [{"node_id": n["NodeID"], "host": n.get("NodeManagerHostname", ""), "ip": n["NodeManagerAddress"],
                 "cpus": float(n.get("Resources", {}).get("CPU", 0))} for n in self._ray.nodes() if n["Alive"]]

    def describe(self) -> str:
        """One line for the CLI: address, nodes and CPUs."""
        nodes = self.nodes()
        return f"Ray at {self.address}: {len(nodes)} node(s), {sum(n['cpus'] for n in nodes):g} CPUs"

    def _largest_node(self) -> float:
        return max((n["cpus"] for n in self.nodes()), default=0.0)

    def map(self, fn: Callable[[Any, Any], Any], items: Iterable[Any], shared: Any,
            num_cpus: float = 1) -> Iterator[tuple[Any, Any, str | None]]:
        """``(item, fn(shared, item) or TaskFailure, node_id)`` for every item, in completion order.

        Each task reserves ``num_cpus`` CPUs: a sweep passes the threads it times queries with, so two
        timed tasks never share a core (builds may use more threads: they are not the timed quantity).
        Tasks are spread over the nodes. If no live node has ``num_cpus`` CPUs (at the start, or after
        nodes died) the remaining items are yielded as failures rather than waited on forever."""
        ray = self._ray
        items = list(items)
        if not items:
            return
        largest = self._largest_node()
        if largest < num_cpus:
            raise ClusterError(f"Ray at {self.address}: a task needs {num_cpus:g} CPUs but the largest node has "
                               f"{largest:g}")
        ref = ray.put(shared)                       # once; every task reads the same object
        task = ray.remote(_call).options(num_cpus=num_cpus, max_retries=self.max_retries, retry_exceptions=False,
                                         scheduling_strategy="SPREAD")
        pending = {task.remote(fn, ref, item): item for item in items}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
                if not ready:
                    if self._largest_node() < num_cpus:
                        lost = f"no live Ray node has {num_cpus:g} CPUs any more"
                        for item in list(pending.values()):
                            yield item, TaskFailure(item, lost), None
                        return
                    continue
                for r in ready:
                    item = pending.pop(r)
                    try:
                        result, node_id, name = ray.get(r)
                    except ray.exceptions.RayError as exc:
                        yield item, TaskFailure(item, _one_line(exc)), None
                        continue
                    self.node_names[node_id] = name
                    yield item, result, node_id
        finally:                                    # a caller that stops early (an error, Ctrl-C) stops the rest
            for r in pending:
                ray.cancel(r, force=True)

    def close(self) -> None:
        """Disconnect (and stop the Ray this executor started with ``"local"``); safe to call twice."""
        if self._ray.is_initialized():
            self._ray.shutdown()

    def __enter__(self) -> "RayExecutor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(address: str, num_cpus: int | None = None, max_retries: int = MAX_RETRIES) -> RayExecutor:
    """A :class:`RayExecutor` on ``address`` (``"local"``, ``"auto"``, ``HOST:PORT``, ``ray://HOST:PORT``).

    ``num_cpus`` sizes a ``"local"`` Ray (default: all cores). An address that cannot be reached, or a
    second connection in one process, is a :class:`ClusterError` with one line saying why."""
    import ray

    quiet = {"logging_level": logging.WARNING, "namespace": "workbench"}
    if address == LOCAL:
        kwargs = dict(address="local", num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False,
                      _node_ip_address=LOOPBACK, **quiet)
    elif address == AUTO:
        kwargs = dict(address="auto", **quiet)
    else:
        _probe(address)
        kwargs = dict(address=address, **quiet)
    if ray.is_initialized():
        raise ClusterError("this process already has a Ray connection: close the other executor first")
    start = time.perf_counter()
    try:
        ray.init(**kwargs)
    except Exception as exc:  # Ray raises a bare Exception when a node it starts times out (a loaded machine)
        if ray.is_initialized():
            ray.shutdown()
        where = {LOCAL: "start a local Ray", AUTO: "join a running Ray (auto: RAY_ADDRESS or `ray start`)"}.get(
            address, f"join the Ray cluster at {address}")
        raise ClusterError(f"cannot {where} after {time.perf_counter() - start:.0f} s: {_one_line(exc)}") from None
    return RayExecutor(address, max_retries)
