"""The notebooks' widgets driven headless from Python: set a control's ``.value`` (or click), and the
widget's output changes. Outputs are captured with IPython's display capture, the way a kernel would send
them. The panels: notebook 03 (``workbench.bench.panel``), 05 (``workbench.hybrid.panel``, the fusion
weight) and 07 (``workbench.features.panel``, ttl and lookback). Last, the end-to-end test: notebook 03
run in a real JupyterLab server in headless Chromium, its panel's slider moved, the figure redrawn."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from workbench.bench.panel import make_panel
from workbench.features import panel as features_panel
from workbench.hybrid import panel as hybrid_panel
from workbench.runners.ann import run_ann
from workbench.tracking.sink import CollectingSink


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("panel")
    return run_ann("synthetic:n=600,dim=8,queries=20,clusters=5", out, runs=1, budget_s=0.2, progress=False,
                   specs=["faiss:HNSW32,Flat?efSearch=4,64", "hnswlib:M=8,ef_construction=40?ef=4,64"],
                   sink=CollectingSink()).frame


def _pngs(captured) -> list[bytes]:
    return [o.data["image/png"] for o in captured.outputs if "image/png" in o.data]


def _point(captured) -> str:
    """The highlighted point the panel prints under its figure (``faiss:HNSW32,Flat?efSearch=64``)."""
    return captured.stdout.strip().splitlines()[-1].split(": recall")[0].split("\r")[-1]


def test_panel_is_drawn_headless_and_the_slider_moves_the_point(sweep) -> None:
    """Notebook 03's panel: the figure is sent as PNG (not '<Figure ...>' text, which is what display(fig)
    sends under MPLBACKEND=Agg), and moving the slider redraws it with the other point highlighted."""
    InteractiveShell.instance()  # a shell for display() to publish through, as in a kernel
    with capture_output() as first:
        box = make_panel(sweep)
    dropdown, slider, _ = box.children
    assert len(_pngs(first)) == 1 and "recall" in first.stdout
    with capture_output() as moved:
        slider.value = slider.options[-1]
    assert len(_pngs(moved)) == 1 and _pngs(moved)[0] != _pngs(first)[0]
    assert _point(moved) != _point(first) and _point(moved).endswith("=64")  # the highlighted point moved
    with capture_output() as switched:
        dropdown.value = dropdown.options[-1]
    assert _pngs(switched) and slider.description in {"efSearch", "ef"}


def test_interactive_sweep_reruns_on_value_and_on_click() -> None:
    """The pattern of notebooks 05 (fusion weight) and 07: ``interactive(f, ...)`` calls f once, a child's
    ``.value`` re-runs it; with ``manual`` nothing runs until the button is clicked (headless too)."""
    import ipywidgets as w
    from IPython.display import display

    InteractiveShell.instance()
    seen: list[float] = []

    def show(weight: float = 0.3) -> None:
        seen.append(weight)
        display(f"nDCG@10 at w={weight:.1f}")

    with capture_output() as out:
        panel = w.interactive(show, weight=w.FloatSlider(value=0.3, min=0.1, max=0.9, step=0.1))
        panel.children[0].value = 0.7
    assert seen == [0.3, 0.7]
    manual = w.interactive(show, {"manual": True}, weight=w.FloatSlider(value=0.5, min=0.1, max=0.9, step=0.1))
    manual.children[0].value = 0.9
    assert seen == [0.3, 0.7]  # manual: moving the slider alone runs nothing
    button = next(c for c in manual.children if isinstance(c, w.Button))
    button.click()
    assert seen[-1] == 0.9 and "w=0.7" in str(out.outputs[-1].data)


def _texts(captured) -> str:
    return captured.stdout + "".join(o.data.get("text/plain", "") for o in captured.outputs)


@pytest.mark.slow
def test_fusion_weight_panel_redraws_at_the_new_weight(tmp_path) -> None:
    """Notebook 05's panel: moving the weight slider redraws the curves (new PNG) and the table's convex
    nDCG@10 is the curve's value at that weight; switching the normalisation changes the table (the figure
    draws every normalisation)."""
    from workbench.runners.hybrid import run_hybrid

    results = {"medline": run_hybrid("medline", None, folds=3)}
    InteractiveShell.instance()
    with capture_output() as first:
        box = hybrid_panel.make_panel(results, weight=0.3)
    slider, dropdown = box.children[0].children
    assert slider.value == 0.3 and len(_pngs(first)) == 1
    with capture_output() as moved:
        slider.value = 0.8
    assert len(_pngs(moved)) == 1 and _pngs(moved)[0] != _pngs(first)[0]
    curve = results["medline"].weight_curve
    at = curve[(curve["norm"] == "tmm") & (curve["weight"].round(2) == 0.8)]["ndcg@10"].iloc[0]
    table, _ = hybrid_panel.panel_update(results, 0.8, "tmm")
    assert table.loc["medline", "convex ndcg@10"] == pytest.approx(at) and f"{at:.4f}" in _texts(moved)
    with capture_output() as switched:
        dropdown.value = "zscore"
    assert _pngs(switched) and "zscore" in _texts(switched) and "zscore" not in _texts(moved)


def test_ttl_lookback_panel_applies_on_click() -> None:
    """Notebook 07's panel: moving the sliders runs nothing; ``apply`` reruns the join with the new ttl and
    lookback, and the counts match a pandas reference (latest transaction within ttl; window count)."""
    from datetime import timedelta

    from workbench.features.synth import EPOCH, fraud_stream

    tx = fraud_stream(n_accounts=120, days=40, seed=3)["transactions"]
    at = EPOCH + timedelta(days=30)
    InteractiveShell.instance()
    with capture_output() as first:
        box = features_panel.make_panel(tx, at=at, ttl="7d", lookback="1d")
    ttl, lookback, button = box.children[0].children
    assert len(_pngs(first)) == 1 and "ttl 7d" in first.stdout
    with capture_output() as moved:
        ttl.value, lookback.value = "1h", "30d"
    assert not _pngs(moved) and not moved.stdout  # nothing runs until apply
    with capture_output() as applied:
        button.click()
    assert len(_pngs(applied)) == 1 and _pngs(applied)[0] != _pngs(first)[0]
    row = features_panel.panel_update(features_panel.panel_store(tx, at), timedelta(hours=1), timedelta(days=30))
    past = tx[tx["event_timestamp"] <= at]
    age = at - past.groupby("account_id")["event_timestamp"].max()
    in_window = past[past["event_timestamp"] >= at - timedelta(days=30)].groupby("account_id").size()
    accounts = tx["account_id"].unique()
    assert row["present"] == int((age <= timedelta(hours=1)).sum())
    assert row["missing"] == len(accounts) - len(age) and row["expired"] == len(age) - row["present"]
    assert row["mean_count"] == pytest.approx(in_window.reindex(accounts, fill_value=0).mean())
    assert f"ttl 1h: {row['present']} present" in applied.stdout


ROOT = Path(__file__).resolve().parents[1]
NB03 = ROOT / "notebooks" / "03_recall_latency_tradeoffs.ipynb"
SMALL = {"data": "synthetic:n=1000,dim=16,queries=50,clusters=10", "runs": 1, "track": False,
         "specs": ["hnswlib:M=8,ef_construction=40?ef=10,20,40", "faiss:Flat"]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _small_copy(folder: Path) -> Path:
    """Notebook 03 with CI-sized parameters assigned right after its parameters cell (as papermill does)."""
    import nbformat

    nb = nbformat.read(NB03, as_version=4)
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])) + 1
    values = {**SMALL, "out_dir": str(folder / "out")}
    nb.cells.insert(at, nbformat.v4.new_code_cell("\n".join(f"{k} = {v!r}" for k, v in values.items())))
    path = folder / "03_small.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server on a loopback port with a token, rooted in a temp folder; stopped at the end."""
    if not shutil.which("chromium") or not Path("/usr/bin/chromedriver").exists():
        pytest.skip("needs Debian's chromium and chromium-driver (.ci/run installs them)")
    root = tmp_path / "root"
    root.mkdir()
    nb = _small_copy(root)
    port, token = _free_port(), "wb-" + os.urandom(8).hex()
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt"),
           "MPLBACKEND": "Agg"}
    log = open(tmp_path / "lab.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
                             f"--ServerApp.port={port}", f"--IdentityProvider.token={token}",
                             f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True",
                             "--ServerApp.port_retries=0", "--allow-root", "--LabApp.extension_manager=readonly",
                             # no network: no update check, no news feed
                             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                             "--LabApp.news_url=None"],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                assert proc.poll() is None, (tmp_path / "lab.log").read_text()[-2000:]
                time.sleep(0.5)
        yield {"base": base, "token": token, "notebook": nb.name, "log": tmp_path / "lab.log", "tmp": tmp_path}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def _browser(profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1000", f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    opts.binary_location = shutil.which("chromium")
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


PANEL_IMG = ("return Array.from(document.querySelectorAll('.widget-output img, .jupyter-widgets-output-area img'))"
             ".map(i => i.src);")


@pytest.mark.slow
def test_notebook_03_panel_in_jupyterlab_redraws_when_the_slider_moves(lab) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    driver = _browser(lab["tmp"] / "chromium-profile")
    try:
        driver.get(f"{lab['base']}/lab/tree/{lab['notebook']}?token={lab['token']}")
        wait = WebDriverWait(driver, 240, poll_frequency=0.5)
        wait.until(lambda d: d.execute_script(
            "const a = window.jupyterapp; return !!(a && a.shell.currentWidget && a.shell.currentWidget.sessionContext"
            " && a.shell.currentWidget.sessionContext.session && a.shell.currentWidget.sessionContext.session.kernel);"))
        wait.until(lambda d: d.execute_script(
            "return window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle';"))
        driver.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells');")
        before = wait.until(lambda d: d.execute_script(PANEL_IMG))
        handle = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, ".widget-slider .noUi-handle"))
        label = driver.find_element(By.CSS_SELECTOR, ".widget-slider .widget-readout").text
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", handle)
        handle.click()
        handle.send_keys(Keys.END)  # the slider's last value
        # the panel's figure is replaced: a different PNG (the highlighted point moved)
        wait.until(lambda d: (lambda s: s if s and s[0] != before[0] else None)(d.execute_script(PANEL_IMG)))
        assert driver.find_element(By.CSS_SELECTOR, ".widget-slider .widget-readout").text != label
        driver.save_screenshot(str(lab["tmp"] / "jupyterlab_panel.png"))
    finally:
        driver.quit()
