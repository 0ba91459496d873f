"""Logbook write-back end to end: agent runs with ``logbook_publish`` steps on the real Temporal dev server, a real
worker, PostgreSQL and the simulated IOC. Approve -> the entry (run id, attachment, vector) is found by
``tern ariel search``; reject -> nothing published; a retried publish publishes once; bad input (unknown
attachment, an adapter that cannot publish) fails the step before anyone is asked, nothing published."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.logbook import LogbookActivities
from starters.client import TernClient
from tern.ariel import store
from tern.ariel.providers import configured_embedder
from tern.ariel.publish import embedded_entry_id
from tern.config import TernSettings
from tern.embedded.net import free_port
from tern.models import AgentRunRequest, Decision, Plan
from tern.models.activity_io import LogbookPublishInput
from tern.models.logbook import LogbookPublication
from tern.sandbox.artifacts import store_artifact
from tests.agent_helpers import running_worker
from tests.ariel.test_cli_api import cli
from tests.llm_script import plan_json, scripted_llm
from tests.test_workflows_fast import pending
from workflows.agent_run import AgentRunWorkflow

pytestmark = [pytest.mark.temporal, pytest.mark.postgres, pytest.mark.ca]
CHANNEL = "SR:MAG:QF:01:CURRENT:SP"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))


def plan(*publish: dict[str, Any]) -> Plan:
    return Plan.model_validate(
        {
            "steps": [
                {"id": "read", "kind": "channel_read", "channels": [CHANNEL]},
                *publish,
                {"id": "answer", "kind": "respond"},
            ]
        }
    )


def entry(step_id: str = "elog", **kw: Any) -> dict[str, Any]:
    return {
        "id": step_id,
        "kind": "logbook_publish",
        "title": "Quadrupole QF1 current logged by Tern",
        "text": "QF1 current checked after the orbit drift.",
        "tags": ["magnets"],
        "inputs": ["read"],
        **kw,
    }


async def start(client, settings: TernSettings, p: Plan, workflow_id: str):
    req = AgentRunRequest(user="alice", query="log the QF1 current", plan=p, approvers=["bob"])
    return await client.start_workflow(
        AgentRunWorkflow.run, req, id=workflow_id, task_queue=settings.temporal.task_queue
    )


async def decide(handle, approved: bool, comment: str = "") -> None:
    rid = await pending(handle, within_s=120)
    d = Decision(request_id=rid, approver="bob", approved=approved, comment=comment)
    await handle.execute_update(AgentRunWorkflow.decide, d)


async def test_approved_entry_is_published_once_with_its_attachment_and_found_by_ariel_search(
    temporal_env, settings: TernSettings, tmp_path
) -> None:
    client = temporal_env.client
    wf = f"ask-{uuid.uuid4().hex[:10]}"
    attempts: list[bool] = []

    @activity.defn(name="publish_logbook_entry")
    async def publish_then_lose_the_answer(inp: LogbookPublishInput) -> LogbookPublication:
        """The real activity; its first attempt publishes and then fails as if the worker died before answering."""
        published = await real.publish_logbook_entry(inp)
        attempts.append(published.duplicate)
        if len(attempts) == 1:
            raise ApplicationError("worker lost before it could answer")
        return published

    async with running_worker(client, settings, {"publish_logbook_entry": publish_then_lose_the_answer}) as pool:
        real = LogbookActivities(settings, pool)
        art = await store_artifact(pool, PNG, workflow_id=wf, step_id="plot", name="qf1.png", media_type="image/png")
        handle = await start(client, settings, plan(entry(attachments=[art])), wf)
        rid = await pending(handle, within_s=120)
        st = await handle.query(AgentRunWorkflow.status)
        assert st.pending is not None and st.pending.kind == "logbook"
        draft = st.pending.entry
        assert draft is not None and draft.target == "embedded" and [a.artifact_id for a in draft.attachments] == [art]
        assert draft.text.startswith("QF1 current checked after the orbit drift.\n\nstep read (channel_read")
        assert f"Tern run {wf}, step elog." in draft.text
        async with pool.acquire() as conn:
            assert await store.get_entry(conn, draft.entry_id) is None  # nothing before the approval
        await handle.execute_update(AgentRunWorkflow.decide, Decision(request_id=rid, approver="bob", approved=True))
        result = await handle.result()
        assert result.status == "completed", result.error
        assert attempts == [False, True]  # the retry found the publication and sent nothing again
        step = result.steps[1]
        assert step.logbook is not None and step.logbook.entry_id == embedded_entry_id(wf, "elog")
        assert step.message == f"published to the embedded logbook as {step.logbook.entry_id}, 1 attachments"
        async with pool.acquire() as conn:
            stored = await store.get_entry(conn, step.logbook.entry_id)
            assert stored is not None
            rows = await conn.fetchval("SELECT count(*) FROM logbook_publications WHERE workflow_id = $1", wf)
            copies = await conn.fetchval("SELECT count(*) FROM ariel_entries WHERE metadata->>'workflow_id' = $1", wf)
            emb = await configured_embedder(settings)
            table = await store.embedding_table(conn, emb.model) if emb else None
            vectors = await conn.fetchval(f"SELECT count(*) FROM {table} WHERE entry_id = $1", stored.entry_id)
        assert rows == 1 and copies == 1 and vectors == 1
        assert stored.metadata["workflow_id"] == wf and stored.author == "alice"
        assert [(a.url, a.filename) for a in stored.attachments] == [(f"artifact:{art}", "qf1.png")]
        audit = await pool.fetch(
            "SELECT event_kind, details->>'kind' AS kind FROM audit_events WHERE run_id = $1 ORDER BY id", wf
        )
        assert [(r["event_kind"], r["kind"]) for r in audit] == [
            ("approval_requested", "logbook"),
            ("decision", "logbook"),
        ]

    env = {
        "TERN_DATABASE__URL": settings.dsn,
        "TERN_DATA_DIR": str(tmp_path),
        "TERN_ARIEL__API_PORT": str(free_port()),
    }
    code, out, err = await cli("search", "quadrupole QF1 current", "--mode", "keyword", "--json", env=env)
    assert code == 0, err
    hits = json.loads(out)["hits"]
    assert hits[0]["entry_id"] == step.logbook.entry_id and hits[0]["title"] == "Quadrupole QF1 current logged by Tern"
    code, out, err = await cli("search", wf, "--mode", "keyword", "--json", env=env)  # by the run's workflow id
    assert code == 0, err
    assert [h["entry_id"] for h in json.loads(out)["hits"]] == [step.logbook.entry_id]


async def test_rejected_entry_and_bad_attachment_publish_nothing_and_the_run_says_so(
    temporal_env, settings: TernSettings
) -> None:
    client = temporal_env.client
    wf = f"ask-{uuid.uuid4().hex[:10]}"
    missing = "art_" + "f" * 32
    async with running_worker(client, settings) as pool:
        handle = await start(client, settings, plan(entry("bad", attachments=[missing]), entry()), wf)
        await decide(handle, approved=False, comment="not for the shift log")
        result = await handle.result()
        rows = await pool.fetchval("SELECT count(*) FROM logbook_publications WHERE workflow_id = $1", wf)
        copies = await pool.fetchval("SELECT count(*) FROM ariel_entries WHERE metadata->>'workflow_id' = $1", wf)
    assert rows == 0 and copies == 0
    bad, rejected = result.steps[1], result.steps[2]
    assert bad.status == "failed" and f"unknown attachment artifact {missing!r}" in bad.message
    assert rejected.status == "rejected"
    assert rejected.message == "logbook entry not published: rejected by bob: not for the shift log"
    assert [a.step_id for a in result.approvals] == ["elog"]  # the bad draft never reached an approver
    assert result.status == "failed" and result.error is not None and result.error.startswith("step bad: ")


async def test_an_adapter_that_cannot_publish_fails_the_step_before_anyone_is_asked(
    temporal_env, settings: TernSettings
) -> None:
    client = temporal_env.client
    wf = f"ask-{uuid.uuid4().hex[:10]}"
    ornl = settings.model_copy(
        update={"logbook": settings.logbook.model_copy(update={"publish_target": "ornl", "publish_url": "http://x/"})}
    )
    async with running_worker(client, ornl) as pool:
        result = await (await start(client, ornl, plan(entry()), wf)).result()
        rows = await pool.fetchval("SELECT count(*) FROM logbook_publications WHERE workflow_id = $1", wf)
    step = result.steps[1]
    assert step.status == "failed" and "publishing not supported by adapter 'ornl'" in step.message
    assert result.approvals == [] and rows == 0 and result.status == "failed"


async def test_tern_ask_plans_a_logbook_entry_that_waits_for_its_approval(temporal_env, settings: TernSettings) -> None:
    """A question that asks for a logbook entry: the scripted planner proposes a logbook_publish step, the plan
    validates, the draft waits for its approval, and the approved entry is published."""
    read = {"id": "read", "kind": "channel_read", "channels": [CHANNEL]}
    elog = {"id": "elog", "kind": "logbook_publish", "title": "QF1 current for the shift log", "inputs": ["read"]}
    async with scripted_llm() as llm:
        llm.script["planner"] = [plan_json(read, elog, {"id": "answer", "kind": "respond"})]
        llm.default["answer"] = "Logged."
        s = settings.model_copy(
            update={
                "llm": settings.llm.model_copy(update={"provider": "openai", "model": "m", "url": f"{llm.base}/v1"})
            }
        )
        async with running_worker(temporal_env.client, s) as pool:
            client = TernClient(temporal_env.client, s)
            handle = await client.ask("Read QF1 and put it in the logbook", user="alice", approvers=["bob"])
            await decide(handle, approved=True)
            result = await handle.result()
            entry_id = embedded_entry_id(handle.id, "elog")
            found = await pool.fetchval("SELECT title FROM ariel_entries WHERE entry_id = $1", entry_id)
    assert result.status == "completed", result.error
    assert [s.kind for s in result.steps] == ["channel_read", "logbook_publish", "respond"]
    assert [a.kind for a in result.approvals] == ["logbook"] and found == "QF1 current for the shift log"
