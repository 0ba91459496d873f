"""`tern sandbox ...` through typer's CliRunner on the sub-app, against the real Docker engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from starters.sandbox_cli import app
from tern.sandbox.docker_backend import DockerBackend

runner = CliRunner()

ANALYSIS = """
import numpy as np
import matplotlib.pyplot as plt
plt.plot(readings)
plt.title("readings")
print("points:", len(readings))
results = {"mean": float(np.mean(readings)), "label": meta["label"],
           "proposed_writes": [{"channel": "SR:C01:SP", "value": 1.25}]}
"""


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    paths = {
        "code": tmp_path / "analysis.py",
        "readings": tmp_path / "readings.json",
        "meta": tmp_path / "meta.json",
        "bad": tmp_path / "bad.json",
        "failing": tmp_path / "failing.py",
    }
    paths["code"].write_text(ANALYSIS)
    paths["readings"].write_text("[1.0, 2.0, 4.5]")
    paths["meta"].write_text('{"label": "BPM01"}')
    paths["bad"].write_text("{not json")
    paths["failing"].write_text("results = {'x': 1 / 0}\n")
    return paths


@pytest.mark.docker
def test_run_prints_results_stdout_and_writes_figures(
    docker_backend: DockerBackend, files: dict[str, Path], tmp_path: Path
) -> None:
    out_dir = tmp_path / "figures"
    args = [
        "run",
        str(files["code"]),
        "--input",
        f"readings={files['readings']}",
        "-i",
        f"meta={files['meta']}",
    ]
    result = runner.invoke(app, [*args, "--out", str(out_dir)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok")
    assert '"mean": 2.5' in result.output and "BPM01" in result.output
    assert "points: 3" in result.output
    assert "proposed write: SR:C01:SP = 1.25" in result.output
    [figure] = out_dir.glob("*.png")
    assert figure.read_bytes().startswith(b"\x89PNG")
    assert f"figure: {figure}" in result.output.replace("\n", "")


@pytest.mark.docker
def test_run_json_output_is_one_document(docker_backend: DockerBackend, files: dict[str, Path]) -> None:
    args = [
        "run",
        str(files["code"]),
        "--json",
        "-i",
        f"readings={files['readings']}",
        "-i",
        f"meta={files['meta']}",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["status"] == "ok" and doc["results"]["mean"] == 2.5
    assert doc["proposed_writes"] == [
        {"id": "", "kind": "control_write", "channel": "SR:C01:SP", "value": 1.25, "reason": ""}
    ]
    assert doc["figures"][0]["size_bytes"] > 0 and "png" not in doc["figures"][0]
    assert doc["policy"]["risk"] == "low"


@pytest.mark.docker
def test_failing_code_exits_1_with_the_traceback(docker_backend: DockerBackend, files: dict[str, Path]) -> None:
    result = runner.invoke(app, ["run", str(files["failing"])])
    assert result.exit_code == 1
    assert "ZeroDivisionError" in result.output and "line 1" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "/nonexistent/analysis.py"], "no such file '/nonexistent/analysis.py'"),
        (["run", "{code}", "--input", "readings"], "must look like NAME=PATH"),
        (["run", "{code}", "--input", "=x.json"], "must look like NAME=PATH"),
        (["run", "{code}", "--input", "not-an-identifier={readings}"], "must be a Python identifier"),
        (["run", "{code}", "--input", "readings=/nonexistent.json"], "no such file '/nonexistent.json'"),
        (["run", "{code}", "--input", "readings={bad}"], "is not valid JSON"),
        (["run", "{code}", "--file", "raw=/nonexistent.bin"], "--file raw: no such file"),
    ],
)
def test_bad_input_exits_2_naming_the_problem(files: dict[str, Path], args: list[str], message: str) -> None:
    formatted = [a.format(**{k: str(v) for k, v in files.items()}) for a in args]
    result = runner.invoke(app, formatted)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())


def test_process_backend_not_permitted_exits_3(files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERN_SANDBOX__ALLOW_PROCESS_BACKEND", "false")
    from tern.config import get_settings

    get_settings.cache_clear()
    try:
        result = runner.invoke(app, ["run", str(files["failing"]), "--backend", "process"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 3
    assert "TERN_SANDBOX__ALLOW_PROCESS_BACKEND" in " ".join(result.output.split())


def test_analyze_shows_findings_and_the_approval_decision(tmp_path: Path) -> None:
    code = tmp_path / "w.py"
    code.write_text("from epics import caput as _w\n_w('SR:C01:SP', 1)\nresults = {}\n")
    result = runner.invoke(app, ["analyze", str(code), "--mode", "control_writes"])
    assert result.exit_code == 0, result.output
    assert "risk critical" in result.output and "epics.caput (as _w)" in result.output
    assert "needs approval (control_writes): yes" in result.output


@pytest.mark.docker
def test_build_is_a_no_op_when_the_image_is_current(docker_backend: DockerBackend) -> None:
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 0, result.output
    assert f"sandbox image {docker_backend.image} is up to date" in result.output


@pytest.mark.docker
def test_reap_reports_a_count(docker_backend: DockerBackend) -> None:
    result = runner.invoke(app, ["reap", "--max-age", "3600"])
    assert result.exit_code == 0, result.output
    assert "orphaned sandbox container(s)" in result.output
