"""`workbench data list`, `workbench embed`, error reporting, and `python -m workbench`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import requires_real_data

from workbench.cli import main


@requires_real_data
def test_data_list_finds_the_three_collections(capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "list", "--json"]) == 0
    found = {d["name"]: d for d in json.loads(capsys.readouterr().out)["datasets"]}
    for name in ("cranfield", "cisi", "medline"):
        assert found[name]["present"] and Path(found[name]["path"]).is_dir()


def test_embed_twice_second_run_all_hits(tiny_beir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    assert main(["embed", str(tiny_beir), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert (first["n_texts"], first["dim"], first["encoded"], first["cache_hits"]) == (5, 384, 5, 0)
    assert main(["embed", str(tiny_beir), "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert (second["encoded"], second["cache_hits"]) == (0, 5)
    assert {"n_texts", "dim", "encoded", "cache_hits", "seconds"} <= set(second)


def test_bad_input_is_a_clear_error_not_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["embed", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err


def test_python_dash_m_workbench() -> None:
    done = subprocess.run([sys.executable, "-m", "workbench", "--help"], capture_output=True, text=True, check=True)
    assert "data" in done.stdout and "embed" in done.stdout
