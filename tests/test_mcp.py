"""``tern mcp`` with the official SDK's own client, over stdio (``python -m starters.cli mcp`` spawned by the client)
and streamable HTTP (``tern mcp --http PORT``), against a real stack: Temporal dev server, PostgreSQL, the caproto
IOC, and a Tern worker in this process. Approvals come from the ``tern`` CLI: no MCP tool can decide."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import BlobResourceContents, TextResourceContents

from tern.archiver.store import ArchiveStore
from tern.db import create_pool
from tern.embedded.net import free_port
from tern.sandbox.artifacts import store_artifact
from tests.agent_helpers import ingest_demo, running_worker
from tests.archiver.helpers import serving
from tests.llm_script import plan_json, scripted_llm

ROOT = Path(__file__).resolve().parent.parent
SETPOINT = "SR:RF:CAVITY:01:VOLTAGE:SP"  # writable, 0..3, verified by readback
READ_ONLY = "SR:RF:CAVITY:01:POWER:REV"
ARCHIVED = "TEST:MCP:POWER"  # served by this test's archiver
T0 = 1_800_000_000 - 1_800_000_000 % 3600  # 2027-01-15T08:00:00Z
MCP_USER = "mcp-agent"
TOKEN = "tern-mcp-test-token-0123456789"
APPROVER = "bob"
EXPECTED_TOOLS = {
    "ask",
    "run_plan",
    "propose_write",
    "run_status",
    "run_result",
    "pending_approvals",
    "search_logbook",
    "find_channels",
    "read_channels",
    "archiver_read",
}


def mcp_env(temporal_env: Any, settings: Any, tmp_path: Path) -> dict[str, str]:
    """The environment of the MCP server and of the ``tern`` CLI: this test's Temporal, database, task queue and
    IOC, writes enabled, no LLM configured."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TERN_LLM_")}
    return env | {
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "TERN_DATA_DIR": str(tmp_path),
        "TERN_DATABASE__URL": settings.dsn,
        "TERN_TEMPORAL__ADDRESS": temporal_env.client.service_client.config.target_host,
        "TERN_TEMPORAL__TASK_QUEUE": settings.temporal.task_queue,
        "TERN_CONTROL__CA_SERVER_PORT": str(settings.control.ca_server_port),
        "TERN_CONTROL__WRITES_ENABLED": "true",
        "TERN_ARCHIVER__PORT": str(free_port()),  # nothing listens: archiver_read must say so
    }


def stdio_client(env: dict[str, str]) -> Client:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "starters.cli", "mcp", "--user", MCP_USER], env=env, cwd=str(ROOT)
    )
    return Client(params, read_timeout_seconds=120)


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "w") as fh:
        return subprocess.Popen(args, env=env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)


def _log(log: Path) -> str:
    return log.read_text()[-3000:]


@asynccontextmanager
async def http_server(env: dict[str, str], log: Path, token: str | None = None) -> AsyncIterator[str]:
    """``tern mcp --http PORT`` as a subprocess, with ``token`` as its bearer token (``TERN_MCP__TOKEN``) or, when
    None, ``--no-auth``; yields its URL once it answers."""
    port = free_port()
    args = [sys.executable, "-m", "starters.cli", "mcp", "--http", str(port), "--user", MCP_USER]
    if token is None:
        args.append("--no-auth")
    else:
        env = env | {"TERN_MCP__TOKEN": token}
    proc = await asyncio.to_thread(_spawn, args, env, log)
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                async with httpx.AsyncClient() as http:
                    await http.get(url, timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, _log(log)
                assert time.monotonic() < deadline, _log(log)
                await asyncio.sleep(0.3)
        assert f"serving MCP at {url}" in _log(log)
        yield url
    finally:
        proc.terminate()
        try:
            await asyncio.to_thread(proc.wait, 10)
        except subprocess.TimeoutExpired:
            proc.kill()


async def resource_json(client: Client, uri: str) -> Any:
    (contents,) = (await client.read_resource(uri)).contents
    assert isinstance(contents, TextResourceContents), contents
    return json.loads(contents.text)


def payload(result: Any) -> Any:
    """The JSON a successful tool call returned."""
    assert not result.is_error, result.content[0].text
    text = "".join(c.text for c in result.content)
    return json.loads(text) if text.strip() else []


def error_text(result: Any) -> str:
    assert result.is_error, result.content
    text = "".join(c.text for c in result.content)
    assert "Traceback" not in text
    return text


async def tern_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "starters.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )


async def finished(client: Client, workflow_id: str, within_s: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + within_s
    while True:
        res = payload(await client.call_tool("run_result", {"workflow_id": workflow_id}))
        if res["finished"]:
            return res
        assert time.monotonic() < deadline, res
        await asyncio.sleep(0.5)


async def test_stdio_tools_search_and_a_write_approved_from_the_cli(temporal_env, settings, tmp_path) -> None:
    await ingest_demo(settings.dsn)
    pool = await create_pool(settings.dsn)
    store = ArchiveStore(pool)
    info = await store.ensure_channel(ARCHIVED, prec=1, units="kW")
    await store.append(info.id, [(T0 + 60 * i, 0, 10.0 + i, 0, 0) for i in range(30)])
    async with serving(store) as archiver:
        env = mcp_env(temporal_env, settings, tmp_path) | {"TERN_ARCHIVER__URL": archiver.url}
        try:
            await over_stdio(env, temporal_env, settings)
        finally:
            await pool.close()


async def over_stdio(env: dict[str, str], temporal_env: Any, settings: Any) -> None:
    """The test above, with its archiver serving ``ARCHIVED``."""
    async with running_worker(temporal_env.client, settings), stdio_client(env) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert set(tools) == EXPECTED_TOOLS
        for t in tools.values():  # schemas from the pydantic models, strict
            assert t.input_schema["type"] == "object" and t.input_schema["additionalProperties"] is False, t.name
            assert t.description
        assert {"channel", "value", "reason", "approvers"} <= set(tools["propose_write"].input_schema["properties"])
        assert "steps" in json.dumps(tools["run_plan"].input_schema)
        # an MCP client can never decide: no tool approves, rejects or decides, and no argument says so
        words = ("approve", "reject", "decide", "decision")
        assert not [n for n in tools if any(w in n for w in words) and n != "pending_approvals"], list(tools)
        deciding = {"approve", "approved", "approver", "reject", "rejected", "decide", "decision", "as_user", "comment"}
        for t in tools.values():  # approvers (who may decide) only ever narrows the worker's policy
            assert not deciding & set(t.input_schema["properties"]), t.name

        found = payload(await client.call_tool("search_logbook", {"query": "RF cavity trip", "limit": 5}))
        assert found["mode_used"] == "keyword" and found["hits"], found
        assert all(h["entry_id"] and h["title"] for h in found["hits"])

        channels = payload(await client.call_tool("find_channels", {"query": "cavity 1 forward power", "limit": 5}))
        assert "SR:RF:CAVITY:01:POWER:FWD" in [h["name"] for h in channels["hits"]], channels
        archived = payload(
            await client.call_tool(
                "archiver_read",
                {
                    "channels": [ARCHIVED],
                    "start": "2027-01-15T08:00:00Z",
                    "end": "2027-01-15T09:00:00Z",
                    "binning": "raw",
                },
            )
        )
        (series,) = archived["series"]
        assert series["channel"] == ARCHIVED and series["count"] == 30 and series["max"] == 39.0, archived

        readings = payload(await client.call_tool("read_channels", {"channels": [SETPOINT, READ_ONLY]}))
        assert [r["channel"] for r in readings] == [SETPOINT, READ_ONLY]
        assert all(r["error"] is None and isinstance(r["value"], float) for r in readings), readings
        before = readings[0]["value"]
        target = 1.45 if abs(before - 1.45) > 0.1 else 1.65

        args = {"channel": SETPOINT, "value": target, "reason": "MCP test", "approvers": [APPROVER]}
        started = payload(await client.call_tool("propose_write", args | {"request_key": "call-1"}))
        wid = started["workflow_id"]
        assert started["run_id"] == wid and started["status"] == "started" and wid in started["ui_url"]
        assert started["progress"]["workflow_id"] == wid and started["progress"]["seq"] == 1
        # the same call sent again (same request key): no second run, the first answer
        again = payload(await client.call_tool("propose_write", args | {"request_key": "call-1"}))
        assert again["workflow_id"] == wid and again["progress"] == started["progress"]
        assert started["check"]["allowed"] and started["check"]["current_value"] == pytest.approx(before, abs=0.05)

        deadline = time.monotonic() + 60
        while True:  # the run checks limits, then waits for the approver
            waiting = payload(await client.call_tool("pending_approvals", {}))
            if waiting:
                break
            assert time.monotonic() < deadline, "the write never waited for approval"
            await asyncio.sleep(0.3)
        assert [w["workflow_id"] for w in waiting] == [wid]
        assert (
            waiting[0]["pending"]["write"]["channel"] == SETPOINT and waiting[0]["pending"]["write"]["value"] == target
        )
        only = payload(await client.call_tool("pending_approvals", {"workflow_id": wid}))
        assert [w["workflow_id"] for w in only] == [wid]
        status = payload(await client.call_tool("run_status", {"workflow_id": wid}))
        assert status["state"] == "awaiting_approval" and status["user"] == MCP_USER
        not_yet = payload(await client.call_tool("run_result", {"workflow_id": wid}))
        assert not_yet["finished"] is False and not_yet["status"]["state"] == "awaiting_approval"

        approved = await tern_cli(env, "approve", wid, "--as", APPROVER, "--json")
        assert approved.returncode == 0, approved.stderr
        res = await finished(client, wid)
        assert res["status"] == "completed", res
        (write,) = res["writes"]
        assert write["channel"] == SETPOINT and write["value"] == target and write["verified"] is True
        assert write["readback"] == pytest.approx(target, rel=0.01)
        assert [a["approver"] for a in res["approvals"]] == [APPROVER]

        audit = await resource_json(client, f"tern://runs/{wid}/audit")
        kinds = [row["event_kind"] for row in audit]
        assert "decision" in kinds and "write" in kinds, kinds
        assert any(row["actor"] == APPROVER for row in audit)
        artifacts = await resource_json(client, f"tern://runs/{wid}/artifacts")
        assert artifacts == []  # a write makes no figure or series


async def test_refused_input_starts_nothing(temporal_env, settings, tmp_path) -> None:
    env = mcp_env(temporal_env, settings, tmp_path)
    async with running_worker(temporal_env.client, settings), stdio_client(env) as client:
        read_only = error_text(
            await client.call_tool("propose_write", {"channel": READ_ONLY, "value": 1.0, "reason": "test"})
        )
        assert "read_only_channel" in read_only and READ_ONLY in read_only and "before any approval" in read_only
        too_high = error_text(
            await client.call_tool("propose_write", {"channel": SETPOINT, "value": 99.0, "reason": "test"})
        )
        assert "above_max" in too_high, too_high
        unknown = error_text(
            await client.call_tool("propose_write", {"channel": "NO:SUCH:CHANNEL:SP", "value": 1.0, "reason": "t"})
        )
        assert "unknown channel" in unknown and "NO:SUCH:CHANNEL:SP" in unknown, unknown
        extra = error_text(
            await client.call_tool(
                "propose_write", {"channel": SETPOINT, "value": 1.5, "reason": "t", "approved": True, "as_user": "x"}
            )
        )
        assert "approved" in extra and "as_user" in extra and "Extra inputs are not permitted" in extra, extra
        not_a_number = error_text(
            await client.call_tool("propose_write", {"channel": SETPOINT, "value": "1.5", "reason": "t"})
        )
        assert "value" in not_a_number, not_a_number
        no_llm = error_text(await client.call_tool("ask", {"question": "What is RF cavity 1 doing?"}))
        assert "TERN_LLM__PROVIDER" in no_llm, no_llm
        no_archiver = error_text(
            await client.call_tool("archiver_read", {"channels": [READ_ONLY], "range": "last 1 h"})
        )
        assert "no archiver answers" in no_archiver and "TERN_ARCHIVER__URL" in no_archiver, no_archiver
        no_run = error_text(await client.call_tool("run_status", {"workflow_id": "tern-run-nonexistent"}))
        assert "no run with id 'tern-run-nonexistent'" in no_run, no_run

        # resources: an artifact's list entry and content; a run without audit events is an MCP error
        pool = await create_pool(settings.dsn)
        try:
            ref = await store_artifact(
                pool,
                b"\x89PNG fake",
                workflow_id="tern-run-art.2-python",
                step_id="plot",
                name="fig",
                media_type="image/png",
            )
        finally:
            await pool.close()
        (listed,) = await resource_json(client, "tern://runs/tern-run-art/artifacts")
        assert (
            listed["id"] == ref and listed["media_type"] == "image/png" and listed["size_bytes"] == len(b"\x89PNG fake")
        )
        (blob,) = (await client.read_resource(listed["uri"])).contents
        assert isinstance(blob, BlobResourceContents) and base64.b64decode(blob.blob) == b"\x89PNG fake"
        with pytest.raises(MCPError, match="has no artifact"):
            await client.read_resource(f"tern://runs/tern-run-other/artifacts/{ref}")
        with pytest.raises(MCPError, match="no audit events for run 'tern-run-nonexistent'"):
            await client.read_resource("tern://runs/tern-run-nonexistent/audit")

        # the open policy of this worker: only the run's approvers, or else the requester, who may not approve
        nobody = error_text(await client.call_tool("propose_write", {"channel": SETPOINT, "value": 1.5, "reason": "t"}))
        assert "two-person rule" in nobody and MCP_USER in nobody, nobody
        # a write inside the limits with an approver does start one run; visibility then lists it and no other
        args = {"channel": SETPOINT, "value": 1.5, "reason": "t", "approvers": [APPROVER]}
        ok = payload(await client.call_tool("propose_write", args))
        query = f'TaskQueue = "{settings.temporal.task_queue}"'
        deadline = time.monotonic() + 30
        while True:
            ids = [wf.id async for wf in temporal_env.client.list_workflows(query)]
            if ids or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.3)
        assert ids == [ok["workflow_id"]], ids
        await temporal_env.client.get_workflow_handle(ok["workflow_id"]).cancel()


async def test_http_ask_run_plan_and_50_concurrent_calls_on_one_session(temporal_env, settings, tmp_path) -> None:
    await ingest_demo(settings.dsn)
    env = mcp_env(temporal_env, settings, tmp_path)
    steps: list[dict[str, Any]] = [
        {"id": "search", "kind": "logbook_search", "query": "RF cavity trip", "mode": "keyword"},
        {"id": "read", "kind": "channel_read", "channels": [SETPOINT]},
        {"id": "answer", "kind": "respond"},
    ]
    plan = {"steps": steps}
    async with scripted_llm() as llm:
        llm.script["planner"] = [plan_json(*steps)]
        llm.default["answer"] = "Cavity 1 is at its setpoint."
        llm_env = {"TERN_LLM__PROVIDER": "openai", "TERN_LLM__URL": f"{llm.base}/v1", "TERN_LLM__MODEL": "scripted"}
        worker_settings = settings.model_copy(
            update={
                "llm": settings.llm.model_copy(
                    update={"provider": "openai", "model": "scripted", "url": f"{llm.base}/v1"}
                )
            }
        )
        async with (
            running_worker(temporal_env.client, worker_settings),
            http_server(env | llm_env, tmp_path / "mcp-http.log", token=TOKEN) as url,
        ):
            # Without the bearer token, or with another, the SDK's middleware answers 401 before any tool runs.
            hello = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
            headers = {"Accept": "application/json, text/event-stream"}
            async with httpx.AsyncClient() as http:
                for auth in ({}, {"Authorization": "Bearer not-the-token-at-all"}, {"Authorization": TOKEN}):
                    refused = await http.post(url, json=hello, headers=headers | auth, timeout=10)
                    assert refused.status_code == 401, (auth, refused.status_code, refused.text)
                    assert refused.headers["www-authenticate"].startswith("Bearer"), refused.headers
            bearer = httpx2.AsyncClient(
                headers={"Authorization": f"Bearer {TOKEN}"}, timeout=httpx2.Timeout(30, read=120)
            )
            async with bearer, Client(streamable_http_client(url, http_client=bearer)) as client:
                await over_http(temporal_env, client, plan)


async def over_http(temporal_env: Any, client: Client, plan: dict[str, Any]) -> None:
    """The HTTP half of the test above: ask, run_plan, then 50 concurrent calls on this one session."""
    assert {t.name for t in (await client.list_tools()).tools} == EXPECTED_TOOLS
    asked = payload(await client.call_tool("ask", {"question": "What is RF cavity 1 doing?"}))
    answered = await finished(client, asked["workflow_id"])
    assert answered["status"] == "completed" and answered["answer"] == "Cavity 1 is at its setpoint.", answered
    assert [s["step_id"] for s in answered["steps"]] == ["search", "read", "answer"]
    assert answered["query"] == "What is RF cavity 1 doing?" and answered["user"] == MCP_USER
    bad_plan = error_text(
        await client.call_tool("run_plan", {"query": "q", "plan": {"steps": [{"kind": "no_such_step"}]}})
    )
    assert "no_such_step" in bad_plan, bad_plan
    started = payload(await client.call_tool("run_plan", {"query": "What did RF cavity 1 do?", "plan": plan}))
    wid = started["workflow_id"]
    res = await finished(client, wid)
    assert res["status"] == "completed", res
    assert [s["step_id"] for s in res["steps"]] == ["search", "read", "answer"]

    # 50 concurrent calls on this one session: a run waiting for approval (answered from the worker's cache)
    # and logbook searches
    args = {"channel": SETPOINT, "value": 1.5, "reason": "t", "approvers": [APPROVER]}
    wid = payload(await client.call_tool("propose_write", args))["workflow_id"]
    deadline = time.monotonic() + 60
    while (st := payload(await client.call_tool("run_status", {"workflow_id": wid})))["state"] != "awaiting_approval":
        assert time.monotonic() < deadline, st
        await asyncio.sleep(0.3)
    calls = [client.call_tool("run_status", {"workflow_id": wid}) for _ in range(25)] + [
        client.call_tool("search_logbook", {"query": "RF cavity trip", "limit": 3}) for _ in range(25)
    ]
    t0 = time.monotonic()

    async def timed(call: Any) -> tuple[Any, float]:
        res = await call
        return res, time.monotonic() - t0

    done = await asyncio.gather(*(timed(c) for c in calls))
    took = time.monotonic() - t0
    results = [r for r, _ in done]
    slowest = max(t for _, t in done[:25]), max(t for _, t in done[25:])
    statuses = [payload(r) for r in results[:25]]
    searches = [payload(r) for r in results[25:]]
    assert all(st["workflow_id"] == wid and st["state"] == "awaiting_approval" for st in statuses)
    assert all(s["hits"] for s in searches)
    print(
        f"50 concurrent MCP tool calls on one HTTP session answered in {took:.2f} s "
        f"(last run_status after {slowest[0]:.2f} s, last search_logbook after {slowest[1]:.2f} s)"
    )
    await temporal_env.client.get_workflow_handle(wid).cancel()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--host", "0.0.0.0"], "--host needs --http PORT"),
        (["--user", "  "], "--user: "),
        (["--http", "0"], "greater than or equal to 1"),
        (["--http", "8123"], "--http needs a bearer token for its clients: set TERN_MCP__TOKEN"),
        (["--no-auth"], "--no-auth needs --http PORT"),
        (["--http", "8123", "--no-auth", "--host", "0.0.0.0"], "--no-auth is allowed on a loopback address only"),
    ],
)
def test_bad_options_exit_2_before_serving(args: list[str], expected: str, tmp_path: Path) -> None:
    from tests.conftest import env_without_services

    res = subprocess.run(
        [sys.executable, "-m", "starters.cli", "mcp", *args],
        env=env_without_services(tmp_path),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert res.returncode == 2 and expected in res.stderr and "Traceback" not in res.stderr, res.stderr


def test_a_short_token_is_refused_naming_the_setting(tmp_path: Path) -> None:
    from tests.conftest import env_without_services

    res = subprocess.run(
        [sys.executable, "-m", "starters.cli", "mcp", "--http", "8123"],
        env=env_without_services(tmp_path) | {"TERN_MCP__TOKEN": "short"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert res.returncode == 2 and "at least 16 characters" in res.stderr, res.stderr
    assert "mcp" in res.stderr.lower() and "short" not in res.stderr.replace("TERN_MCP__TOKEN", ""), res.stderr


async def test_no_auth_on_loopback_serves_without_a_token(tmp_path: Path) -> None:
    """``--no-auth`` (loopback only) lists the tools to a client that sends no token; the services may be down."""
    from tests.conftest import env_without_services

    async with (
        http_server(env_without_services(tmp_path), tmp_path / "mcp-noauth.log") as url,
        Client(url) as client,
    ):
        assert {t.name for t in (await client.list_tools()).tools} == EXPECTED_TOOLS
        # DNS rebinding (issue 22): a page at another origin, its name re-pointed to 127.0.0.1, sends its own Host
        # (and Origin): refused before any MCP message is read; the loopback names pass the check.
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18",
                "capabilities": {}, "clientInfo": {"name": "page", "version": "1"}}}  # fmt: skip
        port = url.split(":")[2].split("/")[0]
        accept = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        async with httpx.AsyncClient(timeout=30) as http:
            rebound = await http.post(url, json=init, headers=accept | {"Host": f"attacker.example:{port}"})
            assert rebound.status_code == 421, rebound.text
            foreign = await http.post(url, json=init, headers=accept | {"Origin": "http://attacker.example"})
            assert foreign.status_code == 403, foreign.text
            for host in (f"localhost:{port}", f"127.0.0.1:{port}"):
                local = await http.post(url, json=init, headers=accept | {"Host": host, "Origin": f"http://{host}"})
                assert local.status_code == 200, (host, local.status_code, local.text)
    assert "no authentication" in _log(tmp_path / "mcp-noauth.log")


def test_no_auth_transport_security_is_loopback_only() -> None:
    """The Host/Origin allow-list is set explicitly for a loopback bind (not left to the SDK's default), and
    serving without authentication elsewhere is refused."""
    from starters.mcp_server import transport_security

    ts = transport_security("127.0.0.1", no_auth=True)
    assert ts is not None and ts.enable_dns_rebinding_protection
    assert ts.allowed_hosts == ["127.0.0.1:*", "localhost:*", "[::1]:*"]
    assert transport_security("0.0.0.0", no_auth=False) is None  # bearer token required there
    with pytest.raises(ValueError, match="loopback address only"):
        transport_security("0.0.0.0", no_auth=True)
