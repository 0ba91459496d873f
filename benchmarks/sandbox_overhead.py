"""Sandbox overhead per execution: a trivial script through ``tern.sandbox.execute`` (Docker backend, full
isolation, runner, result document) against a bare ``docker run --rm IMAGE python3 -c pass``, both measured
here, interleaved, after warm-up. Reports p50 and p95 of each and their ratios (target: at most 1.3x).

    .venv/bin/python -m benchmarks.sandbox_overhead --runs 30 --json benchmarks/results/sandbox_overhead.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import shutil
import subprocess
import time
from pathlib import Path

from benchmarks._common import percentile
from tern.config import get_settings
from tern.sandbox import ExecutionRequest, execute
from tern.sandbox.docker_backend import DockerBackend

TARGET_RATIO = 1.3


def bare_docker_run(image: str) -> float:
    """Seconds for one ``docker run --rm IMAGE python3 -c pass`` (the docker CLI, as a user would)."""
    started = time.perf_counter()
    subprocess.run(["docker", "run", "--rm", image, "python3", "-c", "pass"], check=True, capture_output=True)
    return time.perf_counter() - started


def sdk_lifecycle(backend: DockerBackend) -> float:
    """Seconds for create, start, wait, remove of ``python3 -c pass`` through the SDK with no isolation
    settings and no runner: the floor any Docker-based execution pays (context, not the target)."""
    api = backend.client.api
    started = time.perf_counter()
    container = api.create_container(backend.image, ["python3", "-c", "pass"])
    api.start(container)
    api.wait(container)
    api.remove_container(container, force=True)
    return time.perf_counter() - started


async def sandbox_run(backend: DockerBackend) -> float:
    """Seconds for one trivial execution through the sandbox (what the activity calls)."""
    started = time.perf_counter()
    result = await execute(
        ExecutionRequest(code="results = {}", workflow_id="bench", step_id="overhead"), backend=backend
    )
    elapsed = time.perf_counter() - started
    if not result.ok:
        raise RuntimeError(f"sandbox run failed: {result.feedback()}")
    return elapsed


async def measure(runs: int, warmup: int) -> dict[str, object]:
    backend = DockerBackend(get_settings())
    backend.check()
    for _ in range(warmup):
        bare_docker_run(backend.image)
        await sandbox_run(backend)
        sdk_lifecycle(backend)
    bare: list[float] = []
    sandbox: list[float] = []
    sdk: list[float] = []
    for _ in range(runs):  # interleaved, so drift in the machine's load hits all alike
        bare.append(await asyncio.to_thread(bare_docker_run, backend.image))
        sandbox.append(await sandbox_run(backend))
        sdk.append(await asyncio.to_thread(sdk_lifecycle, backend))
    raw = {"bare_docker_run": bare, "sandbox_execute": sandbox, "sdk_lifecycle": sdk}
    stats = {
        name: {"p50_s": percentile(values, 50), "p95_s": percentile(values, 95), "runs": len(values)}
        for name, values in raw.items()
    }
    ratio = {p: stats["sandbox_execute"][f"{p}_s"] / stats["bare_docker_run"][f"{p}_s"] for p in ("p50", "p95")}
    version = backend.client.version()
    return {
        "image": backend.image,
        "docker_engine": version.get("Version"),
        "docker_cli": shutil.which("docker"),
        "machine": f"{platform.machine()}, {platform.system()} {platform.release()}",
        "stats": stats,
        "ratio": ratio,
        "target_ratio": TARGET_RATIO,
        "met": all(r <= TARGET_RATIO for r in ratio.values()),
        "raw_s": raw,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=30, help="measured runs of each (default 30)")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured runs of each first (default 3)")
    parser.add_argument("--json", type=Path, help="also write the figures and raw timings to this file")
    args = parser.parse_args()
    report = asyncio.run(measure(args.runs, args.warmup))
    stats, ratio = report["stats"], report["ratio"]
    assert isinstance(stats, dict) and isinstance(ratio, dict)
    print(f"image {report['image']}, engine {report['docker_engine']}, {args.runs} runs each\n")
    print("| | p50 | p95 |\n| --- | --- | --- |")
    rows = (
        ("bare_docker_run", "bare `docker run --rm IMAGE python3 -c pass`"),
        ("sandbox_execute", "`tern.sandbox.execute` (trivial script)"),
        ("sdk_lifecycle", "context: SDK create/start/wait/remove of `python3 -c pass`, no isolation"),
    )
    for name, label in rows:
        print(f"| {label} | {stats[name]['p50_s'] * 1000:.0f} ms | {stats[name]['p95_s'] * 1000:.0f} ms |")
    print(f"| ratio (sandbox / bare docker run) | {ratio['p50']:.2f}x | {ratio['p95']:.2f}x |")
    print(f"\ntarget <= {TARGET_RATIO}x: {'met' if report['met'] else 'NOT met'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
