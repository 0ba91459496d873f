"""A python step whose code proposes an impossible write value, end to end (Temporal dev server, Docker,
PostgreSQL, IOC): a code error fed back to code generation, and the container runs once per attempt."""

from __future__ import annotations

import asyncio
import time

from temporalio import activity

from tern.models import Plan
from tern.models.python_step import GenerateCodeInput, GeneratedCode
from tern.sandbox.docker_backend import LABEL
from tests.agent_helpers import running_worker, start_run
from tests.test_python_step import approve_next


async def approve_every_attempt(client, workflow_id: str) -> None:
    """Approve each attempt's code as it comes (the default approval mode asks for all code)."""
    while True:
        await approve_next(client, workflow_id, within_s=600)


async def test_a_proposed_value_of_10_to_the_400_is_fed_back_not_retried(
    temporal_env, settings, docker_backend
) -> None:
    prompts: list[GenerateCodeInput] = []

    @activity.defn(name="generate_code")
    async def scripted(inp: GenerateCodeInput) -> GeneratedCode:
        prompts.append(inp)
        if inp.attempt == 1:
            return GeneratedCode(
                code="results = {'ok': True, 'proposed_writes': [{'channel': 'A:B', 'value': 10**400}]}"
            )
        return GeneratedCode(code="results = {'ok': True}")

    plan = Plan.model_validate(
        {"steps": [{"id": "calc", "kind": "python", "objective": "propose a setpoint", "expected_keys": ["ok"]}]}
    )
    since = int(time.time()) - 1
    async with running_worker(temporal_env.client, settings, overrides={"generate_code": scripted}):
        handle = await start_run(temporal_env.client, settings, plan)
        approver = asyncio.create_task(approve_every_attempt(temporal_env.client, handle.id))
        try:
            result = await asyncio.wait_for(handle.result(), 120)
        finally:
            approver.cancel()
    py = result.steps[0].python
    assert result.status == "completed", result.steps[0].message
    assert [a.outcome for a in py.attempts] == ["error", "ok"]
    feedback = prompts[1].feedback or ""
    assert 'results["proposed_writes"][0].value is not a finite float: an integer of 401 digits' in feedback
    created = [
        e
        for e in docker_backend.client.api.events(
            since=since, until=int(time.time()) + 1, filters={"type": "container", "event": "create"}, decode=True
        )
        if e["Actor"]["Attributes"].get(LABEL) == "1" and e["Actor"]["Attributes"].get("tern.run_id") == handle.id
    ]
    assert len(created) == 2, f"expected one container per attempt, got {len(created)}"
