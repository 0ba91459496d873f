"""Payloads recorded before Tern's id was named ``workflow_id`` (key ``run_id``) still load into today's models.

Every payload of the stored histories (tests/histories/, recorded by real runs) that carries ``run_id`` is
validated against the model of its activity input, child/workflow input or workflow result: the old key lands in
``workflow_id``, and today's models write ``workflow_id``. A payload of a kind not listed here fails the test, so
a new model in history is not forgotten. (tests/test_replay.py replays the same histories through the workflows.)
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from tern.models import AgentRunResult, AgentRunStatus, AuditEvent
from tern.models.activity_io import (
    ChannelFindInput,
    ChannelReadInput,
    ComposeInput,
    LogbookSearchInput,
    WriteCheckInput,
    WriteInput,
)
from tern.models.approval import ApprovalResolveInput, NotifyApproversInput
from tern.models.archiver import ArchiverReadInput
from tern.models.identity import ProofCheckInput
from tern.models.memory import MemoryAddInput
from tern.models.planning import PlanInput
from tern.models.python_step import ExecuteInput, GenerateCodeInput, PythonRunInput
from tern.sandbox.models import ExecutionRequest

HISTORIES = Path(__file__).resolve().parent / "histories"

MODEL_OF: dict[str, type[BaseModel]] = {  # activity type, workflow type (input), or "result:<workflow type>" -> model
    "search_logbook": LogbookSearchInput,
    "read_channels": ChannelReadInput,
    "check_write": WriteCheckInput,
    "write_channel": WriteInput,
    "compose_answer": ComposeInput,
    "record_audit": AuditEvent,
    "execute_python": ExecuteInput,
    "generate_code": GenerateCodeInput,
    "PythonExecutionWorkflow": PythonRunInput,
    "result:AgentRunWorkflow": AgentRunResult,
    "resolve_approval": ApprovalResolveInput,
    "read_archiver": ArchiverReadInput,
    "remember": MemoryAddInput,
    "notify_approvers": NotifyApproversInput,
    "verify_proof": ProofCheckInput,
}


def _payloads_with_run_id() -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(history file, kind, decoded JSON) of every payload whose top level has the key ``run_id``."""
    for path in sorted(HISTORIES.glob("*.json")):
        events = json.loads(path.read_text())["events"]
        started = next(e for e in events if e["eventType"] == "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED")
        workflow_type = started["workflowExecutionStartedEventAttributes"]["workflowType"]["name"]
        for event in events:
            for key, attrs in event.items():
                if not key.endswith("EventAttributes"):
                    continue
                kind = (attrs.get("activityType") or attrs.get("workflowType") or {}).get("name")
                if key == "workflowExecutionCompletedEventAttributes":
                    kind = f"result:{workflow_type}"
                for container in ("input", "result"):
                    for payload in (attrs.get(container) or {}).get("payloads", []):
                        encoding = base64.b64decode(payload.get("metadata", {}).get("encoding", "")).decode()
                        if encoding != "json/plain":  # binary/null (a None argument or result) has no data
                            continue
                        data = json.loads(base64.b64decode(payload["data"]))
                        if isinstance(data, dict) and "run_id" in data:
                            yield path.name, str(kind), data


CASES = list(_payloads_with_run_id())


def test_the_stored_histories_hold_old_keys() -> None:
    assert len(CASES) >= 10, CASES  # both histories were recorded with run_id: the test below has work to do
    assert {kind for _, kind, _ in CASES} >= {"record_audit", "PythonExecutionWorkflow", "result:AgentRunWorkflow"}
    assert {kind for h, kind, _ in CASES if h == "archiver_memory_run.json"} >= {"read_archiver", "remember"}


@pytest.mark.parametrize(("history", "kind", "data"), CASES, ids=[f"{h}:{k}" for h, k, _ in CASES])
def test_old_payload_loads_into_workflow_id(history: str, kind: str, data: dict[str, Any]) -> None:
    assert kind in MODEL_OF, f"{history}: a {kind} payload carries run_id; add its model to MODEL_OF"
    model = MODEL_OF[kind]
    loaded = model.model_validate(data)
    assert loaded.workflow_id == data["run_id"]  # type: ignore[attr-defined]
    dumped = loaded.model_dump(mode="json")
    assert dumped["workflow_id"] == data["run_id"] and "run_id" not in dumped
    assert model.model_validate(dumped) == loaded  # and today's payloads load too


def test_status_and_sandbox_request_accept_the_old_keys() -> None:
    """Not in the stored histories but loaded from old payloads and scripts: the status query's answer (with its
    child's id) and the sandbox request (the ``tern sandbox`` JSON input)."""
    old = {"run_id": "tern-run-1", "state": "running", "user": "u", "query": "q", "child_run_id": "tern-run-1.a"}
    st = AgentRunStatus.model_validate(old)
    assert (st.workflow_id, st.child_workflow_id) == ("tern-run-1", "tern-run-1.a")
    assert ExecutionRequest.model_validate({"code": "x = 1", "run_id": "r-1"}).workflow_id == "r-1"
    assert ExecutionRequest(code="x = 1", workflow_id="r-2").workflow_id == "r-2"


@pytest.mark.parametrize("model", [PlanInput, ChannelFindInput])
def test_models_no_stored_history_carries_yet_accept_the_old_key(model: type[BaseModel]) -> None:
    """The planner's and the channel finder's inputs travel in history too (no stored history has them yet)."""
    fields = {name: "x" for name, info in model.model_fields.items() if info.is_required() and name != "workflow_id"}
    loaded = model.model_validate({**fields, "run_id": "tern-run-9"})
    assert loaded.workflow_id == "tern-run-9" and "run_id" not in loaded.model_dump()  # type: ignore[attr-defined]
