"""``tern replay-check`` (the deploy check, issue 26 finding 4): the open runs of a namespace, listed by a
visibility query and replayed against this build's workflow code. On the dev server: a run waiting for approval
replays on the current code, and is reported (exit 1) against a workflow of the same type that issues other
commands."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import pytest
from temporalio import workflow
from temporalio.client import Client

from starters.replay import replay_histories
from tern.models import AgentRunRequest
from tests.agent_helpers import queue_workers
from tests.test_workflows_fast import WRITE, Machine, pending, plan, start
from tests.trigger_helpers import cli_env, tern
from workflows.agent_run import AgentRunWorkflow
from workflows.python_execution import PythonExecutionWorkflow


@workflow.defn(name="AgentRunWorkflow", sandboxed=False)
class ChangedAgentRun:
    """A "new build" of AgentRunWorkflow that starts with a timer where the recorded run upserted search
    attributes and scheduled an activity: not replay-safe."""

    @workflow.run
    async def run(self, req: AgentRunRequest) -> None:
        await workflow.sleep(3600)


async def _listed(client, query: str, n: int) -> None:
    async def poll() -> None:  # visibility lags a start by a moment
        while True:
            if len([w async for w in client.list_workflows(query)]) >= n:
                return
            await asyncio.sleep(0.1)

    await asyncio.wait_for(poll(), 30)


@pytest.fixture
async def replay_env(temporal_env) -> AsyncIterator[tuple[Client, str]]:
    """A worker with the fast tests' stand-in activities on the dev server (visibility queries need it)."""
    queue = f"replay-{uuid.uuid4().hex[:8]}"
    async with queue_workers(
        temporal_env.client,
        task_queue=queue,
        workflows=[AgentRunWorkflow, PythonExecutionWorkflow],
        activities=Machine().activities(),
    ):
        yield temporal_env.client, queue


async def test_open_runs_replay_on_this_build_and_a_changed_workflow_is_reported(replay_env, settings) -> None:
    client, queue = replay_env
    handle = await start(client, queue, plan(WRITE))
    await pending(handle)  # stopped mid-wait: the state every deploy replays
    query = f'TaskQueue = "{queue}" AND ExecutionStatus = "Running"'
    await _listed(client, query, 1)
    ok = await replay_histories(client, query, [AgentRunWorkflow, PythonExecutionWorkflow])
    assert (ok.checked, ok.failures) == (1, [])
    bad = await replay_histories(client, query, [ChangedAgentRun])
    assert bad.checked == 1 and [(f.workflow_id, f.workflow_type) for f in bad.failures] == [
        (handle.id, "AgentRunWorkflow")
    ]
    assert "nondetermin" in bad.failures[0].error.lower(), bad.failures[0].error
    address = client.service_client.config.target_host
    s = settings.model_copy(update={"temporal": settings.temporal.model_copy(update={"task_queue": queue})})
    cli = await asyncio.to_thread(tern, cli_env(s, address), "replay-check", "--query", query, "--json")
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout) == {"query": query, "checked": 1, "failures": []}
    await handle.terminate("test over")
