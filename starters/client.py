"""The Python client API for starting and steering agent runs (the CLI and chat-bot bridges use it).

Errors a user can fix are :class:`TernUserError` (exit status 2 in the CLI); an unreachable service is
:class:`TernUnavailable` (exit status 1).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
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
from tern.models.limits import MAX_PLAN_BYTES, MAX_PLAN_DEPTH, MAX_PLAN_NODES
from tern.models.plan import STEP_KINDS
from workflows.agent_run import AgentRunWorkflow
from workflows.search_attributes import NO_APPROVAL, PENDING_APPROVAL, RUN_STATUS, RUN_USER


class TernUserError(ValueError):
    """Bad input: a malformed plan, an unknown channel or run, a decision for a run that is not waiting."""


class TernUnavailable(RuntimeError):
    """A service (Temporal, PostgreSQL) cannot be reached; the message says which and how to start it."""


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _validation_message(exc: ValidationError, source: str, labels: Mapping[str, str] | None = None) -> str:
    """One line naming each bad field (the first five) and pydantic's message, which states the limit.

    ``labels`` maps a top-level field name to what the user typed (e.g. ``approvers`` -> ``--approver``).
    """
    parts = []
    for err in exc.errors()[:5]:
        loc = [p for p in err["loc"] if not isinstance(p, str) or p not in STEP_KINDS]
        if labels and loc and str(loc[0]) in labels:
            loc = [labels[str(loc[0])]]
        where = ".".join(_clip(str(p)) for p in loc)
        part = f"{where or '(top level)'}: {err['msg']}"
        if part not in parts:
            parts.append(part)
    text = "; ".join(parts)
    return f"{source}: {text}" if source else text


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _plan_shape_error(raw: Any) -> str | None:
    """Why ``raw`` (a parsed plan file) is nested too deeply or too big, or None. Iterative: YAML aliases can
    make a structure that refers to itself, and recursion is what this check guards against."""
    stack: list[tuple[Any, int]] = [(raw, 1)]
    nodes = 0
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if nodes > MAX_PLAN_NODES:
            return f"more than {MAX_PLAN_NODES} values (limit MAX_PLAN_NODES; YAML aliases count each use)"
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list | tuple) else ()
        for child in children:
            if isinstance(child, dict | list | tuple):
                if depth + 1 > MAX_PLAN_DEPTH:
                    return f"nested deeper than {MAX_PLAN_DEPTH} levels (limit MAX_PLAN_DEPTH)"
                stack.append((child, depth + 1))
            else:
                nodes += 1
    return None


def load_plan(path: Path) -> Plan:
    """Read a plan from a JSON or YAML (``.yaml``/``.yml``) file, UTF-8.

    Refuses, with :class:`TernUserError` naming the file, the field and the limit: a file over
    ``MAX_PLAN_BYTES``, text that is not UTF-8, JSON or YAML that does not parse, nesting deeper than
    ``MAX_PLAN_DEPTH`` or more than ``MAX_PLAN_NODES`` values, integers with more digits than Python converts
    (4300, ``sys.int_info.default_max_str_digits``), and anything :class:`Plan` refuses. Never raises another
    exception for the file's content.
    """
    path = Path(path)
    kind = "YAML" if path.suffix in (".yaml", ".yml") else "JSON"
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_PLAN_BYTES + 1)
    except FileNotFoundError as exc:
        raise TernUserError(f"plan file not found: {path}") from exc
    except OSError as exc:
        raise TernUserError(f"cannot read plan file {path}: {_one_line(str(exc))}") from exc
    if len(data) > MAX_PLAN_BYTES:
        raise TernUserError(f"plan file {path}: larger than {MAX_PLAN_BYTES} bytes (limit MAX_PLAN_BYTES)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TernUserError(f"plan file {path} is not UTF-8 text: byte 0x{data[exc.start]:02x} at offset "
                            f"{exc.start} ({exc.reason})") from exc
    try:
        raw: Any = yaml.safe_load(text) if kind == "YAML" else json.loads(text)
    except RecursionError as exc:
        raise TernUserError(f"plan file {path}: nested deeper than {MAX_PLAN_DEPTH} levels "
                            "(limit MAX_PLAN_DEPTH)") from exc
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise TernUserError(f"plan file {path} is not valid {kind}: {_clip(_one_line(str(exc)), 300)}") from exc
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise TernUserError(f"plan file {path} has a value Python cannot read: {str(exc).split(';')[0]}"
                            ) from exc
    if not isinstance(raw, dict):
        raise TernUserError(f"{path}: a plan is an object with a 'steps' list")
    shape = _plan_shape_error(raw)
    if shape:
        raise TernUserError(f"plan file {path}: {shape}")
    try:
        return Plan.model_validate(raw)
    except ValidationError as exc:
        raise TernUserError(_validation_message(exc, str(path))) from exc


def run_request(labels: Mapping[str, str] | None = None, **fields: Any) -> AgentRunRequest:
    """``AgentRunRequest(**fields)``, or :class:`TernUserError` with one line naming each bad field (by
    ``labels[field]`` when given, e.g. ``{"user": "--user"}``) and its limit (``tern.models.limits``)."""
    try:
        return AgentRunRequest(**fields)
    except ValidationError as exc:
        raise TernUserError(_validation_message(exc, "", labels)) from exc


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

    async def decide(self, run_id: str, approver: str, approved: bool, comment: str = "") -> ApprovalRecord:
        """Approve or reject the pending request of ``run_id`` as ``approver``; returns the audited record.

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
                Decision(request_id=st.pending.request_id, approver=approver, approved=approved, comment=comment))
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
