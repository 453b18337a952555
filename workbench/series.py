"""The notebook series: executing notebooks with papermill, and ``workbench run`` (the main job: the whole
series recorded in the tracking store, then the report). The notebook tests go through :func:`run_notebook`.

Each notebook has a cell tagged ``parameters`` (defaults = the full run) and a small CI parameter set in
``metadata["workbench"]["ci_parameters"]``. It writes figures and ``results.json`` into its ``out_dir``.
A ``workbench run`` is one parent run of the ``benchmark-series`` experiment tagged with a run-group id;
each notebook is a child run holding its wall time, ``results.json`` and figures (what the report reads).
"""

from __future__ import annotations

import functools
import json
import time
import uuid
from pathlib import Path
from queue import Empty
from typing import Any, Callable, Sequence

from workbench.config import output_dir, project_root
from workbench.errors import NotebookFailedError, WorkbenchError
from workbench.report import RUN_GROUP_TAG, build_report, format_seconds
from workbench.tracking.experiments import SERIES
from workbench.tracking.runs import attach_outputs, log_run, parent_run
from workbench.tracking.store import Store


def _say(message: str) -> None:
    print(message, flush=True)  # a long job: progress must show through a pipe at once


def notebook_dir() -> Path:
    return project_root() / "notebooks"


def notebook_paths() -> list[Path]:
    """The numbered series, in order."""
    return sorted(p for p in notebook_dir().glob("[0-9][0-9]_*.ipynb"))


def select_notebooks(only: Sequence[str]) -> list[Path]:
    """The series' notebooks whose number is in ``only`` (``["03", "5"]``); an unknown number is an error
    naming the known ones."""
    by_number = {p.name[:2]: p for p in notebook_paths()}
    wanted = [n.strip().zfill(2) for n in only if n.strip()]
    unknown = [n for n in wanted if n not in by_number]
    if unknown or not wanted:
        raise WorkbenchError(f"--only {','.join(only)}: no notebook numbered {', '.join(unknown) or '(none)'}; "
                             f"the series has {', '.join(sorted(by_number))}")
    return [by_number[n] for n in sorted(set(wanted))]


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WorkbenchError(f"{path}: cannot read notebook ({exc})") from None


def ci_parameters(path: Path) -> dict[str, Any]:
    """The notebook's small CI parameter set."""
    return dict(_read(path).get("metadata", {}).get("workbench", {}).get("ci_parameters", {}))


SHELL_POLL_S = 0.2  # longest a finished cell can go unnoticed (see _sliced_get_msg)


def _sliced_get_msg(get_msg: Callable[..., Any]) -> Callable[..., Any]:
    """``get_msg(timeout)`` of a shell channel, waiting in slices of ``SHELL_POLL_S`` up to ``timeout``.

    Why: nbclient mimics the Output widget of a frontend (``nbclient.output_widget.OutputWidget``) and sends
    the captured outputs back to the kernel as comm messages on the *shell* socket, from its IOPub task,
    while the cell task awaits the execute reply by polling that same socket. A ZeroMQ socket's poll
    descriptor is edge-triggered (zmq_getsockopt, ZMQ_FD): the send can consume the edge of the arriving
    reply, and the poll then sleeps until its timeout -- for ever without one (jupyter/nbclient#312). The
    reply itself is queued, so a fresh poll finds it at once: polling in short slices bounds the stall."""

    async def sliced(timeout: float | None = None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = SHELL_POLL_S if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                return await get_msg(timeout=min(SHELL_POLL_S, left))
            except Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    return sliced


@functools.cache
def _engine() -> str:
    """Register (once) and name the papermill engine whose kernel client polls the shell in slices."""
    from nbclient.util import run_sync
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine, papermill_engines
    from papermill.log import logger
    from papermill.utils import merge_kwargs, remove_args

    class Client(PapermillNotebookClient):
        async def async_start_new_kernel_client(self) -> Any:
            kc = await super().async_start_new_kernel_client()
            kc.shell_channel.get_msg = _sliced_get_msg(kc.shell_channel.get_msg)
            return kc

        # nbclient binds the sync wrapper to the base coroutine: bind it to this one
        start_new_kernel_client = run_sync(async_start_new_kernel_client)

    class Engine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man: Any, kernel_name: str, log_output: bool = False,
                                     stdout_file: Any = None, stderr_file: Any = None, start_timeout: int = 60,
                                     execution_timeout: int | None = None, **kwargs: Any) -> Any:
            # papermill's NBClientEngine with this module's client
            kwargs = remove_args(["input_path"], **kwargs)
            final = merge_kwargs(remove_args(["timeout", "startup_timeout"], **kwargs),
                                 timeout=execution_timeout or kwargs.get("timeout"), startup_timeout=start_timeout,
                                 kernel_name=kernel_name, log=logger, log_output=log_output, stdout_file=stdout_file,
                                 stderr_file=stderr_file)
            return Client(nb_man, **final).execute()

    papermill_engines.register("workbench", Engine)
    return "workbench"


def has_parameters_cell(path: Path) -> bool:
    return any("parameters" in c.get("metadata", {}).get("tags", []) for c in _read(path)["cells"])


def run_notebook(path: str | Path, out_root: str | Path, ci: bool = False,
                 parameters: dict[str, Any] | None = None, timeout: int = 3600) -> dict[str, Any]:
    """Execute one notebook into ``out_root/<stem>.ipynb`` with its figures under ``out_root/<stem>/``.

    Returns the notebook's ``results.json``. ``ci`` uses the small CI parameter set; ``parameters``
    override either set. A failing cell raises :class:`NotebookFailedError` naming the notebook and the cell.
    """
    import papermill as pm

    path = Path(path)
    out_root = Path(out_root).resolve()
    nb_out = out_root / path.stem
    nb_out.mkdir(parents=True, exist_ok=True)
    params = {**(ci_parameters(path) if ci else {}), **(parameters or {}), "out_dir": str(nb_out)}
    try:
        pm.execute_notebook(str(path), str(out_root / path.name), parameters=params, cwd=str(path.parent),
                            kernel_name="python3", progress_bar=False, execution_timeout=timeout,
                            log_output=False, engine_name=_engine())
    except pm.PapermillExecutionError as exc:
        first = next((line for line in (exc.source or "").splitlines() if line.strip()), "")
        # cell_index counts the injected parameters cell; the executed copy shows the same numbering
        raise NotebookFailedError(f"{path.name}: cell {exc.cell_index} (`{first[:60]}`) failed: {exc.ename}: "
                                  f"{str(exc.evalue).splitlines()[0] if exc.evalue else ''} "
                                  f"(executed copy: {out_root / path.name})") from None
    results = nb_out / "results.json"
    if not results.is_file():
        raise NotebookFailedError(f"{path.name}: ran but wrote no {results}")
    return json.loads(results.read_text())


def record_notebook(store: Store, group: str, stem: str, nb_out: Path, seconds: float, ci: bool) -> str | None:
    """Log one executed notebook as a child of the enclosing series run: its wall time, ``results.json``
    and figures (the report reads these back)."""
    return log_run(store, SERIES, stem, params={"ci": ci}, metrics={"wall_time_s": seconds},
                   tags={RUN_GROUP_TAG: group, "workbench.notebook": f"{stem}.ipynb"},
                   artifacts=[nb_out / "results.json", *sorted(nb_out.glob("*.png"))], command="workbench run")


def run_series(store: Store, out_root: str | Path | None = None, ci: bool = False,
               notebooks: Sequence[Path] | None = None,
               log: Callable[[str], None] = _say) -> dict[str, Any]:
    """Execute notebooks in order (all by default) as one run group; stops at the first failure.

    Returns ``{"run_id", "group", "notebooks": {stem: seconds}, "wall_s"}``; ``run_id`` is None when the
    store was unavailable (the runs then wait in the outbox)."""
    out_root = Path(out_root) if out_root else output_dir()
    paths = list(notebooks or notebook_paths())
    group = uuid.uuid4().hex[:12]
    tags = {RUN_GROUP_TAG: group}
    times: dict[str, float] = {}
    width = max(len(p.name) for p in paths)
    start = time.perf_counter()
    with parent_run(store, SERIES, f"series {group}", {"ci": ci, "notebooks": ",".join(p.stem for p in paths)},
                    tags=tags, command="workbench run") as run_id:
        for nb in paths:
            began = time.perf_counter()
            try:
                run_notebook(nb, out_root, ci=ci)
            except NotebookFailedError:
                log(f"{nb.name:<{width}}  FAILED after {format_seconds(time.perf_counter() - began)}")
                raise
            times[nb.stem] = time.perf_counter() - began
            log(f"{nb.name:<{width}}  {format_seconds(times[nb.stem]):>9}")
            record_notebook(store, group, nb.stem, out_root.resolve() / nb.stem, times[nb.stem], ci)
        wall = time.perf_counter() - start
        attach_outputs("series", (), {"total_wall_time_s": wall})
    return {"run_id": run_id, "group": group, "notebooks": times, "wall_s": wall}


def run_job(store: Store, out_root: str | Path | None = None, ci: bool = False,
            notebooks: Sequence[Path] | None = None, log: Callable[[str], None] = _say) -> dict[str, Any]:
    """``workbench run``: execute the series, then build the report (``index.html``, ``report.md``) from the
    runs it recorded, beside the executed notebooks."""
    out = Path(out_root) if out_root else output_dir()
    done = run_series(store, out, ci=ci, notebooks=notebooks, log=log)
    log(f"{'total':<{max(len(p) for p in done['notebooks']) + 6}}  {format_seconds(done['wall_s']):>9}")
    if done["run_id"] is None:
        raise WorkbenchError(f"the series ran, but the tracking store {store.uri} was unavailable: its runs wait "
                             f"in {store.outbox}; run `workbench runs sync`, then `workbench report --latest "
                             f"--out {out}`")
    html, md = build_report(store, out, run_id=done["run_id"])
    return {"out": str(out), "run_id": done["run_id"], "group": done["group"],
            "notebooks": {k: round(v, 1) for k, v in done["notebooks"].items()},
            "wall_s": round(done["wall_s"], 1), "html": str(html), "markdown": str(md)}
