"""The Python client API for starting and steering agent runs (the CLI and chat-bot bridges use it).

Errors a user can fix are :class:`TernUserError` (exit status 2 in the CLI); an unreachable service is
:class:`TernUnavailable` (exit status 1).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from temporalio.client import (
    Client,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.client import (
    WorkflowExecutionStatus as ExecStatus,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode

from tern.config import TernSettings
from tern.control.limits import LimitsDatabase, LimitsDatabaseError
from tern.models import (
    AgentRunRequest,
    AgentRunResult,
    AgentRunStatus,
    ApprovalRecord,
    ChannelReadStep,
    ControlWriteStep,
    Decision,
    Plan,
)
from tern.models.plan import STEP_KINDS
from workflows.agent_run import AgentRunWorkflow
from workflows.search_attributes import NO_APPROVAL, PENDING_APPROVAL, RUN_STATUS, RUN_USER


class TernUserError(ValueError):
    """Bad input: a malformed plan, an unknown channel or run, a decision for a run that is not waiting."""


class TernUnavailable(RuntimeError):
    """A service (Temporal, PostgreSQL) cannot be reached; the message says which and how to start it."""


def _validation_message(exc: ValidationError, source: str) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"] if not isinstance(p, str) or p not in STEP_KINDS)
        parts.append(f"{loc or '(top level)'}: {err['msg']}")
    return f"{source}: " + "; ".join(parts)


def load_plan(path: Path) -> Plan:
    """Read a plan from a JSON or YAML file. Raises :class:`TernUserError` naming what is wrong."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError as exc:
        raise TernUserError(f"plan file not found: {path}") from exc
    except OSError as exc:
        raise TernUserError(f"cannot read plan file {path}: {exc}") from exc
    try:
        raw: Any = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise TernUserError(f"plan file {path} is not valid {'YAML' if path.suffix in ('.yaml', '.yml') else 'JSON'}: "
                            f"{exc}") from exc
    if not isinstance(raw, dict):
        raise TernUserError(f"{path}: a plan is an object with a 'steps' list")
    try:
        return Plan.model_validate(raw)
    except ValidationError as exc:
        raise TernUserError(_validation_message(exc, str(path))) from exc


def check_plan_channels(plan: Plan, settings: TernSettings) -> None:
    """Refuse plans naming channels the limits database does not know (unless unlisted channels are allowed).

    Limit violations of known channels are left to the run, which refuses and audits them before any approval.
    """
    if settings.allow_unlisted_channels:
        return
    try:
        limits = LimitsDatabase.load(settings.limits_path)
    except LimitsDatabaseError as exc:
        raise TernUserError(f"cannot check channels: {exc}") from exc
    unknown: list[str] = []
    for step in plan.steps:
        names = step.channels if isinstance(step, ChannelReadStep) else (
            [step.channel] if isinstance(step, ControlWriteStep) else [])
        unknown += [f"{n} (step {step.id})" for n in names if n not in limits]
    if unknown:
        raise TernUserError("unknown channel(s), not in the limits database "
                            f"{settings.limits_path}: {', '.join(unknown)}")


class TernClient:
    """Start and steer agent runs. Build with :meth:`connect`."""

    def __init__(self, client: Client, settings: TernSettings) -> None:
        self.client = client
        self.settings = settings

    @classmethod
    async def connect(cls, settings: TernSettings) -> TernClient:
        """Connect to Temporal. Raises :class:`TernUnavailable` with a hint when it cannot be reached."""
        try:
            client = await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace,
                                          data_converter=pydantic_data_converter)
        except Exception as exc:
            raise TernUnavailable(f"cannot reach Temporal at {settings.temporal_address}: {exc}. "
                                  "Start the embedded stack with `tern up`, or set TERN_TEMPORAL_ADDRESS.") from exc
        return cls(client, settings)

    async def start_run(self, request: AgentRunRequest, run_id: str | None = None) -> WorkflowHandle[Any, Any]:
        """Start ``AgentRunWorkflow``; returns its handle (``handle.id`` is the run id)."""
        run_id = run_id or f"tern-run-{uuid.uuid4().hex[:12]}"
        return await self.client.start_workflow(
            AgentRunWorkflow.run, request, id=run_id, task_queue=self.settings.task_queue,
            static_summary=f"{request.user}: {request.query[:180]}",
            search_attributes=TypedSearchAttributes([
                SearchAttributePair(RUN_STATUS, "running"), SearchAttributePair(PENDING_APPROVAL, NO_APPROVAL),
                SearchAttributePair(RUN_USER, request.user)]),
        )

    async def _handle(self, run_id: str) -> WorkflowHandle[Any, Any]:
        handle = self.client.get_workflow_handle_for(AgentRunWorkflow.run, run_id)
        try:
            await handle.describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise TernUserError(f"no run with id {run_id!r}") from exc
            raise TernUnavailable(f"cannot describe run {run_id}: {exc}") from exc
        return handle

    async def status(self, run_id: str) -> AgentRunStatus:
        """The live status of a run (its ``status`` query). Raises :class:`TernUserError` for unknown ids."""
        handle = await self._handle(run_id)
        try:
            return await handle.query(AgentRunWorkflow.status)
        except WorkflowQueryFailedError as exc:
            raise TernUnavailable(f"run {run_id} did not answer its status query: {exc}") from exc

    async def pending(self) -> list[AgentRunStatus]:
        """Runs waiting for an approval decision, oldest first."""
        query = f'ExecutionStatus = "Running" AND {PENDING_APPROVAL.name} != "{NO_APPROVAL}"'
        out: list[AgentRunStatus] = []
        async for wf in self.client.list_workflows(query):
            if wf.status != ExecStatus.RUNNING:
                continue
            st = await self.client.get_workflow_handle(wf.id).query(AgentRunWorkflow.status)
            if st.pending is not None:
                out.append(st)
        return sorted(out, key=lambda s: s.pending.requested_at if s.pending else s.started_at)  # type: ignore[arg-type,return-value]

    async def waiting(self, run_id: str) -> AgentRunStatus:
        """The status of whichever workflow of ``run_id`` waits for a decision: the run itself, or its running
        python step; the run's own status when nothing waits."""
        st = await self.status(run_id)
        if st.pending is None and st.child_run_id:
            try:
                child = await self.status(st.child_run_id)
            except TernUserError:
                return st
            if child.pending is not None:
                return child
        return st

    async def decide(self, run_id: str, approver: str, approved: bool, comment: str = "",
                     surface: str = "cli") -> ApprovalRecord:
        """Approve or reject the pending request of ``run_id`` as ``approver``; returns the audited record.
        ``surface`` names the front end in the audit (``Decision.surface``; the ``tern`` CLI's by default).

        ``run_id`` may be an agent run whose python step (a child workflow) waits for a code approval.

        Raises :class:`TernUserError` when the run is unknown, not waiting, or the validator refuses.
        """
        st = await self.waiting(run_id)
        run_id = st.run_id
        if st.pending is None:
            raise TernUserError(f"run {run_id} is not waiting for an approval (state: {st.state})")
        # AgentRunWorkflow and PythonExecutionWorkflow share the `decide` update (name, argument, result).
        handle = await self._handle(run_id)
        try:
            return await handle.execute_update(
                AgentRunWorkflow.decide,
                Decision(request_id=st.pending.request_id, approver=approver, approved=approved, comment=comment,
                         surface=surface))
        except WorkflowUpdateFailedError as exc:
            raise TernUserError(f"decision refused: {exc.cause or exc}") from exc
        except ValidationError as exc:
            raise TernUserError(_validation_message(exc, "decision")) from exc

    async def result(self, run_id: str) -> AgentRunResult:
        """Wait for and return the run's result. Raises :class:`TernUserError` for unknown ids."""
        handle = await self._handle(run_id)
        try:
            return await handle.result()
        except WorkflowFailureError as exc:
            raise TernUnavailable(f"run {run_id} failed: {exc.cause or exc}") from exc

    async def is_closed(self, run_id: str) -> bool:
        desc = await (await self._handle(run_id)).describe()
        return desc.status != ExecStatus.RUNNING
