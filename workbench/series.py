"""The notebook series: executing notebooks with papermill, and ``workbench run`` (the main job: the whole
series, then the report). The notebook tests go through :func:`run_notebook` too.

Each notebook has a cell tagged ``parameters`` (defaults = the full run) and a small CI parameter set in
``metadata["workbench"]["ci_parameters"]``. It writes figures and ``results.json`` into its ``out_dir``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from workbench.config import output_dir, project_root
from workbench.errors import WorkbenchError
from workbench.report import build_report


def _say(message: str) -> None:
    print(message, flush=True)  # a long job: progress must show through a pipe at once


def notebook_dir() -> Path:
    return project_root() / "notebooks"


def notebook_paths() -> list[Path]:
    """The numbered series, in order."""
    return sorted(p for p in notebook_dir().glob("[0-9][0-9]_*.ipynb"))


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WorkbenchError(f"{path}: cannot read notebook ({exc})") from None


def ci_parameters(path: Path) -> dict[str, Any]:
    """The notebook's small CI parameter set."""
    return dict(_read(path).get("metadata", {}).get("workbench", {}).get("ci_parameters", {}))


def has_parameters_cell(path: Path) -> bool:
    return any("parameters" in c.get("metadata", {}).get("tags", []) for c in _read(path)["cells"])


def run_notebook(path: str | Path, out_root: str | Path, ci: bool = False,
                 parameters: dict[str, Any] | None = None, timeout: int = 3600) -> dict[str, Any]:
    """Execute one notebook into ``out_root/<stem>.ipynb`` with its figures under ``out_root/<stem>/``.

    Returns the notebook's ``results.json``. ``ci`` uses the small CI parameter set; ``parameters``
    override either set.
    """
    import papermill as pm

    path = Path(path)
    out_root = Path(out_root).resolve()
    nb_out = out_root / path.stem
    nb_out.mkdir(parents=True, exist_ok=True)
    params = {**(ci_parameters(path) if ci else {}), **(parameters or {}), "out_dir": str(nb_out)}
    if "interactive" in pm.inspect_notebook(str(path)):
        # No frontend draws widgets here; capturing their output headless can stall nbclient.
        params.setdefault("interactive", False)
    try:
        pm.execute_notebook(str(path), str(out_root / path.name), parameters=params, cwd=str(path.parent),
                            kernel_name="python3", progress_bar=False, execution_timeout=timeout,
                            log_output=False)
    except pm.PapermillExecutionError as exc:
        raise WorkbenchError(f"{path.name}: cell {exc.exec_count} failed: {exc.ename}: {exc.evalue} "
                             f"(executed copy: {out_root / path.name})") from None
    results = nb_out / "results.json"
    if not results.is_file():
        raise WorkbenchError(f"{path.name}: ran but wrote no {results}")
    return json.loads(results.read_text())


def run_series(out_root: str | Path | None = None, ci: bool = False, notebooks: Sequence[Path] | None = None,
               log: Callable[[str], None] = _say) -> dict[str, dict[str, Any]]:
    """Execute notebooks in order (all by default); stops at the first failure."""
    out_root = Path(out_root) if out_root else output_dir()
    results: dict[str, dict[str, Any]] = {}
    for nb in notebooks or notebook_paths():
        start = time.perf_counter()
        log(f"[notebooks] {nb.name} ({'ci' if ci else 'full'}) ...")
        results[nb.stem] = run_notebook(nb, out_root, ci=ci)
        log(f"[notebooks] {nb.name} done in {time.perf_counter() - start:.1f} s")
    return results


def run_job(out_root: str | Path | None = None, ci: bool = False, notebooks: Sequence[Path] | None = None,
            log: Callable[[str], None] = _say) -> dict[str, Any]:
    """``workbench run``: execute the series, then write the report beside the executed notebooks."""
    out = Path(out_root) if out_root else output_dir()
    results = run_series(out, ci=ci, notebooks=notebooks, log=log)
    md, html = build_report(out)
    return {"out": str(out), "notebooks": list(results), "markdown": str(md), "html": str(html)}
