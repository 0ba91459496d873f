"""What tracing and metrics cost an agent run: the demo plan without its python step (logbook search, channel
reads, an approved control write verified by readback, the answer), run one after another, with and without.

- ``off``: the worker and the starting client from a plain ``Client.connect`` (no interceptor, the SDK's default
  runtime without metrics), no tracer provider (the API's no-op spans), no HTTP endpoint. Tern's own
  prometheus_client counters still count (they are not switchable; an increment is ~1 µs).
- ``on``: ``worker.main.run_worker`` as deployed: the tracing interceptor on client and worker, the SDK's
  tracer provider exporting every span over OTLP/HTTP (batching) to a receiver in the driver process, the SDK
  metrics through the MetricBuffer collector, the /healthz /readyz /metrics endpoint, scraped every
  ``SCRAPE_EVERY_S`` (Prometheus' default interval) during the runs.

Each variant runs in its own process (a tracer provider cannot be removed once installed), against one shared
Temporal dev server, embedded PostgreSQL and simulated IOC started by the driver. Rounds alternate off/on so
drift on the shared machine hits both; the figures are the ratio of the median run latencies (start to result,
the approval sent as soon as the run waits for it) and the ratio of the CPU time the variant's process (worker
and starting client together) spent per run.

    .venv/bin/python -m benchmarks.observability_overhead --runs 50 \\
        --json benchmarks/results/observability_overhead.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from asyncio.subprocess import PIPE
from pathlib import Path
from typing import Any

from fastapi import Request  # module level: FastAPI resolves the receiver's annotation from the module

from benchmarks._common import embedded_postgres, percentile
from tern.embedded.net import free_port

CHANNEL = "SR:RF:CAVITY:01:VOLTAGE:SP"
SCRAPE_EVERY_S = 15.0  # Prometheus' default scrape interval


def plan(value: float) -> Any:
    from tern.models import Plan

    return Plan.model_validate(
        {
            "steps": [
                {"id": "search", "kind": "logbook_search", "query": "RF cavity voltage trip reflected power"},
                {"id": "read", "kind": "channel_read", "channels": [CHANNEL, "SR:RF:CAVITY:01:POWER:REV"]},
                {"id": "write", "kind": "control_write", "channel": CHANNEL, "value": value, "reason": "bench"},
                {"id": "answer", "kind": "respond"},
            ]
        }
    )


async def one_run(client: Any, task_queue: str, value: float) -> float:
    """Seconds from start to result of one run, approving its write as soon as it waits."""
    from tern.models import AgentRunRequest, Decision
    from workflows.agent_run import AgentRunWorkflow

    started = time.perf_counter()
    handle = await client.start_workflow(
        AgentRunWorkflow.run,
        AgentRunRequest(user="alice", query="cavity 1?", plan=plan(value), approvers=["bob"]),
        id=f"bench-{uuid.uuid4().hex[:10]}",
        task_queue=task_queue,
    )
    while True:
        st = await handle.query(AgentRunWorkflow.status)
        if st.pending is not None:
            break
        await asyncio.sleep(0.02)
    await handle.execute_update(
        AgentRunWorkflow.decide, Decision(request_id=st.pending.request_id, approver="bob", approved=True)
    )
    result = await handle.result()
    if result.status != "completed" or not result.writes or not result.writes[0].verified:
        raise RuntimeError(f"run did not complete with a verified write: {result.status} {result.error}")
    return time.perf_counter() - started


async def child(variant: str, runs: int) -> tuple[list[float], float]:
    """One variant's runs in this process (settings from the environment the driver sets): their latencies and
    the process's CPU seconds over the runs (start-up and imports excluded)."""
    from temporalio.client import Client
    from temporalio.contrib.pydantic import pydantic_data_converter

    from tern.config import TernSettings
    from tern.control.channel_access import configure_environment
    from tern.db import create_pool
    from worker.connection import connect
    from worker.main import build_worker, run_worker

    settings = TernSettings()
    values = [1.45 if i % 2 == 0 else 1.50 for i in range(runs)]
    if variant == "off":
        configure_environment(settings.ca_environment())
        client = await Client.connect(settings.temporal.address, data_converter=pydantic_data_converter)
        pool = await create_pool(settings.dsn)
        try:
            async with build_worker(client, settings, pool):
                cpu0 = time.process_time()
                return [
                    await one_run(client, settings.temporal.task_queue, v) for v in values
                ], time.process_time() - cpu0
        finally:
            await pool.close()
    stop = asyncio.Event()
    ready: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
    worker = asyncio.create_task(run_worker(settings, stop, on_ready=ready.set_result))
    url = await asyncio.wait_for(ready, 60)
    client = await connect(settings)

    async def scrape() -> None:
        import httpx

        async with httpx.AsyncClient(timeout=10) as http:
            while not stop.is_set():
                await http.get(f"{url}/metrics")
                await asyncio.sleep(SCRAPE_EVERY_S)

    scraper = asyncio.create_task(scrape())
    try:
        cpu0 = time.process_time()
        return [await one_run(client, settings.temporal.task_queue, v) for v in values], time.process_time() - cpu0
    finally:
        stop.set()
        await scraper
        await worker
        from worker.telemetry import flush_tracing

        flush_tracing()


def otlp_receiver(port: int, counter: list[int]) -> Any:
    """A FastAPI OTLP/HTTP trace receiver on 127.0.0.1:``port`` in a thread; counts spans into ``counter``."""
    import uvicorn
    from fastapi import FastAPI, Response
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    app = FastAPI()

    async def traces(request: Request) -> Response:
        req = ExportTraceServiceRequest.FromString(await request.body())
        counter[0] += sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)
        return Response(b"", media_type="application/x-protobuf")

    app.add_api_route("/v1/traces", traces, methods=["POST"])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=50, help="runs per variant (split over --rounds)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating off/on rounds")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--child", choices=["off", "on"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        latencies, cpu_s = asyncio.run(child(args.child, args.runs))
        print(json.dumps({"latencies": latencies, "cpu_s_per_run": cpu_s / args.runs}))
        return
    drive(args)


def drive(args: argparse.Namespace) -> None:
    """Start the shared services, run the alternating rounds, print (and write) the figures."""
    spans = [0]
    otlp_port = free_port()
    receiver = otlp_receiver(otlp_port, spans)
    ca_port = free_port()
    with tempfile.TemporaryDirectory(prefix="obs-bench-") as tmp, embedded_postgres() as pg:
        with open(Path(tmp) / "sim.log", "wb") as sim_log:
            sim = subprocess.Popen(
                [sys.executable, "-m", "tern.sim"],
                env={**os.environ, "TERN_CONTROL__CA_SERVER_PORT": str(ca_port)},
                stdout=sim_log,
                stderr=subprocess.STDOUT,
            )
        base = {
            **os.environ,
            "TERN_DATA_DIR": tmp,
            "TERN_DATABASE__URL": f"postgresql://postgres@127.0.0.1:{pg.port}/bench",
            "TERN_CONTROL__CA_SERVER_PORT": str(ca_port),
            "TERN_CONTROL__WRITES_ENABLED": "true",
            "TERN_SANDBOX__BACKEND": "process",
            "TERN_APPROVAL__APPROVERS": '["bob"]',
        }
        try:
            latencies, cpu = asyncio.run(rounds(args, base, otlp_port))
        finally:
            sim.terminate()
            sim.wait(10)
            receiver.should_exit = True
    med = {v: statistics.median(x) for v, x in latencies.items()}
    figures = {
        "runs_per_variant": {v: len(x) for v, x in latencies.items()},
        "median_s": med,
        "p95_s": {v: percentile(x, 95) for v, x in latencies.items()},
        "mean_s": {v: statistics.fmean(x) for v, x in latencies.items()},
        "ratio_median_on_off": med["on"] / med["off"],
        "ratio_mean_on_off": statistics.fmean(latencies["on"]) / statistics.fmean(latencies["off"]),
        "worker_process_cpu_s_per_run": {v: statistics.fmean(x) for v, x in cpu.items()},
        "ratio_cpu_on_off": statistics.fmean(cpu["on"]) / statistics.fmean(cpu["off"]),
        "spans_exported": spans[0],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps({**figures, "latencies_s": latencies}, indent=2) + "\n")


async def rounds(
    args: argparse.Namespace, base: dict[str, str], otlp_port: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """The dev server, then ``args.rounds`` rounds of off and on children; latencies per variant."""
    from temporalio.testing import WorkflowEnvironment

    from workflows.search_attributes import ALL

    temporal = shutil.which("temporal") or str(Path(sys.executable).parent / "temporal")
    env = await WorkflowEnvironment.start_local(dev_server_existing_path=temporal, search_attributes=ALL)
    latencies: dict[str, list[float]] = {"off": [], "on": []}
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    try:
        for rnd in range(args.rounds):
            for variant in ("off", "on"):
                venv = {
                    **base,
                    "TERN_TEMPORAL__ADDRESS": env.client.service_client.config.target_host,
                    "TERN_TEMPORAL__TASK_QUEUE": f"bench-{variant}-{rnd}",
                    "TERN_WORKER__HTTP_PORT": str(free_port()),
                    **({"TERN_WORKER__OTLP_ENDPOINT": f"http://127.0.0.1:{otlp_port}"} if variant == "on" else {}),
                }
                cmd = [sys.executable, "-m", "benchmarks.observability_overhead", "--child", variant]
                proc = await asyncio.create_subprocess_exec(
                    *cmd, "--runs", str(args.runs // args.rounds), env=venv, stdout=PIPE, stderr=PIPE
                )
                out, err = await proc.communicate()
                if proc.returncode != 0:
                    raise RuntimeError(f"{variant} round {rnd} failed:\n{err.decode()[-3000:]}")
                child_out = json.loads(out.decode().strip().splitlines()[-1])
                latencies[variant] += child_out["latencies"]
                cpu[variant].append(child_out["cpu_s_per_run"])
                print(f"round {rnd} {variant}: median {statistics.median(latencies[variant]):.3f} s", flush=True)
    finally:
        await env.shutdown()
    return latencies, cpu


if __name__ == "__main__":
    main()
