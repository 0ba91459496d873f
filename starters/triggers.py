"""Starting runs from triggers, and the Temporal Schedules of schedule triggers (``tern trigger``).

A triggered run is an ordinary ``AgentRunWorkflow`` whose input carries the trigger and its event
(``AgentRunRequest.trigger``); the workflow records them in the audit table (``run_triggered``) before its first
step. Channel and webhook runs get a deterministic Workflow ID (:mod:`tern.triggers.detect`) and are started with
the id-reuse policy REJECT_DUPLICATE: starting an id that was ever used in the namespace's retention, open *or
closed*, raises ``WorkflowAlreadyStartedError``, which is the dedup (:func:`start_triggered` returns None then).
Temporal's default, ALLOW_DUPLICATE, refuses only while the first run is open, so an event crossing again after a
fast run closed would start a second run in the same window.

Schedule triggers are Temporal Schedules with the ID ``tern-trigger-<name>`` (the schedule is the record, no
table row): overlap policy SKIP (a run still going when the next is due makes the next one skipped), catch-up
window ``triggers.catchup_window_s``; their memo ``tern_trigger`` holds what ``tern trigger list`` shows.
Temporal appends the scheduled time to the action's Workflow ID (``trigger-<name>-<time>``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleDescription,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from starters.client import TernClient, TernUnavailable, TernUserError, run_request
from starters.priorities import run_priority
from tern.config import TernSettings
from tern.models import AgentRunRequest
from tern.models.progress import RunProgress
from tern.models.trigger import (
    RUN_PREFIX,
    SCHEDULE_PREFIX,
    RunTrigger,
    TriggerAction,
    TriggerDefinition,
    TriggerKind,
    schedule_id,
)
from workflows.agent_run import AgentRunWorkflow
from workflows.search_attributes import NO_APPROVAL, PENDING_APPROVAL, RUN_STATE, RUN_USER

MEMO_KEY = "tern_trigger"


class TriggerInfo(BaseModel):
    """One trigger as ``tern trigger list`` shows it (``--json``: a list of these)."""

    name: str
    kind: TriggerKind
    paused: bool
    when: str  # the cron expression or interval, the channel condition, or "POST /triggers/<name>"
    action: str  # "question: ..." or "plan: <file>"
    user: str
    next_run: datetime | None = None
    runs: int | None = None  # schedules: actions taken so far
    skipped_overlap: int | None = None  # schedules: actions skipped because a run was still going


def trigger_request(
    settings: TernSettings,
    name: str,
    kind: TriggerKind,
    action: TriggerAction,
    event: dict[str, Any],
    source: str = "",
) -> AgentRunRequest:
    """The ``AgentRunRequest`` of a run trigger ``name`` starts for ``event``: the question (planned by the
    worker's LLM, plan approval as ``llm.plan_approval``) or the plan, as ``action.user``, with the
    trigger and event in ``trigger``. Raises :class:`TernUserError` when a field breaks a limit."""
    s = settings
    return run_request(
        {"query": "--question"},
        user=action.user,
        query=action.query(name),
        plan=action.plan,
        approval_timeout_s=s.approval.timeout_s,
        python_approval_mode=s.approval.python_mode,
        plan_approval=s.llm.plan_approval if action.plan is None else False,
        trigger=RunTrigger(name=name, kind=kind, event=event, source=source),
    )


TRIGGERED_AT_MEMO = "tern_triggered_at"
"""Memo key of a channel or webhook run: the event's time (POSIX seconds, the starter's clock) that the dedup window
is measured from."""


async def recent_duplicate(client: Client, previous_id: str | None, at: float, window_s: float) -> bool:
    """Whether ``previous_id`` (the run id of the previous dedup bucket) exists and its event came less than
    ``window_s`` seconds before ``at``: the dedup is "within ``window_s`` of the first", not only "in the same
    epoch-aligned bucket" (two posts 1 s apart across a bucket boundary would otherwise start two runs).

    The first event's time is the run's ``tern_triggered_at`` memo, or its start time for runs started before the
    memo. One DescribeWorkflowExecution; False when the id was never used. Raises :class:`TernUnavailable` when
    Temporal does not answer."""
    if previous_id is None:
        return False
    try:
        desc = await client.get_workflow_handle(previous_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise TernUnavailable(f"cannot check the previous window's run {previous_id}: {exc}") from exc
    first: Any = await desc.memo_value(TRIGGERED_AT_MEMO, None)
    if not isinstance(first, int | float):
        first = desc.start_time.timestamp()
    return at - float(first) < window_s


async def start_triggered(
    client: Client,
    settings: TernSettings,
    request: AgentRunRequest,
    workflow_id: str,
    *,
    at: float | None = None,
    previous_id: str | None = None,
) -> str | None:
    """Start ``request`` as ``workflow_id``; returns the id, or None when a run with that id exists or existed (the
    dedup: REJECT_DUPLICATE refuses a second start while the first is open and after it closed,
    ``WorkflowAlreadyStartedError``). The start itself is the check, so two racing events start one run.

    ``at`` (POSIX seconds) and ``previous_id`` (the id the same event had in the previous dedup bucket): also None
    when that run's event came less than ``triggers.dedup_window_s`` before ``at`` (:func:`recent_duplicate`);
    ``at`` is stored in the run's memo ``tern_triggered_at``. Raises :class:`TernUnavailable` when Temporal does
    not answer the check."""
    if at is not None and await recent_duplicate(client, previous_id, at, settings.triggers.dedup_window_s):
        return None
    try:
        tern = TernClient(client, settings)
        handle = await tern.start_run(
            request,
            workflow_id,
            signer=tern.service_signer(request.user, "trigger"),
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            memo={TRIGGERED_AT_MEMO: at} if at is not None else None,
        )
    except WorkflowAlreadyStartedError:
        return None
    return handle.id


@dataclass
class WebhookStart:
    """What :func:`start_webhook_run` did: ``started`` a run ``workflow_id`` or found it a duplicate of that run;
    ``progress``: the run's first (or, for a duplicate, latest published) progress, None when there is none yet."""

    workflow_id: str
    started: bool
    progress: RunProgress | None = None


async def start_webhook_run(
    client: Client,
    settings: TernSettings,
    request: AgentRunRequest,
    workflow_id: str,
    *,
    at: float,
    previous_id: str | None,
    wait: timedelta,
) -> WebhookStart:
    """Start a webhook trigger's run with its first status in one round trip (Update-with-Start,
    :meth:`TernClient.start_new_with_progress`), deduplicated like :func:`start_triggered`: nothing starts when
    ``workflow_id`` is open or closed, or when ``previous_id``'s run came less than ``triggers.dedup_window_s``
    before ``at`` (POSIX seconds; stored in the run's memo ``tern_triggered_at``).

    A duplicate answers with the existing run's id and its published progress (one describe). ``progress`` of a new
    run is None when no worker answered within ``wait``. Raises :class:`TernUnavailable` when Temporal does not
    answer, :class:`TernUserError` when the start cannot be signed."""
    tern = TernClient(client, settings)
    if await recent_duplicate(client, previous_id, at, settings.triggers.dedup_window_s):
        assert previous_id is not None
        duplicate_of = previous_id
    else:
        try:
            first = await tern.start_new_with_progress(
                request,
                workflow_id,
                signer=tern.service_signer(request.user, "trigger"),
                memo={TRIGGERED_AT_MEMO: at},
                wait=wait,
            )
            return WebhookStart(workflow_id, True, first)
        except WorkflowAlreadyStartedError:
            duplicate_of = workflow_id
    try:
        progress = await tern.progress(duplicate_of)
    except TernUserError:
        progress = None
    return WebhookStart(duplicate_of, False, progress)


def _spec(cron: str | None, every: timedelta | None) -> ScheduleSpec:
    if cron is not None:
        return ScheduleSpec(cron_expressions=[cron])
    assert every is not None
    return ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)])


async def create_schedule(
    client: Client,
    settings: TernSettings,
    name: str,
    action: TriggerAction,
    *,
    cron: str | None = None,
    every: timedelta | None = None,
    when: str,
) -> None:
    """Create the Temporal Schedule of schedule trigger ``name`` (``tern-trigger-<name>``): every ``cron``
    (a checked five-field cron expression) or ``every`` (an interval), start ``AgentRunWorkflow`` with
    ``action``; ``when`` is the spec as the user wrote it (memo, run input). Raises :class:`TernUserError` when
    the schedule exists."""
    request = trigger_request(settings, name, "schedule", action, {"spec": when})
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            AgentRunWorkflow.run,
            request,
            id=f"{RUN_PREFIX}{name}",
            task_queue=settings.temporal.task_queue,
            priority=run_priority(request),
            static_summary=f"trigger {name}: {request.query[:160]}",
            typed_search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(RUN_STATE, "running"),
                    SearchAttributePair(PENDING_APPROVAL, NO_APPROVAL),
                    SearchAttributePair(RUN_USER, request.user),
                ]
            ),
        ),
        spec=_spec(cron, every),
        policy=SchedulePolicy(
            overlap=ScheduleOverlapPolicy.SKIP,
            catchup_window=timedelta(seconds=settings.triggers.catchup_window_s),
        ),
        state=ScheduleState(note=f"tern trigger {name}"),
    )
    memo = {"when": when, "action": _action_text(action), "user": action.user}
    try:
        await client.create_schedule(schedule_id(name), schedule, memo={MEMO_KEY: memo})
    except ScheduleAlreadyRunningError as exc:
        raise TernUserError(f"a trigger named {name!r} exists (schedule {schedule_id(name)})") from exc


def _action_text(action: TriggerAction) -> str:
    return f"question: {action.question}" if action.question else f"plan: {action.plan_file or '(inline)'}"


async def _describe_schedule(client: Client, name: str) -> ScheduleDescription | None:
    """DescribeSchedule of trigger ``name``'s schedule; None when it does not exist. Raises
    :class:`TernUnavailable` for any other RPC error."""
    try:
        return await client.get_schedule_handle(schedule_id(name)).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise TernUnavailable(f"cannot describe schedule {schedule_id(name)}: {exc}") from exc


async def schedule_exists(client: Client, name: str) -> bool:
    """Whether the schedule of trigger ``name`` exists (DescribeSchedule)."""
    return await _describe_schedule(client, name) is not None


async def schedule_info(client: Client, name: str) -> TriggerInfo | None:
    """The schedule trigger ``name`` as listed, or None when its schedule does not exist."""
    desc = await _describe_schedule(client, name)
    if desc is None:
        return None
    memo = (await desc.memo()).get(MEMO_KEY) or {}
    return TriggerInfo(
        name=name,
        kind="schedule",
        paused=desc.schedule.state.paused,
        when=str(memo.get("when", "")),
        action=str(memo.get("action", "")),
        user=str(memo.get("user", "")),
        next_run=desc.info.next_action_times[0] if desc.info.next_action_times else None,
        runs=desc.info.num_actions,
        skipped_overlap=desc.info.num_actions_skipped_overlap,
    )


async def schedule_names(client: Client) -> list[str]:
    """Names of Tern's schedule triggers: the schedules whose ID starts with ``tern-trigger-`` (ListSchedules
    reads the visibility store, which may lag a creation or deletion by a moment)."""
    names = []
    async for entry in await client.list_schedules():
        if entry.id.startswith(SCHEDULE_PREFIX):
            names.append(entry.id[len(SCHEDULE_PREFIX) :])
    return sorted(names)


async def set_schedule_paused(client: Client, name: str, paused: bool) -> bool:
    """Pause or resume the schedule of ``name``; False when it does not exist."""
    handle = client.get_schedule_handle(schedule_id(name))
    try:
        if paused:
            await handle.pause(note="paused by tern trigger pause")
        else:
            await handle.unpause(note="resumed by tern trigger resume")
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise TernUnavailable(f"cannot change schedule {schedule_id(name)}: {exc}") from exc
    return True


async def delete_schedule(client: Client, name: str) -> bool:
    """Delete the schedule of ``name`` (runs it started go on); False when it does not exist."""
    try:
        await client.get_schedule_handle(schedule_id(name)).delete()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise TernUnavailable(f"cannot delete schedule {schedule_id(name)}: {exc}") from exc
    return True


def stored_info(d: TriggerDefinition) -> TriggerInfo:
    """A stored (channel or webhook) trigger as listed."""
    when = (
        d.watch.describe()
        if d.watch is not None
        else f"POST /triggers/{d.name} (keys: {', '.join(d.key_ids) or 'none, refused until re-added'})"
    )
    return TriggerInfo(
        name=d.name, kind=d.kind, paused=d.paused, when=when, action=_action_text(d.action), user=d.action.user
    )
