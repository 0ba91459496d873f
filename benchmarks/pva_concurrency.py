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
import statistics
import sys
import time
from typing import Any

from benchmarks._common import machine_info
from benchmarks._control import CHANNELS, LEVELS, add_arguments, client_ops, sim_env, simulator
from tern.embedded.net import free_port


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


async def measure(conf: dict[str, str], reads: int, writes: int, repeat: int, max_concurrency: int) -> dict[str, Any]:
    from tern.control.pva import PVAccessClient, make_context
    from tern.models import Verification

    level = Verification(level="callback", tolerance_absolute=1e-6)
    client = PVAccessClient(conf, max_concurrency)
    bare_ctx = make_context(conf)
    rows: dict[str, Any] = {}
    loop = asyncio.get_running_loop()
    for kind, n, bare in (("read", reads, bare_reads), ("write", writes, bare_writes)):
        runs: dict[str, list[float]] = {"bare": [], **{str(c): [] for c in LEVELS}}
        for _ in range(repeat):  # interleaved, so that load from elsewhere falls on both sides alike
            runs["bare"].append(await loop.run_in_executor(None, bare, bare_ctx, n))
            for c in LEVELS:
                runs[str(c)].append(await client_ops(client, c, n, kind, level))
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
    add_arguments(parser)
    args = parser.parse_args()
    from tern.control.pva import client_config, make_context

    ca_port, pva_port = free_port(), free_port()
    conf = client_config("127.0.0.1", pva_port)
    probe = make_context(conf)
    with simulator(
        sim_env(ca=ca_port, pva=pva_port), lambda: probe.get(CHANNELS[0], timeout=1.0), (TimeoutError,), "the simulator"
    ):
        probe.close()
        print(f"simulator up; measuring (repeat {args.repeat})", file=sys.stderr)
        rows = asyncio.run(measure(conf, args.reads, args.writes, args.repeat, args.max_concurrency))
    report = {
        "machine": machine_info(),
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
