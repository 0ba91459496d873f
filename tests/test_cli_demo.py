"""The main job from the command line, as a user runs it: ``tern demo`` on a fresh data directory
(embedded PostgreSQL, Temporal dev server, simulated accelerator, worker), then pending/approve/result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from tern.embedded.net import free_port
from workflows.agent_run import AgentRunWorkflow

TERN = str(Path(sys.executable).parent / "tern")


@pytest.fixture(scope="module")
def stack_env(tmp_path_factory: pytest.TempPathFactory):
    data = tmp_path_factory.mktemp("stack")
    env = {
        **os.environ,
        "TERN_DATA_DIR": str(data),
        "TERN_DATABASE__PG_PORT": str(free_port()),
        "TERN_TEMPORAL__ADDRESS": f"127.0.0.1:{free_port()}",
        "TERN_TEMPORAL__UI_PORT": str(free_port()),
        "TERN_CONTROL__CA_SERVER_PORT": str(free_port()),
        "TERN_ARIEL__API_PORT": str(free_port()),
        "TERN_ARCHIVER__PORT": str(free_port()),
        "TERN_WORKER__HTTP_PORT": str(free_port()),
        "TERN_TEMPORAL__TASK_QUEUE": "cli-demo",
    }
    # The module's stack, up before any test: each test may then run alone (`-k`) or in any order.
    up = subprocess.run([TERN, "up"], env=env, capture_output=True, text=True, timeout=300)
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        yield env
    finally:
        subprocess.run([TERN, "down"], env=env, capture_output=True, timeout=120)


def tern(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TERN, *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_demo_auto_approve_completes_with_a_verified_write(stack_env, docker_backend, tmp_path) -> None:
    proc = tern(stack_env, "demo", "--auto-approve", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["status"] == "completed"
    # Hybrid search out of the box (default onnx provider): no fallback notice, the mode and model are reported.
    assert "keyword search only" not in proc.stderr and "embedded with all-MiniLM-L6-v2-int8" in proc.stderr
    search = next(s for s in result["steps"] if s["kind"] == "logbook_search")
    assert (search["search_mode_used"], search["embedding_model"]) == ("hybrid", "all-MiniLM-L6-v2-int8")
    assert "keyword" not in search["message"]
    assert_family_url_lists_the_run(stack_env, result["ui_url"], result["run_id"])
    assert [a["kind"] for a in result["approvals"]] == ["python", "control_write"]
    py = next(s for s in result["steps"] if s["kind"] == "python")["python"]
    assert py["execution"]["isolation"] == "container"
    assert 0 < py["execution"]["results"]["reflected_fraction"] < 1
    # the archived night of the trip (demo logbook DEMO-026: reflected power over 80 kW, interlock at 03:15 UTC)
    history = next(s for s in result["steps"] if s["kind"] == "archiver_read")["archived"]
    assert history["binning"] == "mean_60" and [s["count"] for s in history["series"]] == [240, 240]
    got = py["execution"]["results"]
    # 1-minute means of the trip night (the raw peak is above 80 kW; a minute's mean smooths it)
    assert got["peak_reflected_kW"] > 70 and got["trip_time"].endswith("T03:15:00+00:00"), got
    assert 33.5 < got["peak_temperature_degC"] < 35 and 1.0 < got["warming_hours_before_trip"] < 2.5, got
    figure = tmp_path / "figure.png"
    art = py["execution"]["figures"][0]["artifact_id"]
    assert tern(stack_env, "artifact", art, "--out", str(figure)).returncode == 0
    assert figure.read_bytes()[:4] == b"\x89PNG"
    assert len(result["writes"]) == 1 and result["writes"][0]["verified"] is True
    assert result["writes"][0]["channel"] == "SR:RF:CAVITY:01:VOLTAGE:SP"
    assert result["citations"] and f"[#{result['citations'][0]}]" in result["answer"]
    status = json.loads(tern(stack_env, "status", "--json").stdout)
    assert {c["name"]: c["state"] for c in status["components"]} == {
        "postgres": "running",
        "temporal": "running",
        "sim": "running",
        "archiver": "running",
        "worker": "running",
        "ariel": "running",
        "triggers": "running",
    }
    assert status["embedding"]["loaded"] is True and status["embedding"]["stored_as"] == "all-MiniLM-L6-v2-int8"
    # tern ariel search goes through the stack's ARIEL API (the same database as the CLI's settings): hybrid,
    # without loading the runtime in the CLI.
    found = tern(
        {**stack_env, "PYTHONPROFILEIMPORTTIME": "1"}, "ariel", "search", "cavity trip", "-m", "hybrid", "--json"
    )
    assert found.returncode == 0, found.stderr[-3000:]
    assert json.loads(found.stdout)["answered_by"] == f"api http://127.0.0.1:{stack_env['TERN_ARIEL__API_PORT']}"
    assert (json.loads(found.stdout)["mode_used"], json.loads(found.stdout)["embedding_model"]) == (
        "hybrid",
        "all-MiniLM-L6-v2-int8",
    )
    imported = {ln.split("|")[-1].strip() for ln in found.stderr.splitlines() if ln.startswith("import time:")}
    assert "tern.config" in imported and imported & {"onnxruntime", "tokenizers", "tern.ariel.service"} == set()


def assert_family_url_lists_the_run(env: dict[str, str], url: str, run_id: str) -> None:
    """The Web UI link's filter, run against the dev server's visibility, lists the run and its python step."""
    import asyncio
    from urllib.parse import parse_qs, urlparse

    from temporalio.client import Client

    query = parse_qs(urlparse(url).query)["query"][0]

    async def ids() -> set[str]:
        client = await Client.connect(env["TERN_TEMPORAL__ADDRESS"])
        return {wf.id async for wf in client.list_workflows(query)}

    assert asyncio.run(ids()) == {run_id, f"{run_id}.analyse"}


def wait_pending(env: dict[str, str], workflow_id: str, kind: str) -> dict:
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for p in json.loads(tern(env, "pending", "--json").stdout):
            if p["run_id"].split(".")[0] == workflow_id and p["pending"]["kind"] == kind:
                return p
        time.sleep(0.3)
    raise AssertionError(f"no pending {kind} request for {workflow_id}")


def test_demo_waits_then_pending_approve_result(stack_env, docker_backend) -> None:
    proc = tern(stack_env, "demo", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    waiting = json.loads(proc.stdout)
    assert waiting["status"] == "awaiting_approval"
    workflow_id = waiting["run_id"]  # the --json key scripts read; workflow_id beside it (tern.models.ids)
    assert waiting["workflow_id"] == workflow_id
    code_req = wait_pending(stack_env, workflow_id, "python")
    assert code_req["run_id"] == code_req["workflow_id"] == f"{workflow_id}.analyse"
    shown = tern(stack_env, "show", workflow_id)
    assert shown.returncode == 0 and "proposed_writes" in shown.stdout and "policy analysis" in shown.stdout
    refused = tern(stack_env, "approve", workflow_id, "--as", "mallory")
    assert refused.returncode == 2 and "not an approver" in refused.stderr
    stale = tern(stack_env, "approve", workflow_id, "--request", "not-the-one-i-read")
    assert stale.returncode == 2 and "read it with `tern show" in stale.stderr
    request_id = code_req["pending"]["request_id"]
    ok = tern(stack_env, "approve", workflow_id, "--request", request_id, "--comment", "code reviewed", "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["kind"] == "python"
    write_req = wait_pending(stack_env, workflow_id, "control_write")
    assert (
        write_req["run_id"] == workflow_id and write_req["pending"]["write"]["channel"] == "SR:RF:CAVITY:01:VOLTAGE:SP"
    )
    self_approval = tern(stack_env, "approve", workflow_id, "--comment", "mine", "--json")
    assert self_approval.returncode == 2 and "two-person rule" in self_approval.stderr
    ok = tern(stack_env, "approve", workflow_id, "--as", "demo-operator", "--comment", "fine", "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["decision"] == "approved"
    res = tern(stack_env, "result", workflow_id, "--json")
    assert res.returncode == 0 and json.loads(res.stdout)["status"] == "completed"
    assert json.loads(res.stdout)["run_id"] == json.loads(res.stdout)["workflow_id"] == workflow_id
    again = tern(stack_env, "approve", workflow_id)
    assert again.returncode == 2 and "not waiting" in again.stderr
    audit = json.loads(tern(stack_env, "audit", workflow_id, "--json").stdout)
    # the python step's code approval (child run RUN_ID.analyse) comes first, mallory's refused attempt
    # included; then the write's, with the requester's refused self-approval
    assert [(a["run_id"], a["event_kind"]) for a in audit] == [
        (f"{workflow_id}.analyse", "approval_requested"),
        (f"{workflow_id}.analyse", "decision_refused"),
        (f"{workflow_id}.analyse", "decision"),
        (workflow_id, "approval_requested"),
        (workflow_id, "decision_refused"),
        (workflow_id, "decision"),
        (workflow_id, "write"),
    ]
    # The fresh history replays against the workflow code too.
    hist = Path(stack_env["TERN_DATA_DIR"]) / "h.json"
    assert tern(stack_env, "export-history", workflow_id, "--out", str(hist)).returncode == 0
    import asyncio

    replayer = Replayer(workflows=[AgentRunWorkflow], data_converter=pydantic_data_converter)
    asyncio.run(replayer.replay_workflow(WorkflowHistory.from_json(workflow_id, hist.read_text())))


def test_bad_input_exits_2_and_starts_nothing(stack_env, tmp_path) -> None:
    before = json.loads(tern(stack_env, "pending", "--json").stdout)
    cases = {
        "nan.json": '{"steps":[{"kind":"control_write","channel":"SR:RF:CAVITY:01:VOLTAGE:SP","value":NaN}]}',
        "inf.json": '{"steps":[{"kind":"control_write","channel":"SR:RF:CAVITY:01:VOLTAGE:SP","value":1e999}]}',
        "text.json": '{"steps":[{"kind":"control_write","channel":"SR:RF:CAVITY:01:VOLTAGE:SP","value":"1"}]}',
        "kind.json": '{"steps":[{"kind":"launch_missiles"}]}',
        "unknown.json": '{"steps":[{"kind":"channel_read","channels":["NO:SUCH:CHANNEL"]}]}',
        "broken.json": '{"steps": [',
        "gather.json": '{"steps":[{"kind":"gather","sources":[{"kind":"channel_read","channels":["NO:SUCH"]}]}]}',
        "reversed.json": '{"steps":[{"kind":"archiver_read","channels":["A"],"range":"2026-11-20 to 2026-11-19"}]}',
        "operator.json": '{"steps":[{"kind":"archiver_read","channels":["A"],"range":"last 1 h","binning":"avg_6"}]}',
        "memory.json": '{"steps":[{"kind":"memory","action":"remember"}]}',
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        proc = tern(stack_env, "run", "question", "--plan", str(tmp_path / name))
        assert proc.returncode == 2, (name, proc.stderr)
        assert proc.stderr.startswith("error: "), (name, proc.stderr)
    assert tern(stack_env, "result", "no-such-run").returncode == 2
    assert json.loads(tern(stack_env, "pending", "--json").stdout) == before


def test_busy_port_is_reported(stack_env, tmp_path) -> None:
    env = {**stack_env, "TERN_DATA_DIR": str(tmp_path / "other")}  # same ports, another stack
    proc = tern(env, "up")
    if proc.returncode == 0:  # it must not start; if it did, stop it, or it holds the ports of later tests
        tern(env, "down")
    assert proc.returncode == 1, "another stack started on the module's stack's ports: " + proc.stdout[-2000:]
    assert "is busy" in proc.stderr and "TERN_DATABASE__PG_PORT" in proc.stderr


def test_demo_without_a_sandbox_runs_the_explicit_write_plan_with_a_notice(stack_env) -> None:
    env = {**stack_env, "TERN_SANDBOX__IMAGE": "tern-sandbox:does-not-exist"}
    proc = tern(env, "demo", "--auto-approve", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sandbox is unavailable" in proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "completed"
    kinds = [s["kind"] for s in result["steps"]]
    assert kinds == ["logbook_search", "channel_read", "archiver_read", "control_write", "respond"]
    assert result["writes"][0]["verified"] is True
