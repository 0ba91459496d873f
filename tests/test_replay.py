"""Replay the recorded history of a demo run against the current workflow code (determinism guard).

When a change to ``AgentRunWorkflow`` breaks this test, the change is not replay-safe for runs already in
flight: use ``workflow.patched`` or a new workflow type, or (before any deployment) record a new history with
``tern demo --auto-approve`` followed by ``tern export-history RUN_ID --out tests/histories/demo_run.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workflows.agent_run import AgentRunWorkflow

HISTORY = Path(__file__).parent / "histories" / "demo_run.json"


async def test_recorded_demo_run_replays() -> None:
    history = WorkflowHistory.from_json("demo-run", HISTORY.read_text())
    events = json.loads(HISTORY.read_text())["events"]
    kinds = {e["eventType"] for e in events}
    assert "EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED" in kinds  # the approval went through the Update
    assert "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED" in kinds
    replayer = Replayer(workflows=[AgentRunWorkflow], data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None
