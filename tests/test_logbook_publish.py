"""Logbook write-back (``logbook_publish`` steps): the ELOG submit request and answers (built and parsed without a
server: no ELOG server runs here), the draft's checks and the once-only publication on real PostgreSQL, the
planner proposing the step (scripted LLM over real HTTP), and the gate ordering on the time-skipping server
(draft -> approval -> publish; rejected: nothing published). The end-to-end runs are in
``tests/test_logbook_publish_runs.py``."""

from __future__ import annotations

import asyncio
import base64
import email
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from temporalio import activity
from temporalio.client import Client
from temporalio.worker import Worker

from tern.ariel import store
from tern.ariel.adapters import jlab_api
from tern.ariel.adapters.base import (
    OutgoingFile,
    PublishedRef,
    PublishNotSupported,
    PublishOutcomeUnknown,
    PublishRejected,
    PublishTarget,
)
from tern.ariel.adapters.elog import parse_submit_response, submit_request
from tern.ariel.publish import DraftInvalid, draft_entry, embedded_entry_id, publish_entry
from tern.config import TernSettings
from tern.control.limits import LimitsDatabase
from tern.db import create_pool
from tern.llm import OpenAIChat
from tern.models import AgentRunRequest, Decision, Plan
from tern.models.activity_io import LogbookDraftInput, LogbookPublishInput
from tern.models.logbook import LogbookDraft, LogbookPublication
from tern.models.planning import PlanInput
from tern.planning import REGISTRY, make_plan
from tern.sandbox.artifacts import store_artifact
from tests.ariel.conftest import serve
from tests.llm_script import last_user_text, plan_json, scripted_llm
from tests.test_workflows_fast import Machine, pending
from workflows.agent_run import AgentRunWorkflow

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
DRAFT = LogbookDraft(
    workflow_id="ask-1",
    step_id="elog",
    target="elog",
    author="alice",
    title="Cavity 1 trip",
    text="Reflected power rose to 41 kW.\n\nTern run ask-1, step elog.",
    tags=["RF", "trip"],
)
TARGET = PublishTarget(url="https://elog.example/sub/Operations", username="alice", password="$5$$abc")


# --- ELOG: the request and the answers -----------------------------------------------------------------------
def _form(request: httpx.Request) -> dict[str, tuple[str | None, str | None, bytes]]:
    """The multipart body of ``request`` as name -> (file name, content type, content)."""
    body = request.read()
    msg = email.message_from_bytes(b"Content-Type: " + request.headers["content-type"].encode() + b"\r\n\r\n" + body)
    assert msg.is_multipart()
    out = {}
    for part in msg.walk():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str):
            content = part.get_payload(decode=True)
            assert isinstance(content, bytes)
            out[name] = (part.get_filename(), part.get("content-type"), content)
    return out


def test_elog_submit_is_one_multipart_post_with_the_documented_fields() -> None:
    files = [OutgoingFile("power.png", "image/png", PNG)]
    request = submit_request(DRAFT, files, TARGET, now=datetime(2026, 11, 23, 3, 20, tzinfo=UTC))
    assert request.method == "POST" and str(request.url) == "https://elog.example/sub/Operations/"
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    form = _form(request)
    fields = {k: v[2].decode() for k, v in form.items() if k != "attfile1"}
    assert fields == {
        "cmd": "Submit",
        "exp": "Operations",  # the logbook, from the URL's last path part
        "Author": "alice",
        "Subject": "Cavity 1 trip",
        "When": str(int(datetime(2026, 11, 23, 3, 20, tzinfo=UTC).timestamp())),
        "Encoding": "plain",
        "unm": "alice",
        "upwd": "abc",  # ELOG's encoded password without the $5$$ prefix
        "Text": "Reflected power rose to 41 kW.\n\nTern run ask-1, step elog.\n\nTags: RF, trip",
    }
    assert form["Text"][0] is None  # a plain form field, not a file
    assert form["attfile1"] == ("power.png", "image/png", PNG)


def test_elog_submit_without_files_or_credentials_is_still_multipart_and_names_the_logbook_setting() -> None:
    target = PublishTarget(url="http://elog.example:8080/", logbook="Shift Log")
    form = _form(submit_request(DRAFT, [], target))
    assert form["exp"][2] == b"Shift Log" and "unm" not in form and "upwd" not in form
    with pytest.raises(ValueError, match="names no logbook"):
        submit_request(DRAFT, [], PublishTarget(url="http://elog.example/"))


def _answer(status: int, body: str = "", location: str | None = None) -> httpx.Response:
    request = httpx.Request("POST", "https://elog.example/sub/Operations/")
    headers = {"Location": location} if location else {}
    return httpx.Response(status, headers=headers, content=body.encode(), request=request)


def test_elog_answers_are_parsed_into_an_id_or_the_reason_it_refused() -> None:
    # elogd's answers to a submit, as its client (elog.c) and py_elog read them
    ok = parse_submit_response(_answer(302, location="https://elog.example/sub/Operations/1234?suppress=1"))
    assert ok == PublishedRef(entry_id="1234", url="https://elog.example/sub/Operations/1234")
    assert parse_submit_response(httpx.Response(302, headers={"Location": "/Operations/7"})).entry_id == "7"
    refusals = {
        "invalid user name or password": _answer(302, location="https://elog.example/sub/Operations/?fail=1"),
        "asks for a login": _answer(200, '<form name=form1 method="post"><input type=password name=upwd>'),
        r"\(HTTP 400\): Error: Attribute Category not supplied\.": _answer(
            400, '<table><tr><td class="errormsg">Error: Attribute <b>Category</b> not supplied.</td></tr></table>'
        ),
        "no redirect to a message id": _answer(200, "<html><title>Logbook Selection</title></html>"),
        "has moved": _answer(302, location="https://new.example/ has moved"),
        "holds no message id": _answer(302, location="https://elog.example/sub/Operations/"),
    }
    for reason, response in refusals.items():
        with pytest.raises(PublishRejected, match=reason):
            parse_submit_response(response)


# --- JLab logbook: the request and the answers -----------------------------------------------------------------
def test_jlab_submit_is_a_put_of_a_logentry_document_with_inline_attachments() -> None:
    target = PublishTarget(url="https://logbooks.example/incoming/", logbook="ELOG, TLOG")
    draft = DRAFT.model_copy(update={"target": "jlab", "text": "P < 41 kW ]]> ok"})
    now = datetime(2026, 11, 23, 3, 20, 5, tzinfo=UTC)
    request = jlab_api.submit_request(draft, [OutgoingFile("power.png", "image/png", PNG)], target, now=now)
    assert request.method == "PUT" and request.headers["content-type"] == "application/xml; charset=UTF-8"
    name = request.url.path.rsplit("/", 1)[-1]
    assert request.url.path.startswith("/incoming/2026_11_23_032005_") and name.endswith(".xml")
    assert len(name.split("_")) == 7  # date (4 parts), pid, host, number
    doc = ElementTree.fromstring(request.read())
    assert doc.tag == "Logentry" and doc.findtext("created") == "2026-11-23T03:20:05+00:00"
    assert doc.findtext("Author/username") == "alice" and doc.findtext("title") == "Cavity 1 trip"
    assert [b.text for b in doc.findall("Logbooks/logbook")] == ["ELOG", "TLOG"]
    assert doc.findtext("body") == "P < 41 kW ]]> ok"  # CDATA, its end sequence split
    assert [t.text for t in doc.findall("Tags/tag")] == ["RF", "trip"]
    [att] = doc.findall("Attachments/Attachment")
    assert (att.findtext("filename"), att.findtext("type")) == ("power.png", "image/png")
    data = att.find("data")
    assert data is not None and data.get("encoding") == "base64" and base64.b64decode(data.text or "") == PNG
    with pytest.raises(ValueError, match="needs the logbook name"):
        jlab_api.submit_request(draft, [], PublishTarget(url="https://logbooks.example/incoming/"))
    with pytest.raises(ValueError, match=r"client certificate /nonexistent\.pem .* cannot be loaded"):
        jlab_api.client_tls(Path("/nonexistent.pem"))


def test_jlab_answers_are_parsed_into_a_log_number_or_the_reason() -> None:
    def answer(status: int, body: str) -> httpx.Response:
        return httpx.Response(status, content=body.encode())

    ok = '<?xml version="1.0"?><Response stat="ok"><msg>Success</msg><lognumber>4123456</lognumber></Response>'
    assert jlab_api.parse_submit_response(answer(200, ok)) == PublishedRef(entry_id="4123456")
    refusals = {
        "refused the entry: Logbook XYZ does not exist": answer(
            200, '<Response stat="fail"><msg>Logbook XYZ does not exist</msg></Response>'
        ),
        r"HTTP 403\): Forbidden": answer(403, "Forbidden"),
        "not XML": answer(200, "<html"),
        "not a <Response": answer(200, "<html><body>login</body></html>"),
        "holds no log number": answer(200, '<Response stat="ok"><msg>queued</msg></Response>'),
    }
    for reason, response in refusals.items():
        with pytest.raises(PublishRejected, match=reason):
            jlab_api.parse_submit_response(response)


# --- drafting and publishing on PostgreSQL ---------------------------------------------------------------------
@pytest.fixture
async def pool(pg_dsn: str) -> AsyncIterator:
    p = await create_pool(pg_dsn)
    yield p
    await p.close()


async def _draft(pool, target: str = "embedded", attachments: list[str] | None = None, wf: str = "run-a"):
    return await draft_entry(
        pool,
        target=target,
        workflow_id=wf,
        step_id="elog",
        author="alice",
        title="Quadrupole QF1 check",
        text="Checked QF1 after the trip.",
        tags=["magnets", "magnets"],
        sections=["step read (channel_read, completed): QF1 = 101.2 A"],
        attachments=attachments or [],
    )


async def test_draft_checks_the_target_and_the_attachments_before_anyone_is_asked(pool) -> None:
    mine = await store_artifact(pool, PNG, workflow_id="run-a", step_id="plot", name="qf1.png", media_type="image/png")
    other = await store_artifact(pool, PNG, workflow_id="run-b", step_id="plot", name="x.png", media_type="image/png")
    draft = await _draft(pool, attachments=[mine, mine])
    assert draft.entry_id == embedded_entry_id("run-a", "elog") and draft.tags == ["magnets"]
    assert draft.text == (
        "Checked QF1 after the trip.\n\nstep read (channel_read, completed): QF1 = 101.2 A\n\n"
        "Tern run run-a, step elog."
    )
    assert [(a.artifact_id, a.name, a.media_type, a.size_bytes) for a in draft.attachments] == [
        (mine, "qf1.png", "image/png", len(PNG))
    ]
    with pytest.raises(DraftInvalid, match=r"unknown attachment artifact 'art_0+'"):
        await _draft(pool, attachments=["art_" + "0" * 32])
    with pytest.raises(DraftInvalid, match=f"{other}' is not an artifact of run run-a"):
        await _draft(pool, attachments=[other])
    with pytest.raises(PublishNotSupported, match="publishing not supported by adapter 'als'"):
        await _draft(pool, target="als")
    with pytest.raises(ValueError, match="unknown adapter 'nope'"):
        await _draft(pool, target="nope")


async def test_embedded_publish_happens_once_and_is_found_by_keyword(pool) -> None:
    wf = f"run-{uuid.uuid4().hex[:8]}"
    art = await store_artifact(pool, PNG, workflow_id=wf, step_id="plot", name="qf1.png", media_type="image/png")
    draft = await _draft(pool, attachments=[art], wf=wf)
    first = await publish_entry(pool, draft, approver="bob", request_id="r1")
    again = await publish_entry(pool, draft, approver="bob", request_id="r1")  # a retried activity
    assert (first.duplicate, again.duplicate) == (False, True)
    assert first.entry_id == again.entry_id == draft.entry_id and again.attachments == [art]
    async with pool.acquire() as conn:
        entry = await store.get_entry(conn, draft.entry_id)
        rows = await conn.fetchval("SELECT count(*) FROM logbook_publications WHERE workflow_id = $1", wf)
    assert rows == 1 and entry is not None
    assert (entry.source_system, entry.author, entry.title) == ("tern", "alice", "Quadrupole QF1 check")
    assert entry.metadata["workflow_id"] == wf and entry.metadata["approved_by"] == "bob"
    assert [(a.url, a.filename, a.type) for a in entry.attachments] == [(f"artifact:{art}", "qf1.png", "image/png")]
    from tern.ariel.service import search

    found = await search(pool, TernSettings(ariel={"embedding_provider": "none"}), "quadrupole QF1", mode="keyword")
    assert draft.entry_id in [h.entry_id for h in found.hits]


async def test_facility_publish_is_refused_for_an_adapter_without_publish_and_never_sent_twice(pool) -> None:
    wf = f"run-{uuid.uuid4().hex[:8]}"
    draft = (await _draft(pool, wf=wf)).model_copy(update={"target": "generic", "entry_id": ""})
    with pytest.raises(PublishNotSupported, match="publishing not supported by adapter 'generic'"):
        await publish_entry(pool, draft, approver="bob", request_id="r1")
    # an ELOG submit whose answer was lost: claimed, never confirmed -> not sent again
    elog = draft.model_copy(update={"target": "elog"})
    await pool.execute(
        "INSERT INTO logbook_publications (workflow_id, step_id, target, title) VALUES ($1, 'elog', 'elog', 't')", wf
    )
    with pytest.raises(PublishOutcomeUnknown, match="not sent again: check the logbook"):
        await publish_entry(pool, elog, approver="bob", request_id="r1", target=TARGET)
    # a server that cannot be reached: nothing sent, the claim released so a retry may publish
    wf2 = f"run-{uuid.uuid4().hex[:8]}"
    closed = PublishTarget(url="http://127.0.0.1:9/Operations/", timeout_s=2)
    with pytest.raises(Exception, match="cannot be reached"):
        await publish_entry(
            pool, elog.model_copy(update={"workflow_id": wf2}), approver="b", request_id="r", target=closed
        )
    assert await pool.fetchval("SELECT count(*) FROM logbook_publications WHERE workflow_id = $1", wf2) == 0


# --- the planner proposes the step ---------------------------------------------------------------------------
async def test_the_planner_can_propose_a_logbook_entry_and_a_blank_title_is_fed_back() -> None:
    limits = LimitsDatabase.load(TernSettings().control.limits_path)
    read = {"id": "read", "kind": "channel_read", "channels": ["SR:RF:CAVITY:01:VOLTAGE:RB"]}
    entry = {"id": "elog", "kind": "logbook_publish", "title": "Cavity 1 voltage", "inputs": ["read"], "tags": ["RF"]}
    question = PlanInput(workflow_id="r1", user="alice", question="Read cavity 1 voltage and log it in the elog")
    async with scripted_llm() as llm:
        llm.script["planner"] = [
            plan_json(read, {**entry, "title": " "}, {"id": "answer", "kind": "respond"}),
            plan_json(read, entry, {"id": "answer", "kind": "respond"}),
        ]
        draft = await make_plan(OpenAIChat(f"{llm.base}/v1", "scripted", "k"), REGISTRY, question, limits)
    assert [s.kind for s in draft.plan.steps] == ["channel_read", "logbook_publish", "respond"]
    first, second = llm.by_role("planner")
    assert "- logbook_publish: Write an entry to the electronic logbook" in str(first["messages"])
    assert "Needs a human approval" in str(first["messages"])
    assert "non-empty 'title'" in last_user_text(second)


def test_bad_plans_are_refused_with_the_reason() -> None:
    def invalid(step: dict) -> str:
        with pytest.raises(ValueError) as exc:
            Plan.model_validate({"steps": [step]})
        return str(exc.value)

    assert "non-empty 'title'" in invalid({"kind": "logbook_publish", "title": ""})
    assert "inputs ['nope'] are not ids of earlier steps" in invalid(
        {"kind": "logbook_publish", "title": "t", "inputs": ["nope"]}
    )
    assert "String should match pattern" in invalid({"kind": "logbook_publish", "title": "t", "attachments": ["x.png"]})


# --- gate ordering on the time-skipping server ---------------------------------------------------------------
@pytest.fixture
async def fast(time_skipping_env) -> AsyncIterator[tuple[Client, Machine, list[str], str]]:
    machine = Machine()
    calls: list[str] = []

    @activity.defn(name="draft_logbook_entry")
    async def draft_logbook_entry(inp: LogbookDraftInput) -> LogbookDraft:
        calls.append(f"draft:{[r.step_id for r in inp.inputs]}")
        return LogbookDraft(
            workflow_id=inp.workflow_id,
            step_id=inp.step_id,
            target="embedded",
            author=inp.user,
            title=inp.title,
            text=inp.text,
        )

    @activity.defn(name="publish_logbook_entry")
    async def publish_logbook_entry(inp: LogbookPublishInput) -> LogbookPublication:
        calls.append(f"publish:{inp.approver}")
        return LogbookPublication(
            target="embedded",
            entry_id="tern-1",
            title=inp.draft.title,
            approved_by=inp.approver,
            published_at=datetime.now(UTC),
        )

    queue = f"fast-{uuid.uuid4().hex[:8]}"
    async with Worker(
        time_skipping_env.client,
        task_queue=queue,
        workflows=[AgentRunWorkflow],
        activities=[*machine.activities(), draft_logbook_entry, publish_logbook_entry],
    ):
        yield time_skipping_env.client, machine, calls, queue


PUBLISH_PLAN = {
    "steps": [
        {"id": "read", "kind": "channel_read", "channels": ["SR:MAG:QF:01:CURRENT:SP"]},
        {"id": "elog", "kind": "logbook_publish", "title": "QF1", "text": "checked", "inputs": ["read"]},
        {"id": "answer", "kind": "respond"},
    ]
}


async def _start(client: Client, queue: str, timeout_s: float = 3600):
    req = AgentRunRequest(
        user="alice", query="q", plan=Plan.model_validate(PUBLISH_PLAN), approvers=["bob"], approval_timeout_s=timeout_s
    )
    return await client.start_workflow(AgentRunWorkflow.run, req, id=f"lb-{uuid.uuid4().hex[:8]}", task_queue=queue)


async def test_draft_then_approval_then_publish(fast) -> None:
    client, machine, calls, queue = fast
    handle = await _start(client, queue)
    rid = await pending(handle)
    st = await handle.query(AgentRunWorkflow.status)
    assert st.pending is not None and st.pending.kind == "logbook" and st.pending.entry is not None
    assert st.pending.entry.title == "QF1" and calls == ["draft:['read']"]  # drafted, not published yet
    await handle.execute_update(AgentRunWorkflow.decide, Decision(request_id=rid, approver="bob", approved=True))
    result = await handle.result()
    assert result.status == "completed" and calls == ["draft:['read']", "publish:bob"]
    step = result.steps[1]
    assert step.logbook is not None and step.message == "published to the embedded logbook as tern-1"
    assert [e.event_kind for e in machine.audit] == ["approval_requested", "decision"]
    assert machine.audit[0].details["kind"] == "logbook" and machine.audit[0].details["title"] == "QF1"


async def test_rejected_or_expired_publishes_nothing_and_the_run_says_so(fast) -> None:
    client, _machine, calls, queue = fast
    handle = await _start(client, queue)
    rid = await pending(handle)
    await handle.execute_update(
        AgentRunWorkflow.decide, Decision(request_id=rid, approver="bob", approved=False, comment="wrong shift")
    )
    result = await handle.result()
    assert result.status == "rejected" and calls == ["draft:['read']"]
    assert result.steps[1].message == "logbook entry not published: rejected by bob: wrong shift"
    assert result.error == "step elog: logbook entry not published: rejected by bob: wrong shift"
    assert result.steps[2].kind == "respond"  # the answer is still composed
    calls.clear()
    expired = await (await _start(client, queue, timeout_s=600)).result()  # the test server skips the wait
    assert expired.status == "timed_out" and calls == ["draft:['read']"]
    assert expired.steps[1].message.startswith("logbook entry not published: timed_out")


# --- what the approver reads -----------------------------------------------------------------------------------
def test_the_approver_reads_the_whole_draft_with_its_attachments_and_long_text_is_shortened() -> None:
    from tern.approval.render import MAX_CODE_CHARS, pending_markdown, request_title
    from tern.models import ApprovalRequest
    from tern.models.logbook import DraftAttachment

    now = datetime(2026, 11, 23, 3, 20, tzinfo=UTC)
    draft = DRAFT.model_copy(
        update={
            "target": "embedded",
            "attachments": [DraftAttachment(artifact_id="art_" + "a" * 32, name="p.png", media_type="image/png")],
        }
    )
    request = ApprovalRequest(
        request_id="r1",
        kind="logbook",
        step_id="elog",
        summary="publish to the embedded logbook: Cavity 1 trip, 1 attachments",
        requested_by="alice",
        approvers=["bob"],
        requested_at=now,
        expires_at=now,
        entry=draft,
        reason=draft.text,
    )
    md = pending_markdown(request, workflow_id="ask-1", now=now)
    assert request_title(request) == "publish a logbook entry to the embedded logbook"
    assert "### Logbook entry" in md and "**Cavity 1 trip** by alice to the embedded logbook" in md
    assert "> Reflected power rose to 41 kW." in md and "> Tern run ask-1, step elog." in md
    assert f"- `art_{'a' * 32}` p.png (image/png, 0 bytes)" in md
    assert "Reason:" not in md  # the text is shown once, as the entry
    long = request.model_copy(update={"entry": draft.model_copy(update={"text": "x" * (MAX_CODE_CHARS + 10)})})
    assert f"the first {MAX_CODE_CHARS} of {MAX_CODE_CHARS + 10} characters" in pending_markdown(long, workflow_id="a")


# --- the facility path through a stand-in elogd (FastAPI on loopback answering as the ELOG client expects) -------
async def test_elog_publish_sends_once_with_its_attachment_and_a_lost_answer_is_never_resent(pool) -> None:
    received: list[dict[str, Any]] = []
    app = FastAPI()

    @app.post("/elog/{book}/")
    async def submit(book: str, request: Request) -> Response:
        form = await request.form()
        att = form.get("attfile1")
        received.append({k: v for k, v in form.items() if isinstance(v, str)} | {"book": book})
        if att is not None and not isinstance(att, str):
            received[-1]["attfile1"] = (att.filename, await att.read())
        if form.get("Subject") == "slow":
            await asyncio.sleep(3)  # beyond the client's timeout (2 s): the answer is lost
        return Response(status_code=302, headers={"Location": f"/elog/{book}/{len(received)}"})

    wf = f"run-{uuid.uuid4().hex[:8]}"
    art = await store_artifact(pool, PNG, workflow_id=wf, step_id="plot", name="qf1.png", media_type="image/png")
    draft = await _draft(pool, target="elog", attachments=[art], wf=wf)
    async with serve(app) as base:
        target = PublishTarget(url=f"{base}/elog/Operations/", username="alice", password="hash", timeout_s=2)
        first = await publish_entry(pool, draft, approver="bob", request_id="r1", target=target)
        again = await publish_entry(pool, draft, approver="bob", request_id="r1", target=target)
        assert len(received) == 1  # the retry found the publication: nothing sent again
        assert (first.entry_id, first.url, first.duplicate, again.duplicate) == (
            "1",
            f"{base}/elog/Operations/1",
            False,
            True,
        )
        sent = received[0]
        assert (sent["cmd"], sent["exp"], sent["book"], sent["Author"], sent["unm"], sent["upwd"]) == (
            "Submit",
            "Operations",
            "Operations",
            "alice",
            "alice",
            "hash",
        )
        assert sent["Subject"] == "Quadrupole QF1 check" and sent["attfile1"] == ("qf1.png", PNG)
        row = await pool.fetchrow("SELECT * FROM logbook_publications WHERE workflow_id = $1", wf)
        assert (row["entry_id"], row["approved_by"], row["published_at"] is not None) == ("1", "bob", True)

        slow = draft.model_copy(update={"workflow_id": wf + "-slow", "title": "slow"})
        with pytest.raises(PublishOutcomeUnknown, match="did not answer the submit"):
            await publish_entry(pool, slow, approver="bob", request_id="r2", target=target)
        with pytest.raises(PublishOutcomeUnknown, match="not sent again: check the logbook"):
            await publish_entry(pool, slow, approver="bob", request_id="r2", target=target)
        assert len(received) == 2  # the slow one reached the server once, and only once
