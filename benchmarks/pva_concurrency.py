"""PVAccess throughput through ``PVAccessClient`` (the path a worker's PVA reads and writes take) at 1, 10 and 50
concurrent callers, against bare p4p in one thread (``Context.get``; ``Context.put(wait=True)`` then
``Context.get``), both measured here against the simulated accelerator's PVAccess server (``python -m tern.sim``,
started by this script on free ports).

Reads: ``read_value`` (a PVAccess get). Writes: ``write_channel`` with ``callback`` verification (a timestamped get
before, the put with completion, a timestamped get after: twice the PVAccess work of the bare write). Each caller
loops over its own channels; bare and client runs are interleaved, each figure is the median of ``--repeat`` runs.
Reports ops/s per level and the ratio to the single-thread bare p4p baseline, as ``benchmarks/ca_concurrency.py``
does for Channel Access.

    .venv/bin/python -m benchmarks.pva_concurrency --json benchmarks/results/pva_concurrency.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tern.embedded.net import free_port

CHANNELS = [f"SR:MAG:VCM:{n:02d}:CURRENT:SP" for n in range(1, 73)] + [
    f"SR:MAG:HCM:{n:02d}:CURRENT:SP" for n in range(2, 30)
]  # 100 writable setpoints, -12..12 A
LEVELS = (1, 10, 50)


def bare_reads(ctx: Any, n: int) -> float:
    """ops/s of ``ctx.get`` in this thread, round robin over CHANNELS."""
    started = time.perf_counter()
    for i in range(n):
        ctx.get(CHANNELS[i % len(CHANNELS)], timeout=2.0)
    return n / (time.perf_counter() - started)


def bare_writes(ctx: Any, n: int) -> float:
    """ops/s of ``ctx.put(wait=True)`` then ``ctx.get`` in this thread."""
    started = time.perf_counter()
    for i in range(n):
        name = CHANNELS[i % len(CHANNELS)]
        ctx.put(name, 1.0 + (i % 7), wait=True, timeout=5.0)
        ctx.get(name, timeout=2.0)
    return n / (time.perf_counter() - started)


async def client_ops(client: Any, concurrency: int, n: int, kind: str) -> float:
    """ops/s of ``n`` client operations spread over ``concurrency`` callers, each on its own channels."""
    from tern.models import Verification

    level = Verification(level="callback", tolerance_absolute=1e-6)
    per_caller = max(1, n // concurrency)

    async def caller(k: int) -> None:
        for i in range(per_caller):
            name = CHANNELS[(k + i * concurrency) % len(CHANNELS)]
            if kind == "read":
                await client.read_value(name)
            else:
                record = await client.write_channel(name, 2.0 + ((k + i) % 7), level, previous_value=None)
                if not record.verified:
                    raise RuntimeError(record.message)

    started = time.perf_counter()
    await asyncio.gather(*(caller(k) for k in range(concurrency)))
    return per_caller * concurrency / (time.perf_counter() - started)


async def measure(conf: dict[str, str], reads: int, writes: int, repeat: int, max_concurrency: int) -> dict[str, Any]:
    from tern.control.pva import PVAccessClient, make_context

    client = PVAccessClient(conf, max_concurrency)
    bare_ctx = make_context(conf)
    rows: dict[str, Any] = {}
    loop = asyncio.get_running_loop()
    for kind, n, bare in (("read", reads, bare_reads), ("write", writes, bare_writes)):
        runs: dict[str, list[float]] = {"bare": [], **{str(c): [] for c in LEVELS}}
        for _ in range(repeat):  # interleaved, so that load from elsewhere falls on both sides alike
            runs["bare"].append(await loop.run_in_executor(None, bare, bare_ctx, n))
            for c in LEVELS:
                runs[str(c)].append(await client_ops(client, c, n, kind))
        base = statistics.median(runs["bare"])
        row: dict[str, Any] = {"n": n, "bare_ops_s": base, "bare_runs": runs["bare"]}
        for c in LEVELS:
            med = statistics.median(runs[str(c)])
            row[str(c)] = {"ops_s": med, "runs": runs[str(c)], "ratio_to_bare": med / base}
        rows[kind] = row
    client.close()
    bare_ctx.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=1000, help="read operations per measurement")
    parser.add_argument("--writes", type=int, default=200, help="write operations per measurement")
    parser.add_argument("--repeat", type=int, default=5, help="measurements per figure (median reported)")
    parser.add_argument("--max-concurrency", type=int, default=8, help="the client's pool")
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    args = parser.parse_args()
    from tern.control.pva import client_config, make_context

    ca_port, pva_port = free_port(), free_port()
    conf = client_config("127.0.0.1", pva_port)
    env = {**os.environ, "TERN_CONTROL__CA_SERVER_PORT": str(ca_port), "TERN_CONTROL__PVA_SERVER_PORT": str(pva_port)}
    with tempfile.TemporaryDirectory(prefix="pva-bench-") as tmp:
        log = Path(tmp) / "sim.log"
        with open(log, "wb") as fh:
            sim = subprocess.Popen([sys.executable, "-m", "tern.sim"], env=env, stdout=fh, stderr=subprocess.STDOUT)
        try:
            probe = make_context(conf)
            deadline = time.monotonic() + 60
            while True:
                try:
                    probe.get(CHANNELS[0], timeout=1.0)
                    break
                except TimeoutError:
                    if sim.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit("the simulator did not start: " + log.read_text()[-2000:]) from None
            probe.close()
            print(f"simulator up; measuring (repeat {args.repeat})", file=sys.stderr)
            rows = asyncio.run(measure(conf, args.reads, args.writes, args.repeat, args.max_concurrency))
        finally:
            sim.terminate()
            sim.wait(10)
    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "max_concurrency": args.max_concurrency,
        "reads": args.reads,
        "writes": args.writes,
        "repeat": args.repeat,
        "results": rows,
    }
    for kind, row in rows.items():
        cells = "  ".join(
            f"{c}: {row[str(c)]['ops_s']:.1f}/s ({row[str(c)]['ratio_to_bare']:.2f}x bare)" for c in LEVELS
        )
        print(f"{kind}  bare: {row['bare_ops_s']:.0f}/s  {cells}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
