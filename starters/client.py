"""The Python client API for starting and steering agent runs (the CLI and chat-bot bridges use it).

Errors a user can fix are :class:`TernUserError` (exit status 2 in the CLI); an unreachable service is
:class:`TernUnavailable` (exit status 1).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import timedelta
from typing import Any

from pydantic import TypeAdapter, ValidationError
from temporalio.api.enums.v1 import EventType, TaskQueueKind, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowExecution,
    WorkflowExecutionDescription,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.client import (
    WorkflowExecutionStatus as ExecStatus,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from starters.priorities import run_priority
from tern.config import TernSettings
from tern.identity.prove import ProofError, Signer
from tern.models import (
    AgentRunRequest,
    AgentRunResult,
    AgentRunStatus,
    ApprovalRecord,
    Decision,
)
from tern.models.freeze import FreezeAction, FreezeChange, FreezeState, change_digest
from tern.models.limits import UserName
from tern.models.plan import STEP_KINDS
from tern.models.planning import ChannelCandidate
from tern.models.progress import PROGRESS_MEMO, PendingSummary, RunProgress, clip_line
from worker.connection import TemporalUnreachable, connect
from workflows.agent_run import AgentRunWorkflow
from workflows.facility_freeze import FacilityFreezeWorkflow
from workflows.queues import long_queue
from workflows.search_attributes import NO_APPROVAL, PENDING_APPROVAL, RUN_STATE, RUN_USER

_USER_NAME: TypeAdapter[str] = TypeAdapter(UserName)


NO_LLM = (
    "no LLM is configured to plan the question: set TERN_LLM__PROVIDER (openai or anthropic), TERN_LLM__URL, "
    "TERN_LLM__MODEL and, if the endpoint needs one, TERN_LLM__API_KEY (README 'Asking questions'); or run an "
    "explicit plan with `tern run --plan`"
)


class TernUserError(ValueError):
    """Bad input: a malformed plan, an unknown channel or run, a decision for a run that is not waiting."""


class TernUnavailable(RuntimeError):
    """A service (Temporal, PostgreSQL) cannot be reached; the message says which and how to start it."""


def clip(text: str, limit: int = 60) -> str:
    """``text``, or its first ``limit`` characters and its length when it is longer (for one-line messages)."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def validation_message(exc: ValidationError, source: str, labels: Mapping[str, str] | None = None) -> str:
    """One line naming each bad field (the first five) and pydantic's message, which states the limit.

    ``labels`` maps a top-level field name to what the user typed (e.g. ``approvers`` -> ``--approver``).
    """
    parts = []
    for err in exc.errors()[:5]:
        loc = [p for p in err["loc"] if not isinstance(p, str) or p not in STEP_KINDS]
        if labels and loc and str(loc[0]) in labels:
            loc = [labels[str(loc[0])]]
        where = ".".join(clip(str(p)) for p in loc)
        part = f"{where or '(top level)'}: {clip(err['msg'], 300)}"
        if part not in parts:
            parts.append(part)
    text = "; ".join(parts)
    return f"{source}: {text}" if source else text


def check_user_name(name: str, label: str) -> str:
    """``name`` if it is a valid user or approver name (``tern.models.limits.UserName``: 1 to ``MAX_USER_CHARS``
    characters, not blank), else :class:`TernUserError` ``"<label>: <what is wrong>"``."""
    try:
        return _USER_NAME.validate_python(name)
    except ValidationError as exc:
        raise TernUserError(f"{label}: {exc.errors()[0]['msg']}") from exc


def run_request(labels: Mapping[str, str] | None = None, **fields: Any) -> AgentRunRequest:
    """``AgentRunRequest(**fields)``, or :class:`TernUserError` with one line naming each bad field (by
    ``labels[field]`` when given, e.g. ``{"user": "--user"}``) and its limit (``tern.models.limits``)."""
    try:
        return AgentRunRequest(**fields)
    except ValidationError as exc:
        raise TernUserError(validation_message(exc, "", labels)) from exc


POLLER_SEEN_S = 70.0
"""A worker counts as polling a task queue when its last poll began at most this long ago, in seconds. An idle
worker's long poll is answered empty after one minute (Temporal matching service, dynamic config
``matching.longPollExpirationInterval``, default 1 m) and it polls again at once; a dead worker stays in
DescribeTaskQueue's pollers list for minutes with an old ``last_access_time``."""

WORKER_WAIT_S = 5.0
"""How long a decision waits for a worker to appear before giving up (without ``wait``), in seconds."""

WORKER_POLL_INTERVAL_S = 1.0
"""Interval between DescribeTaskQueue calls while waiting for a worker, in seconds."""

QUERY_RPC_TIMEOUT = timedelta(seconds=10)
"""Deadline of a ``status`` query: a worker that died less than ``POLLER_SEEN_S`` ago still looks alive, and
the server holds a query for a queue without a live poller until the deadline ("no poller seen for task
queue recently")."""

START_TOKEN_MEMO = "tern_start_token"
"""Memo key of a run started by :meth:`TernClient.start_new_with_progress`: the starting call's random token."""

UPDATE_RPC_TIMEOUT = timedelta(seconds=30)
"""Deadline of a ``decide`` update (validator, handler and the audit write of a live worker)."""

_NO_ANSWER = (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED, RPCStatusCode.FAILED_PRECONDITION)
"""How a query that no worker answered ends: the client's deadline (the SDK reports ``CANCELLED``, "Timeout
expired", or ``DEADLINE_EXCEEDED``), or the server's "no poller seen for task queue recently"."""

Notify = Callable[[str], None]
"""Receives progress messages for the user (e.g. "waiting for a worker ..."), one line each."""


def _no_worker(task_queue: str) -> str:
    return (
        f"no worker is polling task queue {task_queue!r}, so the run cannot answer; start one (`tern up` for "
        "the embedded stack, or `tern worker`), or let `tern approve`/`reject` wait for it with --wait"
    )


FOLLOW_RPC_TIMEOUT = timedelta(seconds=90)
"""Deadline of one history long poll while following a run: longer than the server's long-poll interval (20 s by
default), after which it answers with no events and the follower polls again."""


def run_id_for(key: str) -> str:
    """The run id of the run a message starts: ``tern-run-m<24 hex of SHA-256(key)>`` (a deterministic id, so a
    retried message finds its run; the ``m`` marks message-started runs apart from ``tern-run-<12 hex>``)."""
    if not key:
        raise TernUserError("a message key is needed to start a run once per message")
    return f"tern-run-m{hashlib.sha256(key.encode()).hexdigest()[:24]}"


def progress_of_status(st: AgentRunStatus) -> RunProgress:
    """The :class:`RunProgress` equivalent of a ``status`` query answer (runs that publish no progress memo)."""
    event = "waiting" if st.pending is not None else ("step_started" if st.current_step else "started")
    return RunProgress(
        workflow_id=st.workflow_id,
        seq=1,
        event=event,
        state=st.state,
        user=st.user,
        query=clip_line(st.query),
        step_id=st.current_step,
        step_kind=st.current_kind,
        steps_done=st.steps_done,
        steps_total=st.steps_total,
        line=f"step {st.current_step} ({st.current_kind})" if st.current_step else "",
        pending=PendingSummary.of(st.pending) if st.pending is not None else None,
        updated_at=st.pending.requested_at if st.pending is not None else st.started_at,
    )


async def _memo_progress(wf: WorkflowExecution) -> RunProgress | None:
    """The progress memo of a listed or described run, or None when it has none."""
    value: RunProgress | None = await wf.memo_value(PROGRESS_MEMO, None, type_hint=RunProgress)
    return value


def _quote(value: str) -> str:
    """``value`` escaped for a double-quoted string of a visibility query."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


class TernClient:
    """Start and steer agent runs. Build with :meth:`connect`."""

    def __init__(self, client: Client, settings: TernSettings) -> None:
        self.client = client
        self.settings = settings

    @classmethod
    async def connect(cls, settings: TernSettings) -> TernClient:
        """Connect to Temporal. Raises :class:`TernUnavailable` with a hint when it cannot be reached or its
        connection settings (TLS files, profile, OTLP endpoint) are unusable, naming the setting."""
        from worker.telemetry import TelemetryConfigError

        try:
            client = await connect(settings)
        except (TemporalUnreachable, TelemetryConfigError) as exc:
            raise TernUnavailable(str(exc)) from exc
        return cls(client, settings)

    def service_signer(self, user: str, surface: str) -> Signer | None:
        """The signer of this process's service principal acting for ``user`` from ``surface`` (settings
        ``approval.service_name`` and ``approval.service_key_path``), or None when no service key is configured
        (starts and decisions then go unsigned: refused by a worker whose identity is proven)."""
        a = self.settings.approval
        if not a.service_name or a.service_key_path is None:
            return None
        return Signer(name=a.service_name, key=a.service_key_path, surface=surface, on_behalf_of=user)

    async def start_run(
        self,
        request: AgentRunRequest,
        workflow_id: str | None = None,
        signer: Signer | None = None,
        *,
        id_reuse_policy: WorkflowIDReusePolicy = WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        memo: Mapping[str, Any] | None = None,
    ) -> WorkflowHandle[Any, Any]:
        """Start ``AgentRunWorkflow``; returns its handle (``handle.id`` is the run id). With ``signer`` the start
        carries a proof of who starts it (required when the worker's ``approval.identity`` is ``proven``).
        ``id_reuse_policy``: Temporal's default (ALLOW_DUPLICATE: an id is refused only while its run is open);
        triggered starts pass REJECT_DUPLICATE so a deterministic id dedups after the first run closed too.
        ``memo``: the run's initial memo (None: none).

        Raises :class:`TernUserError` when the proof cannot be made (no key, ssh-keygen failed)."""
        workflow_id = workflow_id or f"tern-run-{uuid.uuid4().hex[:12]}"
        if signer is not None:
            try:
                request = request.model_copy(update={"proof": signer.start(workflow_id, request)})
            except ProofError as exc:
                raise TernUserError(f"cannot sign the start: {exc}") from exc
        return await self.client.start_workflow(
            AgentRunWorkflow.run,
            request,
            id=workflow_id,
            id_reuse_policy=id_reuse_policy,
            memo=dict(memo) if memo else None,
            **self._start_options(request),
        )

    async def start_new_with_progress(
        self,
        request: AgentRunRequest,
        workflow_id: str,
        signer: Signer | None = None,
        *,
        memo: Mapping[str, Any] | None = None,
        wait: timedelta = UPDATE_RPC_TIMEOUT,
    ) -> RunProgress | None:
        """Start ``request`` as ``workflow_id`` unless that id exists or existed, and get the run's first progress in
        the same round trip (Update-with-Start with the ``current_progress`` Update).

        Unlike :meth:`start_once` the conflict policy is FAIL (with id-reuse REJECT_DUPLICATE), so a caller that
        must tell a new run from a duplicate (the webhook's 202 or 200, its rate limit) learns it: an id that is
        open or closed raises ``WorkflowAlreadyStartedError`` and nothing starts (the SDK does not expose the start
        response's ``started`` flag for Update-with-Start, so USE_EXISTING could not tell). Each call has an Update
        id and a start token (memo ``tern_start_token``) of its own: when no worker answers within ``wait`` the run
        is described, and it is this call's only if it carries this call's token (an Update id shared with an
        earlier call would let the server attach to that call's pending Update instead of refusing the start).
        ``memo``: more of the run's initial memo. ``wait``: the RPC deadline for a worker's answer.

        Returns the first progress, or None when no worker answered within ``wait`` but this call started the run.
        Raises ``WorkflowAlreadyStartedError`` (a duplicate), :class:`TernUserError` when the proof cannot be made,
        :class:`TernUnavailable` when Temporal does not answer or the run cannot be confirmed started."""
        if signer is not None:
            try:
                request = request.model_copy(update={"proof": signer.start(workflow_id, request)})
            except ProofError as exc:
                raise TernUserError(f"cannot sign the start: {exc}") from exc
        token = uuid.uuid4().hex
        op = WithStartWorkflowOperation(
            AgentRunWorkflow.run,
            request,
            id=workflow_id,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            memo={**(memo or {}), START_TOKEN_MEMO: token},
            **self._start_options(request),
        )
        try:
            return await self.client.execute_update_with_start_workflow(
                AgentRunWorkflow.current_progress,
                start_workflow_operation=op,
                id=f"start-{token}",
                rpc_timeout=wait,
            )
        except WorkflowUpdateRPCTimeoutOrCancelledError:
            pass  # no worker answered in time: this call's start, someone else's, or none yet? the memo says
        except RPCError as exc:
            raise TernUnavailable(f"cannot start run {workflow_id}: {exc}") from exc
        try:
            desc = await self.client.get_workflow_handle(workflow_id).describe()
            theirs = await desc.memo_value(START_TOKEN_MEMO, None)
        except RPCError as exc:
            raise TernUnavailable(f"run {workflow_id} cannot be confirmed started: {exc}") from exc
        if theirs != token:
            raise WorkflowAlreadyStartedError(workflow_id, "AgentRunWorkflow", run_id=desc.run_id)
        return None

    def _start_options(self, request: AgentRunRequest) -> dict[str, Any]:
        """Task queue, priority (``starters.priorities.run_priority``), summary and initial search attributes of an
        agent run's start."""
        return {
            "task_queue": self.settings.temporal.task_queue,
            "priority": run_priority(request),
            "static_summary": f"{request.user}: {request.query[:180]}",
            "search_attributes": TypedSearchAttributes(
                [
                    SearchAttributePair(RUN_STATE, "running"),
                    SearchAttributePair(PENDING_APPROVAL, NO_APPROVAL),
                    SearchAttributePair(RUN_USER, request.user),
                ]
            ),
        }

    async def start_once(
        self, request: AgentRunRequest, key: str, signer: Signer | None = None
    ) -> tuple[str, RunProgress | None]:
        """Start ``AgentRunWorkflow`` for the message ``key`` (e.g. ``matrix:<room>:<event id>``) and get its first
        progress in the same round trip (Update-with-Start: the start and the ``current_progress`` Update travel in
        one ``ExecuteMultiOperation`` call). Returns ``(run id, progress)``.

        The run id and the Update id are derived from ``key`` (:func:`run_id_for`), so the same message delivered
        twice (a chat platform's retry, a webhook sent again) starts one run: the second call finds the run
        (``USE_EXISTING`` while it runs; ``REJECT_DUPLICATE`` once it closed) and gets the same Update's answer
        (Temporal deduplicates Updates by id). ``progress`` is None when no worker accepted the Update within
        ``UPDATE_RPC_TIMEOUT`` (the run is started all the same) or when the run had closed and the server no
        longer answers with the first Update's outcome (read it with :meth:`progress`).

        Raises :class:`TernUserError` when the proof cannot be made, :class:`TernUnavailable` when Temporal does
        not answer."""
        workflow_id = run_id_for(key)
        if signer is not None:
            try:
                request = request.model_copy(update={"proof": signer.start(workflow_id, request)})
            except ProofError as exc:
                raise TernUserError(f"cannot sign the start: {exc}") from exc
        op = WithStartWorkflowOperation(
            AgentRunWorkflow.run,
            request,
            id=workflow_id,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            **self._start_options(request),
        )
        try:
            first = await self.client.execute_update_with_start_workflow(
                AgentRunWorkflow.current_progress,
                start_workflow_operation=op,
                id=f"start-{workflow_id}",
                rpc_timeout=UPDATE_RPC_TIMEOUT,
            )
        except WorkflowAlreadyStartedError:
            return workflow_id, None  # the message's run ran and closed already: nothing new starts
        except WorkflowUpdateRPCTimeoutOrCancelledError:
            return workflow_id, None  # started; no worker accepted the Update yet
        except RPCError as exc:
            raise TernUnavailable(f"cannot start a run for {key!r}: {exc}") from exc
        return workflow_id, first

    async def ask(
        self,
        question: str,
        *,
        user: str,
        approvers: list[str] | None = None,
        plan_approval: bool | None = None,
        approval_timeout_s: float | None = None,
        context: str = "",
        channel_candidates: list[ChannelCandidate] | None = None,
        workflow_id: str | None = None,
        signer: Signer | None = None,
    ) -> WorkflowHandle[Any, Any]:
        """Start a run that plans ``question`` with the worker's LLM (``AgentRunWorkflow`` without a plan).

        Args:
            question: the operator's question, 1 to ``MAX_QUERY_CHARS`` (4,000) characters, not blank.
            user: the requesting user.
            approvers: narrow who may approve (the worker's policy decides).
            plan_approval: ask an approver for the plan before any step runs (None: ``settings.llm.plan_approval``;
                the worker's own ``plan_approval`` setting applies as well).
            approval_timeout_s: seconds a request waits (None: ``settings.approval.timeout_s``).
            context: the user's context for the planner (at most 4,000 characters).
            channel_candidates: channels proposed for the question (the channel finder's), if any.
            workflow_id: the workflow id (default ``tern-run-<12 hex>``).
            signer: proves who starts the run (see :meth:`start_run`).

        Raises :class:`TernUserError` for bad input or when no LLM is configured (``TERN_LLM__PROVIDER``) and
        :class:`TernUnavailable` when Temporal cannot be reached. Returns the run's handle.
        """
        req = self.question_request(
            question,
            user=user,
            approvers=approvers,
            plan_approval=plan_approval,
            approval_timeout_s=approval_timeout_s,
            context=context,
            channel_candidates=channel_candidates,
        )
        return await self.start_run(req, workflow_id, signer)

    def question_request(
        self,
        question: str,
        *,
        user: str,
        approvers: list[str] | None = None,
        plan_approval: bool | None = None,
        approval_timeout_s: float | None = None,
        context: str = "",
        channel_candidates: list[ChannelCandidate] | None = None,
    ) -> AgentRunRequest:
        """The ``AgentRunRequest`` of :meth:`ask` (arguments and errors as there), without starting it."""
        if not question.strip():
            raise TernUserError("the question is empty")
        if self.settings.llm.provider == "none":
            raise TernUserError(NO_LLM)
        s = self.settings
        return run_request(
            {"query": "the question", "user": "user", "approvers": "approvers", "context": "context"},
            user=user,
            query=question,
            approvers=approvers or [],
            approval_timeout_s=s.approval.timeout_s if approval_timeout_s is None else approval_timeout_s,
            python_approval_mode=s.approval.python_mode,
            plan_approval=s.llm.plan_approval if plan_approval is None else plan_approval,
            context=context,
            channel_candidates=channel_candidates or [],
        )

    async def _describe(self, workflow_id: str) -> tuple[WorkflowHandle[Any, Any], str]:
        """The run's handle and task queue. Raises :class:`TernUserError` for unknown ids."""
        handle, desc = await self._description(workflow_id)
        return handle, desc.task_queue

    async def _description(self, workflow_id: str) -> tuple[WorkflowHandle[Any, Any], WorkflowExecutionDescription]:
        """The run's handle and its DescribeWorkflowExecution answer. Raises :class:`TernUserError` for unknown
        ids, :class:`TernUnavailable` when Temporal does not answer."""
        handle: WorkflowHandle[Any, AgentRunResult] = self.client.get_workflow_handle(
            workflow_id, result_type=AgentRunResult
        )
        try:
            desc = await handle.describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise TernUserError(f"no run with id {workflow_id!r}") from exc
            raise TernUnavailable(f"cannot describe run {workflow_id}: {exc}") from exc
        return handle, desc

    async def _handle(self, workflow_id: str) -> WorkflowHandle[Any, Any]:
        return (await self._describe(workflow_id))[0]

    async def worker_polling(self, task_queue: str) -> bool:
        """Whether a worker polls ``task_queue`` for workflow tasks: DescribeTaskQueue's ``pollers`` list
        (Temporal API ``workflowservice.DescribeTaskQueue``) has one whose last poll began within
        ``POLLER_SEEN_S``. Raises :class:`TernUnavailable` when Temporal does not answer."""
        req = DescribeTaskQueueRequest(
            namespace=self.client.namespace,
            task_queue=TaskQueue(name=task_queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
        try:
            resp = await self.client.workflow_service.describe_task_queue(req, timeout=timedelta(seconds=10))
        except RPCError as exc:
            raise TernUnavailable(f"cannot describe task queue {task_queue!r}: {exc}") from exc
        now = time.time()
        return any(now - p.last_access_time.ToSeconds() <= POLLER_SEEN_S for p in resp.pollers)

    async def wait_for_worker(self, task_queue: str, *, wait: bool = False, notify: Notify | None = None) -> None:
        """Return once a worker polls ``task_queue``. Without ``wait`` give up after ``WORKER_WAIT_S`` seconds
        with :class:`TernUnavailable` naming the queue; with it wait as long as it takes, telling ``notify``
        once that it waits."""
        deadline = time.monotonic() + WORKER_WAIT_S
        told = False
        while not await self.worker_polling(task_queue):
            if not wait and time.monotonic() >= deadline:
                raise TernUnavailable(_no_worker(task_queue))
            if wait and not told and notify is not None:
                notify(
                    f"waiting for a worker to poll task queue {task_queue!r} (start one with `tern up` or "
                    "`tern worker`)"
                )
                told = True
            await asyncio.sleep(WORKER_POLL_INTERVAL_S)

    async def status(self, workflow_id: str, *, wait: bool = False, notify: Notify | None = None) -> AgentRunStatus:
        """The status of a run: its ``status`` query, which a worker answers; for an ``AgentRunWorkflow`` that
        completed, built from its result instead (:meth:`AgentRunStatus.of_result`: the same answer, without a worker
        replaying the whole history, so closed runs are answered while workers are down and many at once).

        Raises :class:`TernUserError` for unknown ids, :class:`TernUnavailable` when no worker polls the run's
        task queue (after ``WORKER_WAIT_S``, or the query's ``QUERY_RPC_TIMEOUT``); with ``wait``, waits for a
        worker instead (see :meth:`wait_for_worker`).
        """
        handle, desc = await self._description(workflow_id)
        if desc.status == ExecStatus.COMPLETED and desc.workflow_type == AgentRunWorkflow.__name__:
            return AgentRunStatus.of_result(await handle.result(), desc.start_time)
        task_queue = desc.task_queue
        while True:
            await self.wait_for_worker(task_queue, wait=wait, notify=notify)
            try:
                return await handle.query(AgentRunWorkflow.status, rpc_timeout=QUERY_RPC_TIMEOUT)
            except WorkflowQueryFailedError as exc:
                raise TernUnavailable(f"run {workflow_id} did not answer its status query: {exc}") from exc
            except RPCError as exc:
                if exc.status not in _NO_ANSWER:
                    raise TernUnavailable(f"run {workflow_id} did not answer its status query: {exc}") from exc
                if not wait:  # the worker died moments ago: its last poll still looks recent
                    raise TernUnavailable(
                        f"{_no_worker(task_queue)} (run {workflow_id} did not answer within "
                        f"{QUERY_RPC_TIMEOUT.total_seconds():g} s: {exc})"
                    ) from exc
                if notify is not None:
                    notify(f"run {workflow_id} did not answer; waiting for a worker on task queue {task_queue!r}")
                await asyncio.sleep(WORKER_POLL_INTERVAL_S)

    async def pending(self, workflow_id: str | None = None) -> list[RunProgress]:
        """Runs on the configured task queue (``temporal.task_queue``: this deployment's workers) or its long-work
        queue (python steps' children: :mod:`workflows.queues`) waiting for an
        approval decision, oldest request first (only the run ``workflow_id`` and its python steps, by
        ``RootWorkflowId``, when given): ONE visibility list call, each
        run's request read from its progress memo (:mod:`tern.models.progress`), so no worker is asked and a run
        whose worker is down is listed all the same.

        A run started before progress publishing (no memo) is asked by its ``status`` query instead; this raises
        :class:`TernUnavailable` when such a run's worker does not answer within ``QUERY_RPC_TIMEOUT``. Runs of other
        task queues (other deployments sharing the namespace) are not listed."""
        main = self.settings.temporal.task_queue
        queues = ", ".join(f'"{_quote(q)}"' for q in (main, long_queue(main)))  # python steps run on the long queue
        query = (
            f'ExecutionStatus = "Running" AND {PENDING_APPROVAL.name} != "{NO_APPROVAL}" AND TaskQueue IN ({queues})'
        )
        if workflow_id is not None:
            query += f' AND RootWorkflowId = "{_quote(workflow_id)}"'
        out: list[RunProgress] = []
        try:
            async for wf in self.client.list_workflows(query):
                if wf.status != ExecStatus.RUNNING:
                    continue
                p = await _memo_progress(wf)
                if p is None:
                    p = await self._legacy_pending(wf)
                if p is not None and p.pending is not None:
                    out.append(p)
        except RPCError as exc:
            raise TernUnavailable(f"cannot list the runs waiting for approval: {exc}") from exc
        return sorted(out, key=lambda p: p.pending.requested_at if p.pending else p.updated_at)

    async def _legacy_pending(self, wf: WorkflowExecution) -> RunProgress | None:
        """The pending request of a run started before progress publishing, by its ``status`` query."""
        try:
            st: AgentRunStatus = await self.client.get_workflow_handle(wf.id).query(
                AgentRunWorkflow.status, rpc_timeout=QUERY_RPC_TIMEOUT
            )
        except RPCError as exc:
            if exc.status in _NO_ANSWER:
                raise TernUnavailable(
                    f"{_no_worker(wf.task_queue)} (run {wf.id} did not answer within "
                    f"{QUERY_RPC_TIMEOUT.total_seconds():g} s: {exc})"
                ) from exc
            raise TernUnavailable(f"run {wf.id} did not answer its status query: {exc}") from exc
        return progress_of_status(st)

    async def progress(self, workflow_id: str) -> RunProgress | None:
        """The run's latest published progress (its memo, read by one DescribeWorkflowExecution; no worker asked),
        or None for a run that publishes none (started before ``progress-memo-1``). Raises
        :class:`TernUserError` for unknown ids, :class:`TernUnavailable` when Temporal does not answer."""
        _, desc = await self._description(workflow_id)
        return await _memo_progress(desc)

    async def follow(self, workflow_id: str) -> AsyncIterator[RunProgress]:
        """Yield the run's progress as it publishes it, each publication once, until the run closes.

        One DescribeWorkflowExecution for the progress so far, then a long poll on the run's history
        (``GetWorkflowExecutionHistory`` with ``wait_new_event``: the server answers when new events exist, or
        empty after its long-poll interval, ``frontend.longPollExpirationInterval``, 20 s by default); a
        publication is a ``WorkflowPropertiesModified`` event carrying the new memo, decoded here. So the calls
        grow with the run's events and idle long polls, never with a polling interval, and no worker replays the
        history. A run that publishes nothing (started before ``progress-memo-1``) yields nothing and the
        iterator ends when it closes.

        Raises :class:`TernUserError` for unknown ids, :class:`TernUnavailable` when Temporal does not answer.
        """
        _, desc = await self._description(workflow_id)
        last = await _memo_progress(desc)
        if last is not None:
            yield last
        events = self.client.get_workflow_handle(workflow_id, run_id=desc.run_id).fetch_history_events(
            wait_new_event=True, skip_archival=True, rpc_timeout=FOLLOW_RPC_TIMEOUT
        )
        converter = self.client.data_converter
        try:
            async for event in events:
                if event.event_type != EventType.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED:
                    continue
                fields = event.workflow_properties_modified_event_attributes.upserted_memo.fields
                if PROGRESS_MEMO not in fields:
                    continue
                [p] = await converter.decode([fields[PROGRESS_MEMO]], [RunProgress])
                if last is None or p.seq > last.seq:
                    last = p
                    yield p
        except RPCError as exc:
            raise TernUnavailable(f"cannot follow run {workflow_id}: {exc}") from exc

    async def waiting(self, workflow_id: str, *, wait: bool = False, notify: Notify | None = None) -> AgentRunStatus:
        """The status of whichever workflow of ``run_id`` waits for a decision: the run itself, or its running
        python step; the run's own status when nothing waits. ``wait``/``notify`` as for :meth:`status`."""
        st = await self.status(workflow_id, wait=wait, notify=notify)
        if st.pending is None and st.child_workflow_id:
            try:
                child = await self.status(st.child_workflow_id, wait=wait, notify=notify)
            except TernUserError:
                return st
            if child.pending is not None:
                return child
        return st

    async def decide(
        self,
        workflow_id: str,
        approver: str,
        approved: bool,
        comment: str = "",
        *,
        wait: bool = False,
        notify: Notify | None = None,
        surface: str = "cli",
        expected_request: str | None = None,
        signer: Signer | None = None,
    ) -> ApprovalRecord:
        """Approve or reject the pending request of ``run_id`` as ``approver``; returns the audited record.
        ``surface`` names the front end in the audit (``Decision.surface``; the ``tern`` CLI's by default).

        ``workflow_id`` may be an agent run whose python step (a child workflow) waits for a code approval. A worker
        must answer: when none polls the run's task queue this raises :class:`TernUnavailable` after a bounded
        wait (``WORKER_WAIT_S``, ``QUERY_RPC_TIMEOUT``) before anything is sent; with ``wait`` it waits for a
        worker, telling ``notify``. The update carries one id for all its attempts, so a retry after a lost
        answer cannot decide twice (Temporal deduplicates updates by id).

        ``expected_request``: the request id the approver read; the decision is refused (nothing sent) when another
        request is pending, so an approval never lands on a request nobody read.

        ``signer``: signs the decision (a statement naming the run, the request, the decision and the digest of the
        request as read here); the approver is then the signer's principal.

        Raises :class:`TernUserError` when the run is unknown, not waiting, the pending request is not
        ``expected_request``, or the gate refuses.
        """
        st = await self.waiting(workflow_id, wait=wait, notify=notify)
        workflow_id = st.workflow_id
        if st.pending is None:
            raise TernUserError(f"run {workflow_id} is not waiting for an approval (state: {st.state})")
        if expected_request is not None and st.pending.request_id != expected_request:
            raise TernUserError(
                f"run {workflow_id} now waits for request {st.pending.request_id} ({st.pending.summary}), not "
                f"{expected_request}: read it with `tern show {workflow_id}` before deciding"
            )
        # AgentRunWorkflow and PythonExecutionWorkflow share the `decide` update (name, argument, result).
        handle, task_queue = await self._describe(workflow_id)
        try:
            proof = signer.decide(workflow_id, st.pending, approved) if signer is not None else None
        except ProofError as exc:
            raise TernUserError(f"cannot sign the decision: {exc}") from exc
        try:
            decision = Decision(
                request_id=st.pending.request_id,
                approver=signer.principal if signer is not None else approver,
                approved=approved,
                comment=comment,
                surface=signer.surface if signer is not None else surface,
                proof=proof,
            )
        except ValidationError as exc:
            raise TernUserError(validation_message(exc, "decision")) from exc
        update_id = f"decide-{st.pending.request_id}-{uuid.uuid4().hex[:12]}"
        while True:
            try:
                return await handle.execute_update(
                    AgentRunWorkflow.decide, decision, id=update_id, rpc_timeout=UPDATE_RPC_TIMEOUT
                )
            except WorkflowUpdateFailedError as exc:
                raise TernUserError(f"decision refused: {exc.cause or exc}") from exc
            except WorkflowUpdateRPCTimeoutOrCancelledError as exc:
                if not wait:
                    raise TernUnavailable(
                        f"the decision was sent to run {workflow_id} but no worker confirmed it within "
                        f"{UPDATE_RPC_TIMEOUT.total_seconds():g} s; it may still take effect when a worker polls task "
                        f"queue {task_queue!r}: check with `tern show {workflow_id}` before deciding again"
                    ) from exc
                if notify is not None:
                    notify(
                        f"run {workflow_id} did not confirm the decision yet; waiting for a worker on task queue "
                        f"{task_queue!r}"
                    )
                await self.wait_for_worker(task_queue, wait=True, notify=notify)

    async def freeze_state(self) -> FreezeState:
        """The facility write freeze now (query ``state`` of the freeze workflow; not frozen when it was never
        started). Raises :class:`TernUnavailable` when Temporal or a worker does not answer."""
        handle = self.client.get_workflow_handle(self.settings.control.freeze_workflow_id)
        try:
            return await handle.query(FacilityFreezeWorkflow.state, rpc_timeout=QUERY_RPC_TIMEOUT)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return FreezeState()
            raise TernUnavailable(f"cannot read the write freeze: {exc}") from exc

    async def change_freeze(
        self, action: FreezeAction, by: str, reason: str, *, surface: str = "cli", signer: Signer | None = None
    ) -> FreezeState:
        """Freeze (``action`` ``freeze``) or thaw every control write in the namespace, as ``by`` for ``reason``;
        returns the new state. A freeze starts the freeze workflow when it does not exist (Update-with-Start, id
        ``control.freeze_workflow_id``, conflict policy USE_EXISTING: one workflow however many clients race). With
        ``signer`` the change carries a proof (required in proven identity); the recorded name is the signer's.

        Raises :class:`TernUserError` for a blank reason, a freeze while frozen, a thaw while not frozen, or a
        refused proof or permission (the reason says which); :class:`TernUnavailable` when no worker answers."""
        change_id = f"{action}-{uuid.uuid4().hex[:16]}"
        freeze_id = self.settings.control.freeze_workflow_id
        try:
            change = FreezeChange(
                action=action,
                by=signer.principal if signer is not None else by,
                reason=reason,
                change_id=change_id,
                surface=signer.surface if signer is not None else surface,
            )
            if signer is not None:
                change.proof = signer.freeze_change(freeze_id, change_id, action, change_digest(change))
        except ValidationError as exc:
            raise TernUserError(validation_message(exc, action)) from exc
        except ProofError as exc:
            raise TernUserError(f"cannot sign the {action}: {exc}") from exc
        method = FacilityFreezeWorkflow.freeze if action == "freeze" else FacilityFreezeWorkflow.thaw
        try:
            if action == "freeze":
                start = WithStartWorkflowOperation(
                    FacilityFreezeWorkflow.run,
                    None,
                    id=freeze_id,
                    task_queue=self.settings.temporal.task_queue,
                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                    static_summary="facility write freeze (tern freeze / tern thaw)",
                )
                return await self.client.execute_update_with_start_workflow(
                    method, change, start_workflow_operation=start, id=change_id, rpc_timeout=UPDATE_RPC_TIMEOUT
                )
            handle = self.client.get_workflow_handle(freeze_id)
            return await handle.execute_update(method, change, id=change_id, rpc_timeout=UPDATE_RPC_TIMEOUT)
        except WorkflowUpdateFailedError as exc:
            raise TernUserError(f"{action} refused: {exc.cause or exc}") from exc
        except WorkflowUpdateRPCTimeoutOrCancelledError as exc:
            raise TernUnavailable(
                f"no worker confirmed the {action} within {UPDATE_RPC_TIMEOUT.total_seconds():g} s; it may still "
                "take effect: check with `tern freeze --status`"
            ) from exc
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise TernUserError("not frozen: nothing to thaw") from exc
            raise TernUnavailable(f"cannot {action}: {exc}") from exc

    async def result(self, workflow_id: str) -> AgentRunResult:
        """Wait for and return the run's result. Raises :class:`TernUserError` for unknown ids."""
        handle = await self._handle(workflow_id)
        try:
            return await handle.result()
        except WorkflowFailureError as exc:
            raise TernUnavailable(f"run {workflow_id} failed: {exc.cause or exc}") from exc

    async def is_closed(self, workflow_id: str) -> bool:
        desc = await (await self._handle(workflow_id)).describe()
        return desc.status != ExecStatus.RUNNING
