"""Audit events: who decided or wrote what, when and why."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from tern.models.ids import WorkflowId

AuditKind = Literal[
    "approval_requested",
    "decision",
    "decision_ignored",
    "decision_refused",
    "approval_timed_out",
    "approval_cancelled",
    "approval_refused",
    "approval_policy",
    "write",
    "write_refused",
    "memory_added",
    "memory_deleted",
    "run_triggered",  # a trigger started this run: trigger name and event in details (tern trigger)
    "run_started",  # a proven start: who started the run and the proof's details (tern.identity)
    "start_refused",  # a start whose proof of identity did not verify: the reason in comment
    "chat_decision",  # a decision attempt from a chat bridge, with the platform identity (tern/chat/bridge.py)
    "trigger_refused",  # a validly signed POST /triggers/{name} that was refused (starters/triggers_api.py)
    "bluesky_refused",  # a bluesky_plan step the queue server does not allow, refused before approval
    "bluesky_plan",  # a bluesky_plan step ran: queue item, exit status and run uids in details
    "effect_unexpected",  # a magnet write's measured effect far from the predicted one (tern.ring); inverse proposed
    "python_cancelled",  # a python step's child workflow cancelled by its run, or by its run closing
    "facility_frozen",  # tern freeze: every control write held (run id tern-facility-freeze)
    "facility_thawed",  # tern thaw: held writes released
    "freeze_refused",  # a freeze or thaw whose proof or permission failed
    "write_held",  # a write reached while frozen waits (under its run's id)
    "write_released",  # a held write goes on after the thaw (under its run's id)
]


class AuditEvent(BaseModel):
    """One row of the ``audit_events`` table. ``event_key`` makes recording idempotent (retries, replays)."""

    event_kind: AuditKind
    workflow_id: WorkflowId
    event_key: str = Field(min_length=1)
    step_id: str | None = None
    request_id: str | None = None
    actor: str | None = None
    decision: str | None = None
    channel: str | None = None
    previous_value: float | None = None
    value: float | None = None
    readback: float | None = None
    verified: bool | None = None
    comment: str = ""
    details: dict[str, Any] = {}
