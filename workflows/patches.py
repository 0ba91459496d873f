"""Every ``workflow.patched`` id in Tern's workflows, for ``tern patches`` and the retirement path
(docs/how-to/upgrade-workers.md, "Retiring a patch"). Add a patch here when you add one; the test
``tests/test_patches.py`` checks that every id the workflow sources pass to ``patched`` or ``deprecate_patch`` is
listed with the right state.
"""

from __future__ import annotations

from typing import Literal

from workflows.agent_run import PLANNER_MEMORY_PATCH, TRIGGER_AUDIT_PATCH
from workflows.approval_gate import CANCEL_STATE_PATCH, NOTIFY_PATCH, POLICY_PATCH, REQUEST_CANCEL_PATCH
from workflows.planning import PLAN_APPROVAL_EFFECT_PATCH, PLANNER_PATCH
from workflows.progress import PROGRESS_PATCH
from workflows.python_execution import CANCEL_AUDIT_PATCH
from workflows.run_base import IDENTITY_PATCH
from workflows.run_publish import LOGBOOK_PUBLISH_PATCH, MEMORY_CONTEXT_PATCH
from workflows.run_python import DERIVED_WRITE_ID_PATCH, LONG_QUEUE_PATCH
from workflows.run_writes import FREEZE_PATCH, INVERSE_PATCH, PLAN_EFFECT_PATCH, RING_PATCH

PatchState = Literal["patched", "deprecated"]

PATCHES: dict[str, PatchState] = {
    POLICY_PATCH: "patched",
    NOTIFY_PATCH: "patched",
    CANCEL_STATE_PATCH: "patched",
    REQUEST_CANCEL_PATCH: "patched",
    PLANNER_PATCH: "patched",
    PLANNER_MEMORY_PATCH: "patched",
    TRIGGER_AUDIT_PATCH: "patched",
    IDENTITY_PATCH: "patched",
    MEMORY_CONTEXT_PATCH: "patched",
    LOGBOOK_PUBLISH_PATCH: "deprecated",
    DERIVED_WRITE_ID_PATCH: "patched",
    LONG_QUEUE_PATCH: "patched",
    CANCEL_AUDIT_PATCH: "patched",
    FREEZE_PATCH: "patched",
    RING_PATCH: "patched",
    PROGRESS_PATCH: "patched",
    PLAN_EFFECT_PATCH: "patched",
    PLAN_APPROVAL_EFFECT_PATCH: "patched",
    INVERSE_PATCH: "patched",
}
"""Patch id -> how the code asks for it: ``patched`` (an old branch remains) or ``deprecated``
(``workflow.deprecate_patch``: remove once no open run carries the marker)."""

PER_STEP_FAMILIES = (POLICY_PATCH, NOTIFY_PATCH)
"""Patches also asked per approval request as ``<id>:<step id>`` (``workflows/approval_gate.py``)."""


def family(change_id: str) -> str:
    """The patch a recorded ``TemporalChangeVersion`` value belongs to: ``approval-policy-1:write`` ->
    ``approval-policy-1``; any other value is its own."""
    base, sep, _ = change_id.partition(":")
    return base if sep and base in PER_STEP_FAMILIES else change_id
