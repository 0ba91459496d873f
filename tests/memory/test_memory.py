"""Operator memory on real PostgreSQL (store, CLI) and the real Temporal dev server (memory steps through the
approval gate, the composer's context): CRUD, keyword and embedding search, per-user isolation, audited real
deletion, approval mode."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest

from tern.ariel.embeddings import HashingTestEmbedder
from tern.db import create_pool
from tern.memory.store import add_memory, delete_memory, list_memories, search_memories
from tern.models import AgentRunRequest, Decision, Plan
from tests.agent_helpers import running_worker
from tests.conftest import env_without_services
from workflows.agent_run import AgentRunWorkflow

pytestmark = pytest.mark.postgres
EMB = HashingTestEmbedder(dim=64, model="test-hashing-64")


async def test_crud_search_isolation_and_real_deletion(pg_dsn: str) -> None:
    pool = await create_pool(pg_dsn)
    try:
        a1 = await add_memory(pool, "alice", "cavity 1 runs warm since the manifold repair", embedder=EMB)
        a2 = await add_memory(pool, "alice", "prefer the golden orbit file from Tuesday", embedder=EMB)
        b1 = await add_memory(pool, "bob", "cavity 1 tuner is sticky", embedder=EMB)
        assert [m.id for m in await list_memories(pool, "alice")] == [a2.id, a1.id]
        assert [m.id for m in await list_memories(pool, "bob")] == [b1.id]
        hits = await search_memories(pool, "alice", "cavity warm", embedder=EMB)
        assert hits[0].id == a1.id and b1.id not in [h.id for h in hits]  # never another user's note
        assert [h.id for h in await search_memories(pool, "alice", "golden orbit")] == [a2.id]  # keyword only
        assert [h.id for h in await search_memories(pool, "alice", "manifold")] == [a1.id]
        assert [h.id for h in await search_memories(pool, "alice", "warm sinc")][:1] == [a1.id]  # substring fallback
        again = await add_memory(pool, "alice", "once", idem_key="run-1/remember")
        assert (await add_memory(pool, "alice", "once", idem_key="run-1/remember")).id == again.id
        assert not await delete_memory(pool, "bob", a1.id)  # bob cannot delete alice's note
        assert await delete_memory(pool, "alice", a1.id)
        assert not await delete_memory(pool, "alice", a1.id)
        conn = await asyncpg.connect(pg_dsn)
        try:
            assert await conn.fetchval("SELECT count(*) FROM memories WHERE id = $1", a1.id) == 0
            rows = await conn.fetch(
                "SELECT event_kind, actor, comment, details::text AS details FROM audit_events"
                " WHERE event_kind LIKE 'memory_%' ORDER BY id"
            )
        finally:
            await conn.close()
        assert [r["event_kind"] for r in rows].count("memory_added") == 4
        deleted = [r for r in rows if r["event_kind"] == "memory_deleted"]
        assert len(deleted) == 1 and deleted[0]["actor"] == "alice" and f'"memory_id": {a1.id}' in deleted[0]["details"]
        assert not any("manifold" in (r["comment"] + r["details"]) for r in rows)  # the text is gone for good
    finally:
        await pool.close()


def tern(tmp_path: Path, dsn: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = env_without_services(tmp_path, TERN_DATABASE__URL=dsn, **env)
    cmd = [sys.executable, "-m", "starters.cli", "memory", *args]
    return subprocess.run(cmd, env=full, capture_output=True, text=True, timeout=120)


async def test_cli(pg_dsn: str, tmp_path: Path) -> None:
    """A person's own ``tern memory add`` stores at once, even with the memory approval mode 'always' (the
    default, which governs notes agent runs propose)."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return tern(tmp_path, pg_dsn, *args, TERN_MEMORY__APPROVAL_MODE="always")

    added = await asyncio.to_thread(run, "add", "beam current drops at 03:00 every night", "--user", "carol", "--json")
    assert added.returncode == 0, added.stderr
    note = json.loads(added.stdout)
    listed = await asyncio.to_thread(run, "list", "--user", "carol", "--json")
    assert [n["id"] for n in json.loads(listed.stdout)] == [note["id"]]
    assert json.loads((await asyncio.to_thread(run, "list", "--user", "dave", "--json")).stdout) == []
    found = await asyncio.to_thread(run, "search", "beam current", "--user", "carol", "--json")
    assert [n["id"] for n in json.loads(found.stdout)] == [note["id"]]
    other = await asyncio.to_thread(run, "delete", str(note["id"]), "--user", "dave")
    assert other.returncode == 2 and f"no note {note['id']} of user dave" in other.stderr
    assert (await asyncio.to_thread(run, "delete", str(note["id"]), "--user", "carol")).returncode == 0
    assert json.loads((await asyncio.to_thread(run, "list", "--user", "carol", "--json")).stdout) == []
    empty = await asyncio.to_thread(run, "add", "   ", "--user", "carol")
    assert empty.returncode == 2 and "1 to 4000 characters" in empty.stderr


@pytest.mark.temporal
async def test_memory_steps_approval_mode_and_composer_context(temporal_env, settings) -> None:
    client = temporal_env.client
    remember = Plan.model_validate(
        {
            "steps": [
                {"id": "note", "kind": "memory", "text": "cavity 1 runs warm since the manifold repair"},
                {"id": "recall", "kind": "memory", "action": "recall", "query": "cavity warm"},
                {"id": "answer", "kind": "respond"},
            ]
        }
    )

    async def start(s, user: str, plan: Plan, query: str = "why is cavity 1 warm?"):
        req = AgentRunRequest(user=user, query=query, plan=plan, approvers=["alice", "bob"])
        return await client.start_workflow(
            AgentRunWorkflow.run, req, id=f"run-{uuid.uuid4().hex[:10]}", task_queue=s.temporal.task_queue
        )

    # Issue 22: a note an agent run proposes waits for approval by default (the default was 'none', so an
    # injected logbook entry could plant a note that steers later plans).
    s_always = settings
    assert s_always.memory.approval_mode == "always"
    async with running_worker(client, s_always):
        handle = await start(s_always, "alice", remember)
        st = None
        for _ in range(300):
            st = await handle.query(AgentRunWorkflow.status)
            if st.pending is not None:
                break
            await asyncio.sleep(0.1)
        assert st is not None and st.pending is not None and st.pending.kind == "memory"
        assert "remember for alice: cavity 1 runs warm" in st.pending.summary
        await handle.execute_update(
            AgentRunWorkflow.decide, Decision(request_id=st.pending.request_id, approver="bob", approved=True)
        )
        result = await handle.result()
        assert result.status == "completed", result.error
        note, recall, _ = result.steps
        assert note.memories and note.memories[0].user == "alice"
        assert recall.memories and recall.memories[0].id == note.memories[0].id
        assert "Your notes (alice):\n- cavity 1 runs warm since the manifold repair" in result.answer

        rejected = await start(s_always, "alice", Plan.model_validate({"steps": [remember.steps[0].model_dump()]}))
        for _ in range(300):
            st = await rejected.query(AgentRunWorkflow.status)
            if st.pending is not None:
                break
            await asyncio.sleep(0.1)
        assert st.pending is not None
        await rejected.execute_update(
            AgentRunWorkflow.decide, Decision(request_id=st.pending.request_id, approver="bob", approved=False)
        )
        res = await rejected.result()
        assert res.steps[0].status == "rejected" and "note not stored" in res.steps[0].message

    s_none = settings.model_copy(update={"memory": settings.memory.model_copy(update={"approval_mode": "none"})})
    async with running_worker(client, s_none):  # memory_approval_mode 'none' (opt-in): stored without a decision
        bob = await start(s_none, "bob", remember.model_copy(update={"steps": remember.steps[1:]}))
        res = await bob.result()
        assert res.steps[0].memories == [] and "Your notes" not in res.answer  # alice's note stays hers
        quick = await (
            await start(s_none, "bob", Plan.model_validate({"steps": [remember.steps[0].model_dump()]}))
        ).result()
        assert quick.status == "completed" and quick.steps[0].memories and quick.steps[0].memories[0].user == "bob"
    pool = await create_pool(settings.dsn)
    try:
        assert len(await list_memories(pool, "alice")) == 1 and len(await list_memories(pool, "bob")) == 1
    finally:
        await pool.close()


def test_a_memory_request_reads_as_a_note_for_the_requester() -> None:
    from datetime import UTC, datetime, timedelta

    from tern.approval.render import pending_markdown
    from tern.models import ApprovalRequest

    now = datetime(2026, 11, 23, 12, tzinfo=UTC)
    req = ApprovalRequest(
        request_id="req-1",
        kind="memory",
        step_id="note",
        summary="remember for alice: cavity 1 runs warm",
        requested_by="alice",
        approvers=["bob"],
        requested_at=now,
        expires_at=now + timedelta(hours=1),
        reason="cavity 1 runs warm since the manifold repair",
    )
    text = pending_markdown(req, workflow_id="run-1", now=now)
    assert text.startswith("## Waiting for approval: store a note in alice's memory")
    assert "Reason: cavity 1 runs warm since the manifold repair" in text
