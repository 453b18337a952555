"""The notebook series: executing notebooks with papermill, and ``workbench run`` (the main job: the whole
series recorded in the tracking store, then the report). The notebook tests go through :func:`run_notebook`.

Each notebook has a cell tagged ``parameters`` (defaults = the full run) and a small CI parameter set in
``metadata["workbench"]["ci_parameters"]``. It writes figures and ``results.json`` into its ``out_dir``.
A ``workbench run`` is one parent run of the ``benchmark-series`` experiment tagged with a run-group id;
each notebook is a child run holding its wall time, ``results.json`` and figures (what the report reads).
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
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


def _declares(path: Path, name: str) -> bool:
    """Whether the notebook's ``parameters`` cell assigns ``name``."""
    cells = [c for c in _read(path)["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    source = "".join("".join(c["source"]) for c in cells)
    return any(line.split("=")[0].strip() == name for line in source.splitlines() if "=" in line)


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
    # Headless, a notebook that declares `interactive` draws its panels once, statically, through the same
    # callback: an ipywidgets Output capture can leave nbclient waiting for ever on an idle kernel (seen in
    # CI on notebook 07's panel; jupyter/nbclient#312). The widgets themselves are tested in JupyterLab.
    headless = {"interactive": False} if _declares(path, "interactive") else {}
    params = {**headless, **(ci_parameters(path) if ci else {}), **(parameters or {}), "out_dir": str(nb_out)}
    try:
        pm.execute_notebook(str(path), str(out_root / path.name), parameters=params, cwd=str(path.parent),
                            kernel_name="python3", progress_bar=False, execution_timeout=timeout,
                            log_output=False)
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
