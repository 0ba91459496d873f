"""Workflows with test-sized timeouts, registered under the production workflow's name.

The time-skipping test server does not skip time while an activity runs, so a test that waits out a heartbeat
timeout waits in real time. These subclasses change only the class attributes the production workflow reads
its timeouts from; the procedure (``run``) is the production one. Kept out of the test files so the workflow
sandbox re-imports only this small module.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from temporalio import workflow

from workflows.agent_run import AgentRunWorkflow
from workflows.logbook_reembed import LogbookReembedWorkflow
from workflows.python_execution import EXECUTE_RETRY, PythonExecutionWorkflow

with workflow.unsafe.imports_passed_through():  # as the workflows import them
    from tern.models.ariel import ReembedRequest, ReembedResult
    from tern.models.python_step import PythonRunInput, PythonStepOutcome
    from tern.models.run import AgentRunRequest, AgentRunResult


@workflow.defn(name="PythonExecutionWorkflow")
class QuickHeartbeatPythonExecution(PythonExecutionWorkflow):
    """``PythonExecutionWorkflow`` with a 1 s sandbox heartbeat timeout and 3 attempts 0.2 s apart (production:
    20 s and 5 attempts over about 24 s); everything else (non-retryable types, the failure message) as in
    production."""

    execute_heartbeat = timedelta(seconds=1)
    execute_retry = replace(
        EXECUTE_RETRY,
        initial_interval=timedelta(milliseconds=200),
        maximum_interval=timedelta(milliseconds=400),
        maximum_attempts=3,
    )

    @workflow.init
    def __init__(self, inp: PythonRunInput) -> None:
        super().__init__(inp)

    @workflow.run
    async def run(self, inp: PythonRunInput) -> PythonStepOutcome:
        """The production procedure, unchanged."""
        return await super().run(inp)


@workflow.defn(name="PythonExecutionWorkflow")
class ShortHeartbeatPythonExecution(PythonExecutionWorkflow):
    """``PythonExecutionWorkflow`` with a 5 s sandbox heartbeat timeout (production: 20 s) and production's retry
    policy: a killed worker's attempt is retried after 5 s. The sandbox activity beats about once a second
    (``tern.sandbox.supervision``), so a live attempt keeps a 5x margin."""

    execute_heartbeat = timedelta(seconds=5)

    @workflow.init
    def __init__(self, inp: PythonRunInput) -> None:
        super().__init__(inp)

    @workflow.run
    async def run(self, inp: PythonRunInput) -> PythonStepOutcome:
        """The production procedure, unchanged."""
        return await super().run(inp)


@workflow.defn(name="LogbookReembedWorkflow")
class ShortHeartbeatReembed(LogbookReembedWorkflow):
    """``LogbookReembedWorkflow`` with a 10 s heartbeat timeout on ``ariel_reembed`` (production: 20 s; the
    activity beats every 5 s, ``activities.ariel.HEARTBEAT_EVERY_S``)."""

    step_heartbeat = timedelta(seconds=10)

    @workflow.run
    async def run(self, req: ReembedRequest) -> ReembedResult:
        """The production procedure, unchanged."""
        return await super().run(req)


@workflow.defn(name="AgentRunWorkflow")
class ShortHeartbeatAgentRun(AgentRunWorkflow):
    """``AgentRunWorkflow`` with a 6 s heartbeat timeout on the Bluesky run activity (production: 20 s; the
    activity beats every 2 s, ``activities.bluesky.HEARTBEAT_EVERY_S``, a 3x margin). Handlers and procedure are
    the production ones."""

    bluesky_heartbeat = timedelta(seconds=6)

    @workflow.init
    def __init__(self, req: AgentRunRequest) -> None:
        super().__init__(req)

    @workflow.run
    async def run(self, req: AgentRunRequest) -> AgentRunResult:
        """The production procedure, unchanged."""
        return await super().run(req)


# What `python -m tests.quick_worker` registers in place of the production workflow of the same name.
QUICK_WORKER_WORKFLOWS: tuple[type, ...] = (
    ShortHeartbeatPythonExecution,
    ShortHeartbeatReembed,
    ShortHeartbeatAgentRun,
)
