"""Replay the recorded history of a demo run against the current workflow code (determinism guard).

When a change to ``AgentRunWorkflow`` breaks this test, the change is not replay-safe for runs already in
flight: use ``workflow.patched`` or a new workflow type, or (before any deployment) record a new history with
``tern demo --auto-approve`` followed by ``tern export-history RUN_ID --out tests/histories/demo_run.json``
and ``tern export-history RUN_ID.analyse --out tests/histories/demo_python_step.json``. The ``*_notify.json``
histories were recorded the same way after the ``notify-approvers-1`` patch (issue 9).
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workflows.agent_run import AgentRunWorkflow
from workflows.logbook_ingestion import LogbookIngestionWorkflow
from workflows.logbook_reembed import LogbookReembedWorkflow
from workflows.python_execution import PythonExecutionWorkflow

HISTORIES = Path(__file__).parent / "histories"
HISTORY = HISTORIES / "demo_run.json"


async def test_recorded_demo_run_replays() -> None:
    events = json.loads(HISTORY.read_text())["events"]
    child = next(e for e in events if e["eventType"] == "EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED")
    run_id = child["startChildWorkflowExecutionInitiatedEventAttributes"]["workflowId"].rsplit(".", 1)[0]
    history = WorkflowHistory.from_json(run_id, HISTORY.read_text())  # child ids derive from the run id
    kinds = {e["eventType"] for e in events}
    assert "EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED" in kinds  # the approval went through the Update
    assert "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED" in kinds
    assert "EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED" in kinds  # the python step
    replayer = Replayer(workflows=[AgentRunWorkflow], data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None


async def test_recorded_demo_python_step_replays() -> None:
    text = (HISTORIES / "demo_python_step.json").read_text()
    kinds = {e["eventType"] for e in json.loads(text)["events"]}
    assert "EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED" in kinds  # the code approval
    replayer = Replayer(workflows=[PythonExecutionWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(WorkflowHistory.from_json("demo-python-step", text), raise_on_replay_failure=True)


async def test_run_started_without_a_plan_before_the_planner_replays() -> None:
    """Recorded on the code before the planner (it failed with NoPlan); the planner is behind
    ``workflow.patched("llm-planner")`` so this history still replays."""
    text = (HISTORIES / "no_plan_run.json").read_text()
    kinds = [e["eventType"] for e in json.loads(text)["events"]]
    assert kinds[-1] == "EVENT_TYPE_WORKFLOW_EXECUTION_FAILED" and "EVENT_TYPE_MARKER_RECORDED" not in kinds
    replayer = Replayer(workflows=[AgentRunWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(WorkflowHistory.from_json("no-plan-run", text), raise_on_replay_failure=True)


async def test_recorded_archiver_and_memory_run_replays() -> None:
    """A run with a gather step (logbook, channel and archiver sources), a memory note through the approval gate,
    a recall, an archiver_read whose series a python step loads, and the answer with the user's notes (issue 11;
    recorded on the dev server by a one-off test like tests/archiver/test_gather.py)."""
    text = (HISTORIES / "archiver_memory_run.json").read_text()
    events = json.loads(text)["events"]
    child = next(e for e in events if e["eventType"] == "EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED")
    run_id = child["startChildWorkflowExecutionInitiatedEventAttributes"]["workflowId"].rsplit(".", 1)[0]
    activities = {
        e["activityTaskScheduledEventAttributes"]["activityType"]["name"]
        for e in events
        if e["eventType"] == "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED"
    }
    assert {"read_archiver", "memory_policy", "remember", "recall", "search_logbook", "read_channels"} <= activities
    replayer = Replayer(workflows=[AgentRunWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(WorkflowHistory.from_json(run_id, text), raise_on_replay_failure=True)


async def test_recorded_runs_with_chat_notification_replay() -> None:
    """Histories recorded after the ApprovalGate began running ``notify_approvers`` (patch ``notify-approvers-1``,
    issue 9): a demo run and its python step, each with the activity scheduled after its approval request."""
    for name, workflow_cls, wid in (
        ("demo_run_notify.json", AgentRunWorkflow, None),
        ("demo_python_step_notify.json", PythonExecutionWorkflow, "demo-python-step"),
    ):
        text = (HISTORIES / name).read_text()
        events = json.loads(text)["events"]
        scheduled = [
            e["activityTaskScheduledEventAttributes"]["activityType"]["name"]
            for e in events
            if e["eventType"] == "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED"
        ]
        assert "notify_approvers" in scheduled, name
        if wid is None:
            child = next(e for e in events if e["eventType"] == "EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED")
            wid = child["startChildWorkflowExecutionInitiatedEventAttributes"]["workflowId"].rsplit(".", 1)[0]
        replayer = Replayer(workflows=[workflow_cls], data_converter=pydantic_data_converter)
        await replayer.replay_workflow(WorkflowHistory.from_json(wid, text), raise_on_replay_failure=True)


def _patch_ids(events: list[dict]) -> list[str]:
    """The ids of the ``workflow.patched`` markers in a history."""
    return [
        json.loads(base64.b64decode(p["data"]))["id"]
        for e in events
        if e["eventType"] == "EVENT_TYPE_MARKER_RECORDED"
        for p in e["markerRecordedEventAttributes"]["details"].get("patch-data", {}).get("payloads", [])
    ]


async def test_run_whose_python_step_proposed_a_write_before_derived_ids_replays() -> None:
    """Recorded before ``derived-write-id-1`` (on the time-skipping server, with the stand-ins of
    tests/test_workflows_fast.py): python step ``calc`` proposed a write, which ran as step ``calc-write-1``
    (approved, written). The new code asks ``workflow.patched`` only when a python step proposes writes, and a
    history without the marker keeps the old id; this replays it, so the call is placed where it is safe."""
    text = (HISTORIES / "proposed_write_legacy_id.json").read_text()
    events = json.loads(text)["events"]
    assert "derived-write-id-1" not in _patch_ids(events) and "approval-policy-1" in _patch_ids(events)
    payloads = [base64.b64decode(m) for m in re.findall(r'"data": "([A-Za-z0-9+/=]+)"', text)]
    assert any(b'"step_id":"calc-write-1"' in p for p in payloads)  # the legacy id is what ran
    replayer = Replayer(workflows=[AgentRunWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(WorkflowHistory.from_json("fast-08f1c55b08", text), raise_on_replay_failure=True)


async def test_recorded_channel_triggered_run_replays() -> None:
    """A run a channel trigger started (recorded by tests/test_trigger_channel.py's crossing test after the
    ``trigger-audit-1`` patch): its input carries the trigger, its first activity is the ``run_triggered`` audit
    record behind the patch marker."""
    text = (HISTORIES / "trigger_channel_run.json").read_text()
    events = json.loads(text)["events"]
    assert any(e["eventType"] == "EVENT_TYPE_MARKER_RECORDED" for e in events)
    history = WorkflowHistory.from_json("trigger-recorded", text)
    replayer = Replayer(workflows=[AgentRunWorkflow], data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None


def _kinds(events: list[dict]) -> list[str]:
    return [e["eventType"].removeprefix("EVENT_TYPE_") for e in events]


def _scheduled(events: list[dict]) -> list[str]:
    return [
        e["activityTaskScheduledEventAttributes"]["activityType"]["name"]
        for e in events
        if e["eventType"] == "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED"
    ]


_CLOSED = {"WORKFLOW_EXECUTION_COMPLETED", "WORKFLOW_EXECUTION_FAILED", "WORKFLOW_EXECUTION_CANCELED"}

# Recorded by `python -m tests.record_histories` (issue 26 finding 4): what each history must show, so a
# re-recording that lost the case fails here rather than silently replaying something easier.
ISSUE_26_CASES = {
    "wait_mid_approval.json": lambda ev: (
        "TIMER_STARTED" in _kinds(ev) and "TIMER_FIRED" not in _kinds(ev) and not _CLOSED & set(_kinds(ev))
    ),
    "refused_update_then_signal.json": lambda ev: (
        any(
            e["eventType"] == "EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED"
            and "failure" in e["workflowExecutionUpdateCompletedEventAttributes"]["outcome"]
            for e in ev
        )
        and "WORKFLOW_EXECUTION_SIGNALED" in _kinds(ev)
        and _kinds(ev)[-1] == "WORKFLOW_EXECUTION_COMPLETED"
        and "write_channel" in _scheduled(ev)
    ),
    "partial_multi_approval.json": lambda ev: (
        _kinds(ev).count("WORKFLOW_EXECUTION_UPDATE_ACCEPTED") == 1
        and "write_channel" not in _scheduled(ev)
        and not _CLOSED & set(_kinds(ev))
    ),
    "cancelled_wait.json": lambda ev: (
        "WORKFLOW_EXECUTION_CANCEL_REQUESTED" in _kinds(ev)
        and _kinds(ev)[-1] == "WORKFLOW_EXECUTION_CANCELED"
        and "cancel-state-1" in _patch_ids(ev)
    ),
    "frozen_write.json": lambda ev: (
        "facility-freeze-1" in _patch_ids(ev)
        and _scheduled(ev).count("hold_write") == 2  # frozen, then (after the signal) not frozen
        and "WORKFLOW_EXECUTION_SIGNALED" in _kinds(ev)
        and _kinds(ev)[-1] == "WORKFLOW_EXECUTION_COMPLETED"
    ),
    "planned_run.json": lambda ev: (  # no plan in the request: drafted, approved (kind plan), then the write
        {"llm-planner", "planner-memory-1"} <= set(_patch_ids(ev))
        and _scheduled(ev).index("plan") < _scheduled(ev).index("write_channel")
        and _kinds(ev).count("WORKFLOW_EXECUTION_UPDATE_ACCEPTED") == 2
        and _kinds(ev)[-1] == "WORKFLOW_EXECUTION_COMPLETED"
    ),
    "approval_timer_fired.json": lambda ev: (
        "TIMER_FIRED" in _kinds(ev)
        and "write_channel" not in _scheduled(ev)
        and "WORKFLOW_EXECUTION_COMPLETED" in _kinds(ev)
    ),
}


@pytest.mark.parametrize("name", sorted(ISSUE_26_CASES))
async def test_issue_26_histories_show_their_case_and_replay(name: str) -> None:
    """Histories of the cases every deploy meets (issue 26 finding 4): runs stopped mid-wait (a plain wait, a
    partial multi-approval), a refused Update then a Signal decision, a cancellation during the wait, a write held
    by the facility freeze and released by its Signal, a fired approval timer, and a planned run (the plan
    approved, then its write)."""
    text = (HISTORIES / name).read_text()
    events = json.loads(text)["events"]
    assert ISSUE_26_CASES[name](events), name
    replayer = Replayer(workflows=[AgentRunWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(WorkflowHistory.from_json(name, text), raise_on_replay_failure=True)


@pytest.mark.parametrize(
    ("name", "workflow", "activity", "calls"),
    [
        ("ingestion_continued.json", LogbookIngestionWorkflow, "ariel_ingest_page", 2),
        ("reembed_continued.json", LogbookReembedWorkflow, "ariel_reembed", 2),
    ],
)
async def test_a_continued_as_new_ingestion_or_reembed_run_replays(
    name: str, workflow: type, activity: str, calls: int
) -> None:
    """The first run of an ingestion and of a re-embedding (recorded by ``tests.record_histories``): it did its
    ``pages_per_run``/``steps_per_run`` calls and continued as new, the history a deploy replays when it lands
    mid-source; the carried state is in the continue-as-new event, so a change to what is carried shows here."""
    text = (HISTORIES / name).read_text()
    events = json.loads(text)["events"]
    assert _kinds(events)[-1] == "WORKFLOW_EXECUTION_CONTINUED_AS_NEW", name
    assert _scheduled(events).count(activity) == calls, _scheduled(events)
    replayer = Replayer(workflows=[workflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(WorkflowHistory.from_json(name, text), raise_on_replay_failure=True)
