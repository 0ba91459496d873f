"""Channel Access throughput through ``ChannelAccessClient`` (the path every activity takes) at 1, 10 and 50
concurrent callers, against bare pyepics in one thread (``PV.get(use_monitor=False)``; ``PV.put(wait=True)``
then ``PV.get``, on connected ``PV`` objects without monitors), both measured here against the simulated
accelerator (a caproto IOC started by this script on a free port).

Reads: ``read_value`` (a ``get`` from the IOC, not a monitor cache). Writes: ``write_channel`` with
``callback`` verification (put with completion callback, then the setpoint read back with its timestamp
before and after), so the figure is Channel Access work, not the simulator's readback lag. Readback writes:
``write_channel`` with ``readback`` verification, waiting for the simulator's readback lag (0.3 s): latency-
bound, as writes to a real machine are (no bare baseline; compared with sequential calls only). Each caller loops
over its own channels. A second baseline runs the same ``tern.control.channel_access`` calls sequentially in one
thread (no client), so the ratio to it isolates what the client adds. Bare, sequential and client runs are
interleaved; each figure is the median of ``--repeat`` runs. The CPU use of the simulated IOC and of this
process (user + system seconds per wall second, from psutil) is recorded too: they share the machine's cores.
Reports ops/s per level and the ratio to the single-thread bare pyepics baseline.

    .venv/bin/python -m benchmarks.ca_concurrency --json benchmarks/results/ca_concurrency.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from typing import Any

from benchmarks._common import machine_info
from benchmarks._control import CHANNELS, LEVELS, add_arguments, client_ops, sim_env, simulator
from tern.embedded.net import free_port


def bare_pvs() -> list[Any]:
    """pyepics PV objects for CHANNELS, connected, without monitors (the bare baseline's channels)."""
    import epics

    pvs = [epics.PV(name, auto_monitor=False) for name in CHANNELS]
    if not all(pv.wait_for_connection(timeout=5.0) for pv in pvs):
        raise RuntimeError("not every channel connected")
    return pvs


def bare_reads(pvs: list[Any], n: int) -> float:
    """ops/s of ``pv.get(use_monitor=False)`` in this thread, round robin over ``pvs``."""
    started = time.perf_counter()
    for i in range(n):
        if pvs[i % len(pvs)].get(use_monitor=False, timeout=2.0) is None:
            raise RuntimeError("get timed out")
    return n / (time.perf_counter() - started)


def bare_writes(pvs: list[Any], n: int) -> float:
    """ops/s of ``pv.put(wait=True)`` then ``pv.get(use_monitor=False)`` in this thread."""
    started = time.perf_counter()
    for i in range(n):
        pv = pvs[i % len(pvs)]
        if pv.put(1.0 + (i % 7), wait=True, timeout=5.0) != 1:
            raise RuntimeError("put did not complete")
        pv.get(use_monitor=False, timeout=2.0)
    return n / (time.perf_counter() - started)


def _level(kind: str) -> Any:
    """``write``: callback verification (Channel Access work); ``write_readback``: readback verification (the
    simulated readback lag, i.e. a latency-bound operation, as writes to a real machine are)."""
    from tern.models import Verification

    return Verification(level="readback" if kind == "write_readback" else "callback", tolerance_absolute=1e-6)


def sequential_ops(n: int, kind: str) -> float:
    """ops/s of the same ``tern.control.channel_access`` calls the client makes, one after another in this thread."""
    from tern.control import channel_access

    level = _level(kind)
    started = time.perf_counter()
    for i in range(n):
        name = CHANNELS[i % len(CHANNELS)]
        if kind == "read":
            channel_access.read_value(name)
        elif not channel_access.write_channel(name, 2.0 + (i % 7), level, previous_value=None).verified:
            raise RuntimeError(f"write to {name} not verified")
    return n / (time.perf_counter() - started)


async def measure(reads: int, writes: int, repeat: int, max_concurrency: int, sim_pid: int) -> dict[str, Any]:
    import psutil

    from tern.control.ca_client import ChannelAccessClient
    from tern.control.channel_access import read_value

    sim, me = psutil.Process(sim_pid), psutil.Process()
    client = ChannelAccessClient(max_concurrency)
    for name in CHANNELS:  # connect every channel once, as a running worker would have
        read_value(name)
    pvs = bare_pvs()
    rows: dict[str, Any] = {}
    kinds = (
        ("read", reads, bare_reads),
        ("write", writes, bare_writes),
        ("write_readback", max(max_concurrency * 3, writes // 8), None),
    )
    for kind, n, bare in kinds:
        runs: dict[str, list[float]] = {"bare": [], "sequential": [], **{str(c): [] for c in LEVELS}}
        if bare is None:
            del runs["bare"]
        sim_cpu: dict[str, list[float]] = {k: [] for k in runs}
        own_cpu: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(repeat):  # interleaved, so that load from elsewhere falls on both sides alike
            for key in runs:
                cpu0, own0, t0 = sum(sim.cpu_times()[:2]), sum(me.cpu_times()[:2]), time.perf_counter()
                if key == "bare" and bare is not None:
                    runs[key].append(bare(pvs, n))
                elif key == "sequential":
                    runs[key].append(sequential_ops(n, kind))
                else:
                    runs[key].append(await client_ops(client, int(key), n, kind, _level(kind)))
                wall = time.perf_counter() - t0
                sim_cpu[key].append((sum(sim.cpu_times()[:2]) - cpu0) / wall)
                own_cpu[key].append((sum(me.cpu_times()[:2]) - own0) / wall)
        base = statistics.median(runs["bare"]) if "bare" in runs else None
        seq = statistics.median(runs["sequential"])
        row: dict[str, Any] = {
            "n": n,
            "bare_ops_s": base,
            "bare_runs": runs.get("bare"),
            "sequential_ops_s": seq,
            "sequential_runs": runs["sequential"],
            "ioc_cpu_share": {k: statistics.median(v) for k, v in sim_cpu.items()},
            "client_cpu_share": {k: statistics.median(v) for k, v in own_cpu.items()},
        }
        for c in LEVELS:
            med = statistics.median(runs[str(c)])
            row[str(c)] = {
                "ops_s": med,
                "runs": runs[str(c)],
                "ratio_to_bare": med / base if base else None,
                "ratio_to_sequential": med / seq,
            }
        rows[kind] = row
    client.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser, "the client's pool (TERN_CONTROL__CA_MAX_CONCURRENCY)")
    args = parser.parse_args()
    port = free_port()
    os.environ.update(
        {"EPICS_CA_SERVER_PORT": str(port), "EPICS_CA_ADDR_LIST": "127.0.0.1", "EPICS_CA_AUTO_ADDR_LIST": "NO"}
    )
    from tern.control.channel_access import ChannelAccessError, read_value

    def probe() -> None:
        read_value(CHANNELS[0], timeout_s=1.0)

    with simulator(sim_env(ca=port), probe, (ChannelAccessError,), "the simulated IOC") as sim:
        rows = asyncio.run(measure(args.reads, args.writes, args.repeat, args.max_concurrency, sim.pid))
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
            f"{c}: {row[str(c)]['ops_s']:.1f}/s ("
            + (f"{row[str(c)]['ratio_to_bare']:.2f}x bare, " if row[str(c)]["ratio_to_bare"] else "")
            + f"{row[str(c)]['ratio_to_sequential']:.2f}x seq)"
            for c in LEVELS
        )
        cpu = " ".join(f"{k}={v:.2f}/{row['client_cpu_share'][k]:.2f}" for k, v in row["ioc_cpu_share"].items())
        bare = f"bare: {row['bare_ops_s']:.0f}/s  " if row["bare_ops_s"] else ""
        print(f"{kind}  {bare}sequential: {row['sequential_ops_s']:.1f}/s  {cells}  CPU share IOC/client: {cpu}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
