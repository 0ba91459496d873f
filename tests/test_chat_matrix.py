"""Approval from Matrix, end to end: a real Synapse homeserver (``matrix-synapse`` wheel), real Matrix clients
(matrix-nio) for the operator and two other people, the bridge (``tern bridge matrix``), a real worker, Temporal
dev server, PostgreSQL and the simulated IOC over Channel Access (issue 9)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from nio import AsyncClient, MemoryDownloadResponse, ReactionEvent, RoomMessageImage, RoomMessageText, RoomSendResponse
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import CancelledError

from starters.matrix_bridge import SYNC_FILTER
from tern.approval.render import exact_number
from tern.control.channel_access import read_value
from tern.embedded import matrix
from tern.embedded.net import free_port
from tern.ring.plot import plotted_data
from tests.agent_helpers import audit_rows, running_worker, start_run, wait_for_state, write_plan
from tests.archiver.helpers import demo_archive
from tests.conftest import unavailable

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.temporal, pytest.mark.postgres, pytest.mark.ca]


@pytest.fixture(scope="module")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[matrix.MatrixCredentials]:
    """A Synapse homeserver on a free loopback port with the bot, operator, visitor and stranger accounts."""
    try:
        import synapse  # noqa: F401
    except ImportError:
        unavailable("matrix-synapse is not installed (dev extra)")
    root = tmp_path_factory.mktemp("matrix")
    port = free_port()
    proc = matrix.start(root, port, root / "homeserver.log")
    try:
        yield matrix.provision(root, port, ("visitor", "stranger"))
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


class Person:
    """A Matrix client in the control room that records what it sees."""

    def __init__(self, creds: matrix.MatrixCredentials, account: matrix.MatrixAccount) -> None:
        self.room_id = creds.room_id
        self.client = AsyncClient(creds.homeserver, account.user_id)
        self.password = account.password
        self.events: list[Any] = []

    async def start(self) -> None:
        await self.client.login(self.password)
        await self.client.sync(timeout=0, full_state=True)
        self.client.add_event_callback(self._seen, (RoomMessageText, ReactionEvent, RoomMessageImage))

    async def _seen(self, room: Any, event: Any) -> None:
        if room.room_id == self.room_id:
            self.events.append(event)

    async def until(self, pred: Callable[[Any], bool], within_s: float = 30) -> Any:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            for e in self.events:
                if pred(e):
                    return e
            await self.client.sync(timeout=500, sync_filter=SYNC_FILTER)
        raise AssertionError(f"not seen within {within_s} s; saw: {[getattr(e, 'body', e) for e in self.events]}")

    async def close(self) -> None:
        await self.client.close()

    async def reply(self, to: str, text: str) -> str:
        resp = await self.client.room_send(
            self.room_id,
            "m.room.message",
            {"msgtype": "m.text", "body": text, "m.relates_to": {"m.in_reply_to": {"event_id": to}}},
        )
        assert isinstance(resp, RoomSendResponse), resp
        return str(resp.event_id)

    async def react(self, to: str, key: str) -> str:
        resp = await self.client.room_send(
            self.room_id, "m.reaction", {"m.relates_to": {"rel_type": "m.annotation", "event_id": to, "key": key}}
        )
        assert isinstance(resp, RoomSendResponse), resp
        return str(resp.event_id)


def _answer_to(event_id: str, bot: str, *words: str) -> Callable[[Any], bool]:
    def pred(e: Any) -> bool:
        rel = e.source.get("content", {}).get("m.relates_to") or {}
        return (
            isinstance(e, RoomMessageText)
            and e.sender == bot
            and (rel.get("m.in_reply_to") or {}).get("event_id") == event_id
            and all(w in e.body for w in words)
        )

    return pred


def _card(bot: str, request_id: str) -> Callable[[Any], bool]:
    def pred(e: Any) -> bool:
        content = e.source.get("content", {})
        return (
            isinstance(e, RoomMessageText)
            and e.sender == bot
            and "m.new_content" not in content
            and "m.in_reply_to" not in (content.get("m.relates_to") or {})
            and "Approval needed" in e.body
            and request_id in e.body
        )

    return pred


def _image_in_thread(bot: str, card_id: str) -> Callable[[Any], bool]:
    def pred(e: Any) -> bool:
        rel = e.source.get("content", {}).get("m.relates_to") or {}
        return (
            isinstance(e, RoomMessageImage)
            and e.sender == bot
            and (rel.get("rel_type"), rel.get("event_id")) == ("m.thread", card_id)
            and e.source["content"].get("info", {}).get("mimetype") == "image/png"
        )

    return pred


def _edit(bot: str, card_id: str, *words: str) -> Callable[[Any], bool]:
    def pred(e: Any) -> bool:
        content = e.source.get("content", {})
        rel = content.get("m.relates_to") or {}
        new = content.get("m.new_content") or {}
        return (
            e.sender == bot
            and rel.get("rel_type") == "m.replace"
            and rel.get("event_id") == card_id
            and all(w in new.get("body", "") for w in words)
        )

    return pred


def _bridge_env(settings: Any, temporal_env: Any, creds_path: Path, idmap: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "TERN_DATA_DIR": str(settings.data_dir),
        "TERN_TEMPORAL__ADDRESS": temporal_env.client.service_client.config.target_host,
        "TERN_DATABASE__URL": settings.dsn,
        "TERN_CHAT__MATRIX_CREDENTIALS_PATH": str(creds_path),
        "TERN_CHAT__IDENTITY_MAP_PATH": str(idmap),
        "TERN_CHAT__POLL_INTERVAL_S": "0.3",
        "TERN_TEMPORAL__TASK_QUEUE": settings.temporal.task_queue,
    }


def _spawn_bridge(env: dict[str, str], owner: str, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "starters.cli", "bridge", "matrix", "--owner", owner],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )


def _ready(proc: subprocess.Popen[bytes], log: Path, within_s: float = 60) -> None:
    """Wait until the bridge listens (its first sync is done: messages sent before it are not replayed)."""
    deadline = time.monotonic() + within_s
    while "listening in" not in (log.read_text() if log.exists() else ""):
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "bridge did not start listening"
        time.sleep(0.1)


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def chat_files(synapse: matrix.MatrixCredentials, tmp_path: Path) -> tuple[Path, Path]:
    creds = tmp_path / "credentials.json"
    creds.write_text(synapse.model_dump_json())
    idmap = tmp_path / "identities.toml"
    idmap.write_text('[matrix]\n"@visitor:localhost" = "visitor"\n')  # mapped, but not an approver
    return creds, idmap


async def test_operator_approves_a_write_from_matrix(temporal_env, settings, synapse, chat_files, tmp_path) -> None:
    """The run waits, the card arrives in the room; an unmapped person's reply, a mapped non-approver's reply and
    the operator's reaction to a write are refused with a reply and audited with the platform identity; the
    operator's reply approves; the card is edited with the verified readback; the run completes."""
    creds_path, idmap = chat_files
    worker_settings = settings.model_copy(
        update={"approval": settings.approval.model_copy(update={"approvers": ["operator"]})}
    )
    channel = "SR:MAG:QF:05:CURRENT:SP"
    target = read_value(channel) + 0.5
    operator, visitor, stranger = (
        Person(synapse, a) for a in (synapse.operator, synapse.others["visitor"], synapse.others["stranger"])
    )
    for p in (operator, visitor, stranger):
        await p.start()
    bot = synapse.bot.user_id
    bridge = _spawn_bridge(_bridge_env(settings, temporal_env, creds_path, idmap), "b1", tmp_path / "bridge.log")
    _ready(bridge, tmp_path / "bridge.log")
    try:
        async with running_worker(temporal_env.client, worker_settings):
            handle = await start_run(
                temporal_env.client, settings, write_plan(channel, target), user="physicist", approvers=["operator"]
            )
            st = await wait_for_state(handle, "awaiting_approval")
            assert st.pending is not None
            rid = st.pending.request_id
            card = await operator.until(_card(bot, rid), 60)
            assert channel in card.body and "Reply to this message" in card.body and "physicist" in card.body
            # issue 23: a quadrupole write's card has the PNG of its predicted orbit change in its thread, the
            # plotted numbers being the request's prediction
            image = await operator.until(_image_in_thread(bot, card.event_id), 60)
            effect = st.pending.write.predicted_effect  # type: ignore[union-attr]
            assert effect is not None and effect.orbit_change_mm is not None
            got = await operator.client.download(mxc=image.url)
            assert isinstance(got, MemoryDownloadResponse), got
            data = plotted_data(got.body)  # raises unless a valid PNG with the plotted values
            assert list(zip(data["x_mm"], data["y_mm"], strict=True)) == effect.orbit_change_mm

            e = await stranger.reply(card.event_id, "approve")
            await stranger.until(_answer_to(e, bot, "not mapped"))
            e = await visitor.reply(card.event_id, "approve looks fine")
            await visitor.until(_answer_to(e, bot, "not an approver"))
            e = await operator.react(card.event_id, "\u2705")
            await operator.until(_answer_to(e, bot, "needs a reply"))
            e = await operator.reply(card.event_id, "reject")  # no reason: malformed, nothing sent
            await operator.until(_answer_to(e, bot, "needs a reason"))
            # issue 22: a conditional or merely agreeing reply is not an approval (answered, audited, not sent)
            e = await operator.reply(card.event_id, "yes, but only after the beam dump")
            await operator.until(_answer_to(e, bot, "is not an approval"))
            e = await operator.reply(card.event_id, "approve, but only after the beam dump")
            await operator.until(_answer_to(e, bot, "not an unconditional approval"))
            assert (await wait_for_state(handle, "awaiting_approval")).pending.request_id == rid  # type: ignore[union-attr]

            e = await operator.reply(card.event_id, "approve go ahead")
            await operator.until(_answer_to(e, bot, "approved", "operator"))
            result = await handle.result()
            edit = await operator.until(_edit(bot, card.event_id, "Approved", "Written and verified"), 30)
            assert f"readback {exact_number(target)}" in edit.source["content"]["m.new_content"]["body"]
    finally:
        _stop(bridge)
        for p in (operator, visitor, stranger):
            await p.close()
    assert result.status == "completed", result
    assert read_value(channel) == pytest.approx(target)
    rows = await audit_rows(settings.dsn, handle.id)
    chat = [r for r in rows if r["event_kind"] == "chat_decision"]
    identities = [json.loads(r["details"])["platform_identity"] for r in chat]
    assert identities == [
        "@stranger:localhost",
        "@visitor:localhost",
        "@operator:localhost",
        "@operator:localhost",
        "@operator:localhost",
        "@operator:localhost",
        "@operator:localhost",
    ], identities
    assert [json.loads(r["details"])["accepted"] for r in chat] == [False, False, False, False, False, False, True]
    refused = [r for r in rows if r["event_kind"] == "decision_refused"]
    assert [r["actor"] for r in refused] == ["visitor"]  # only the mapped person's attempt reached the workflow
    decision = next(r for r in rows if r["event_kind"] == "decision")
    assert decision["actor"] == "operator" and json.loads(decision["details"])["surface"] == "matrix"


async def test_two_bridges_post_one_card_and_a_restarted_bridge_takes_the_decision(
    temporal_env, settings, synapse, chat_files, tmp_path
) -> None:
    """Two bridge instances run: one card per request. Both are killed (SIGKILL) before the decision; a run whose
    outbox row is missing (as for a run started before notify_approvers) gets its card from the new bridge's
    reconciliation; the new bridge takes the operator's reply to the old card; no card is posted twice."""
    creds_path, idmap = chat_files
    worker_settings = settings.model_copy(
        update={"approval": settings.approval.model_copy(update={"approvers": ["operator"]})}
    )
    env = _bridge_env(settings, temporal_env, creds_path, idmap)
    operator = Person(synapse, synapse.operator)
    await operator.start()
    bot = synapse.bot.user_id
    channel, other = "SR:MAG:QF:06:CURRENT:SP", "SR:MAG:QF:07:CURRENT:SP"
    target = read_value(channel) + 0.25
    b1 = _spawn_bridge(env, "b1", tmp_path / "b1.log")
    b2 = _spawn_bridge(env, "b2", tmp_path / "b2.log")
    try:
        async with running_worker(temporal_env.client, worker_settings):
            handle = await start_run(
                temporal_env.client, settings, write_plan(channel, target), user="physicist", approvers=["operator"]
            )
            rid = (await wait_for_state(handle, "awaiting_approval")).pending.request_id  # type: ignore[union-attr]
            card = await operator.until(_card(bot, rid), 60)
            # A later request's card shows that the bridges have passed over the outbox again since the first card
            # (its NOTIFY wakes both); a duplicate of the first would have been posted by then (no fixed sleep).
            sentinel = "SR:MAG:QF:08:CURRENT:SP"
            h0 = await start_run(
                temporal_env.client,
                settings,
                write_plan(sentinel, read_value(sentinel)),
                user="physicist",
                approvers=["operator"],
            )
            rid0 = (await wait_for_state(h0, "awaiting_approval")).pending.request_id  # type: ignore[union-attr]
            await operator.until(_card(bot, rid0), 60)
            await h0.terminate("sentinel seen")
            for b in (b1, b2):
                _stop(b, signal.SIGKILL)
            # A second run waits with no bridge up, and its outbox row is gone: only reconciliation finds it.
            h2 = await start_run(
                temporal_env.client,
                settings,
                write_plan(other, read_value(other)),
                user="physicist",
                approvers=["operator"],
            )
            rid2 = (await wait_for_state(h2, "awaiting_approval")).pending.request_id  # type: ignore[union-attr]
            conn = await asyncpg.connect(settings.dsn)
            try:
                for _ in range(50):
                    if await conn.fetchval("DELETE FROM chat_requests WHERE request_id = $1 RETURNING 1", rid2):
                        break
                    await asyncio.sleep(0.1)
            finally:
                await conn.close()
            b3 = _spawn_bridge(env, "b3", tmp_path / "b3.log")
            _ready(b3, tmp_path / "b3.log")
            try:
                card2 = await operator.until(_card(bot, rid2), 60)
                e = await operator.reply(card.event_id, "approve")
                await operator.until(_answer_to(e, bot, "approved"), 60)
                result = await handle.result()
                await operator.until(_edit(bot, card.event_id, "Written and verified"), 30)
                await h2.cancel()
                # closed before its worker goes: no run left waiting
                with pytest.raises(WorkflowFailureError) as cancelled:
                    await h2.result()
                assert isinstance(cancelled.value.cause, CancelledError), cancelled.value.cause  # cancelled, not failed
                await operator.until(_edit(bot, card2.event_id, "Cancelled"), 30)  # whoever ended it, the card says
            finally:
                _stop(b3)
    finally:
        for b in (b1, b2):
            _stop(b, signal.SIGKILL)
        await operator.close()
    assert result.status == "completed"
    cards = [e for e in operator.events if _card(bot, rid)(e)]
    assert len(cards) == 1, [c.event_id for c in cards]
    assert len([e for e in operator.events if _card(bot, rid2)(e)]) == 1


def _edit_of(bot: str, message_id: str, *words: str) -> Callable[[Any], bool]:
    """An edit (``m.replace``) by the bot of message ``message_id`` whose new text holds ``words``."""

    def pred(e: Any) -> bool:
        content = e.source.get("content", {})
        rel = content.get("m.relates_to") or {}
        new = (content.get("m.new_content") or {}).get("body", "")
        return (
            isinstance(e, RoomMessageText)
            and e.sender == bot
            and rel.get("rel_type") == "m.replace"
            and rel.get("event_id") == message_id
            and all(w in new for w in words)
        )

    return pred


def _in_thread(bot: str, root: str, *words: str) -> Callable[[Any], bool]:
    def pred(e: Any) -> bool:
        rel = e.source.get("content", {}).get("m.relates_to") or {}
        return (
            isinstance(e, RoomMessageText)
            and e.sender == bot
            and rel.get("rel_type") == "m.thread"
            and rel.get("event_id") == root
            and all(w in e.body for w in words)
        )

    return pred


async def test_a_run_started_from_the_room_reports_progress_in_a_thread(
    temporal_env, settings, synapse, chat_files, tmp_path
) -> None:
    """`@tern run demo_no_sandbox` from the operator starts the bundled plan for approver `operator`; the steps
    are edited into one message in a thread under the message and the final outcome is posted there; its write's
    card arrives; the operator (the requester: two-person rule, so alice could approve; the requester may reject)
    rejects it from the room. Unknown plans and unmapped people are answered."""
    creds_path, idmap = chat_files
    worker_settings = settings.model_copy(
        update={"approval": settings.approval.model_copy(update={"approvers": ["operator", "alice"]})}
    )
    operator, stranger = Person(synapse, synapse.operator), Person(synapse, synapse.others["stranger"])
    for p in (operator, stranger):
        await p.start()
    bot = synapse.bot.user_id
    bridge = _spawn_bridge(_bridge_env(settings, temporal_env, creds_path, idmap), "b1", tmp_path / "bridge.log")
    _ready(bridge, tmp_path / "bridge.log")

    async def say(person: Person, text: str) -> str:
        resp = await person.client.room_send(person.room_id, "m.room.message", {"msgtype": "m.text", "body": text})
        assert isinstance(resp, RoomSendResponse), resp
        return str(resp.event_id)

    try:
        async with (
            demo_archive(settings) as archive,  # the bundled plan reads the trip night from the archiver
            running_worker(
                temporal_env.client,
                worker_settings.model_copy(
                    update={"archiver": worker_settings.archiver.model_copy(update={"url": archive.url})}
                ),
            ),
        ):
            e = await say(stranger, "@tern run demo_no_sandbox")
            await stranger.until(_answer_to(e, bot, "not mapped"), 60)
            e = await say(operator, "@tern run no-such-plan")
            await operator.until(_answer_to(e, bot, "no bundled plan", "demo_no_sandbox"), 60)
            root = await say(operator, "@tern run demo_no_sandbox")
            started = await operator.until(_in_thread(bot, root, "Started run"), 60)
            run_id = started.body.split("`")[1]
            # the progress is edited into the one "Started run" message, not posted line by line
            await operator.until(_edit_of(bot, started.event_id, "Started run", "waits for approval"), 60)
            card = await operator.until(lambda ev: _card(bot, "")(ev) and run_id in ev.body, 60)
            e = await operator.reply(card.event_id, "reject not during this shift")
            await operator.until(_answer_to(e, bot, "rejected", "operator"), 60)
            await operator.until(_in_thread(bot, root, "Finished: rejected"), 60)
    finally:
        _stop(bridge)
        for p in (operator, stranger):
            await p.close()
    rows = await audit_rows(settings.dsn, run_id)
    decision = next(r for r in rows if r["event_kind"] == "decision")
    assert decision["actor"] == "operator" and decision["decision"] == "rejected"


async def test_a_question_to_the_bot_is_planned_and_answered_in_a_thread(
    temporal_env, settings, synapse, chat_files, tmp_path
) -> None:
    """`@tern <question>` from the operator starts an agent run planned by the LLM (a scripted OpenAI-compatible
    server, reached by the real SDK client of the worker) for the operator; the thread says it started, then the
    answer. A bare `approve` to the bot is refused (decisions reply to a card)."""
    from tests.llm_script import plan_json, scripted_llm

    creds_path, idmap = chat_files
    operator = Person(synapse, synapse.operator)
    await operator.start()
    bot = synapse.bot.user_id

    async def say(text: str) -> str:
        resp = await operator.client.room_send(operator.room_id, "m.room.message", {"msgtype": "m.text", "body": text})
        assert isinstance(resp, RoomSendResponse), resp
        return str(resp.event_id)

    async with scripted_llm() as llm:
        llm.default["planner"] = plan_json(
            {"id": "read", "kind": "channel_read", "channels": ["SR:RF:CAVITY:01:VOLTAGE:RB"]},
            {"id": "answer", "kind": "respond"},
        )
        llm.default["answer"] = "Cavity 1 holds its voltage."
        llm_update = {"provider": "openai", "url": f"{llm.base}/v1", "model": "scripted"}
        worker_settings = settings.model_copy(update={"llm": settings.llm.model_copy(update=llm_update)})
        env = {
            **_bridge_env(settings, temporal_env, creds_path, idmap),
            "TERN_LLM__PROVIDER": "openai",
            "TERN_LLM__URL": f"{llm.base}/v1",
        }
        bridge = _spawn_bridge(env, "b1", tmp_path / "bridge.log")
        _ready(bridge, tmp_path / "bridge.log")
        try:
            async with running_worker(temporal_env.client, worker_settings):
                e = await say("@tern approve")
                await operator.until(_answer_to(e, bot, "not taken", "reply to its card"), 60)
                root = await say("@tern What is RF cavity 1 doing right now?")
                started = await operator.until(_in_thread(bot, root, "planned from the question"), 60)
                run_id = started.body.split("`")[1]
                await operator.until(_in_thread(bot, root, "Cavity 1 holds its voltage."), 90)
        finally:
            _stop(bridge)
            await operator.close()
    assert llm.by_role("planner"), "the worker's planner was asked"
    assert "What is RF cavity 1 doing right now?" in json.dumps(llm.by_role("planner")[0])
    from tern.models import AgentRunResult

    result = await temporal_env.client.get_workflow_handle(run_id, result_type=AgentRunResult).result()
    assert result.status == "completed" and result.user == "operator" and len(result.plan) == 1


async def test_code_approved_by_reaction_then_its_write_by_reply(
    temporal_env, settings, synapse, chat_files, tmp_path, docker_backend
) -> None:
    """An analysis step (real Docker sandbox) proposes a write: its low-risk code card is approved with a ✅
    reaction, the proposed write's card (a reaction would not do) with a reply; the card shows the readback."""
    from tests.test_python_step import analysis_plan

    creds_path, idmap = chat_files
    worker_settings = settings.model_copy(
        update={"approval": settings.approval.model_copy(update={"approvers": ["operator"]})}
    )
    channel = "SR:MAG:SF:11:CURRENT:SP"
    before = read_value(channel)
    operator = Person(synapse, synapse.operator)
    await operator.start()
    bot = synapse.bot.user_id
    bridge = _spawn_bridge(_bridge_env(settings, temporal_env, creds_path, idmap), "b1", tmp_path / "bridge.log")
    _ready(bridge, tmp_path / "bridge.log")
    try:
        async with running_worker(temporal_env.client, worker_settings):
            handle = await start_run(
                temporal_env.client, settings, analysis_plan(channel, 1.5), user="physicist", approvers=["operator"]
            )
            code_card = await operator.until(lambda e: _card(bot, "")(e) and "run Python code" in e.body, 90)
            assert "**Risk**: **low**" in code_card.body and "reaction also decides" in code_card.body
            e = await operator.react(code_card.event_id, "\u2705")
            await operator.until(_answer_to(e, bot, "approved", "operator"), 60)
            write_card = await operator.until(
                lambda e: _card(bot, "")(e) and "Approval needed: write" in e.body and channel in e.body, 120
            )
            e = await operator.reply(code_card.event_id, "approve")  # the code card is stale now: nothing is sent
            await operator.until(_answer_to(e, bot, "not taken", "not waiting"), 60)
            e = await operator.react(write_card.event_id, "\u2705")
            await operator.until(_answer_to(e, bot, "needs a reply"), 60)
            e = await operator.reply(write_card.event_id, "approve as analysed")
            await operator.until(_answer_to(e, bot, "approved", "operator"), 60)
            result = await handle.result()
            await operator.until(_edit(bot, write_card.event_id, "Written and verified"), 30)
            await operator.until(_edit(bot, code_card.event_id, "Approved"), 30)
    finally:
        _stop(bridge)
        await operator.close()
    assert result.status == "completed", result.error
    assert [a.kind for a in result.approvals] == ["python", "control_write"]
    assert read_value(channel) == pytest.approx(before + 1.5, abs=1e-3)
