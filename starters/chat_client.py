"""What the chat bridges and the webhook API do through Temporal, behind the signatures of
:mod:`tern.chat.bridge`: send a decision (:func:`client_decider`), start a run of a bundled plan
(:func:`plan_starter`) and follow it (:func:`run_progress`)."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator

from starters.client import TernClient, TernUnavailable, TernUserError
from starters.plan_file import load_plan
from tern import PACKAGE_DIR
from tern.chat.bridge import (
    Decider,
    DecisionRefused,
    FreezeChanger,
    Known,
    PendingSource,
    QuestionStarter,
    RunRefused,
    RunStarter,
)
from tern.chat.bridge import RunProgress as RunProgress_
from tern.models import AgentRunRequest, ApprovalRequest
from tern.models.progress import RunProgress

log = logging.getLogger(__name__)

PLANS_DIR = PACKAGE_DIR / "plans"
_PLAN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def client_decider(client: TernClient, *, surface: str) -> Decider:
    """A :data:`tern.chat.bridge.Decider` sending through ``client.decide`` with ``expected_request`` (a stale
    card or URL is refused before anything is sent) and ``surface`` in the audit; refusals and an unreachable
    worker become :class:`tern.chat.bridge.DecisionRefused` with the reason."""

    async def decide(workflow_id: str, request_id: str, approver: str, approved: bool, comment: str) -> str:
        try:
            rec = await client.decide(
                workflow_id,
                approver,
                approved,
                comment,
                surface=surface,
                expected_request=request_id,
                signer=client.service_signer(approver, surface),
            )
        except (TernUserError, TernUnavailable) as exc:
            raise DecisionRefused(str(exc)) from exc
        who = ", ".join(rec.approved_by) or rec.approver
        return f"**{rec.decision}** by {who} (request `{rec.request_id}`); recorded in the audit"

    return decide


def freeze_changer(client: TernClient, *, surface: str) -> FreezeChanger:
    """A :data:`tern.chat.bridge.FreezeChanger` sending through :meth:`TernClient.change_freeze` as the mapped user,
    signed by this bridge's service key for that user (``client.service_signer``: required where the worker's
    identity is proven; the worker checks the proof, and for a thaw the policy's ``freeze_thaw``), ``surface`` in
    the audit. Refusals and an unreachable worker become :class:`tern.chat.bridge.DecisionRefused`."""

    async def change(action: str, user: str, reason: str) -> str:
        if action not in ("freeze", "thaw"):
            raise DecisionRefused(f"unknown freeze action {action!r}")
        try:
            st = await client.change_freeze(
                "freeze" if action == "freeze" else "thaw",
                user,
                reason,
                surface=surface,
                signer=client.service_signer(user, surface),
            )
        except (TernUserError, TernUnavailable) as exc:
            raise DecisionRefused(str(exc)) from exc
        if st.frozen:
            return f"**Facility frozen**: {st.describe()}. No control write executes until `thaw <reason>`."
        return f"**Facility thawed** by {user}: held writes go on, each once; recorded in the audit"

    return change


def plan_starter(client: TernClient, surface: str = "chat") -> RunStarter:
    """A :data:`tern.chat.bridge.RunStarter`: ``run NAME`` starts ``tern/plans/NAME.json`` for the mapped user
    (approvers as the worker's policy says). Unknown plans are refused naming the bundled ones. With a message
    ``key`` the start is :meth:`TernClient.start_once` (Update-with-Start: a retried message starts no second
    run)."""

    async def start(user: str, name: str, key: str | None = None) -> str:
        path = PLANS_DIR / f"{name}.json"
        if not _PLAN.match(name) or not path.is_file():
            known = ", ".join(sorted(p.stem for p in PLANS_DIR.glob("*.json")))
            raise RunRefused(f"no bundled plan {name[:64]!r} (plans: {known})")
        try:
            plan = load_plan(path)
            req = AgentRunRequest(user=user, query=f"chat: run {name}", plan=plan)
            signer = client.service_signer(user, surface)
            if key is not None:
                return (await client.start_once(req, key, signer))[0]
            handle = await client.start_run(req, signer=signer)
        except (TernUserError, TernUnavailable, ValueError) as exc:
            raise RunRefused(str(exc)) from exc
        return str(handle.id)

    return start


def question_starter(client: TernClient, surface: str = "chat") -> QuestionStarter:
    """A :data:`tern.chat.bridge.QuestionStarter`: a question to the bot starts ``TernClient.ask`` for the mapped
    user (the worker's planner makes the plan; approvers as the worker's policy says); with a message ``key``
    once per message (:meth:`TernClient.start_once`). No LLM configured, an empty or over-long question: refused
    with the reason."""

    async def start(user: str, question: str, key: str | None = None) -> str:
        try:
            signer = client.service_signer(user, surface)
            if key is not None:
                return (await client.start_once(client.question_request(question, user=user), key, signer))[0]
            handle = await client.ask(question, user=user, signer=signer)
        except (TernUserError, TernUnavailable) as exc:
            raise RunRefused(str(exc)) from exc
        return str(handle.id)

    return start


def progress_markdown(p: RunProgress) -> str:
    """The chat text of a run's progress ``p``: the step it is at and what happened last."""
    if p.event == "waiting" and p.pending is not None:
        return f"Step `{p.step_id or p.pending.step_id}` waits for approval: {p.pending.summary} (see its card)"
    where = f"Step {min(p.steps_done + 1, p.steps_total)} of {p.steps_total}: " if p.steps_total else ""
    return f"{where}{p.line}"


def run_progress(client: TernClient) -> RunProgress_:
    """A :data:`tern.chat.bridge.RunProgress` reading what the run publishes (:meth:`TernClient.follow`: a long
    poll on its history, no polling interval, no status query): ``(progress text, False)`` for each publication
    but the last, then ``(outcome with the answer and citations, True)``. No step or wait passes unreported."""

    async def progress(workflow_id: str) -> AsyncIterator[tuple[str, bool]]:
        async for p in client.follow(workflow_id):
            if not p.finished:
                yield progress_markdown(p), False
        result = await client.result(workflow_id)
        cites = f"\n\nCitations: {', '.join(result.citations)}" if result.citations else ""
        yield f"**Finished: {result.status}**\n\n{result.answer or result.error or ''}{cites}".rstrip(), True

    return progress


def pending_requests(client: TernClient) -> PendingSource:
    """A :data:`tern.chat.bridge.PendingSource` from visibility: ONE list call (:meth:`TernClient.pending`, each
    run's request id read from its progress memo); only the requests the outbox lacks (``known``) are fetched
    whole by the run's ``status`` query (a card needs the write, the code or the plan). A run whose worker does not
    answer (``QUERY_RPC_TIMEOUT``) is skipped with a warning: the bridge starts all the same, and the run's outbox
    row (if any) still gives it a card."""
    from starters.client import QUERY_RPC_TIMEOUT
    from workflows.agent_run import AgentRunWorkflow

    async def pending(known: Known) -> list[tuple[str, ApprovalRequest]]:
        out: list[tuple[str, ApprovalRequest]] = []
        for p in await client.pending():
            if p.pending is None or await known(p.pending.request_id):
                continue
            try:
                st = await client.client.get_workflow_handle(p.workflow_id).query(
                    AgentRunWorkflow.status, rpc_timeout=QUERY_RPC_TIMEOUT
                )
            except Exception as exc:  # RPCError, query failure: this run only
                log.warning("reconciliation skips run %s: %s", p.workflow_id, exc)
                continue
            if st.pending is not None:
                out.append((st.workflow_id, st.pending))
        return out

    return pending
