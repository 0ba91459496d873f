"""The approval protocol's state machine (tests/identity/protocol_model.py) with a bounded number of examples:
random interleavings of proven, forged, replayed, stale and declared decisions, timeouts, cancels, worker restarts
and policy reloads, the invariants checked after every step. The longer profile is
``benchmarks/identity_model_check.py``."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from tests.identity.protocol_model import ApprovalProtocol, Harness

EXAMPLES = 8
STEPS = 16


async def test_no_interleaving_breaks_the_approval_protocol(time_skipping_env, keys: dict[str, Path]) -> None:
    harness = Harness(loop=asyncio.get_running_loop(), env=time_skipping_env, keys=keys)
    harness.start_worker_here()
    try:
        await asyncio.to_thread(
            run_state_machine_as_test,
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
        await harness.stop_worker_here()
    print(harness.stats)
    assert harness.stats["runs"] >= EXAMPLES and harness.stats.get("updates refused", 0) > 0
    assert harness.stats.get("updates accepted", 0) > 0, harness.stats
