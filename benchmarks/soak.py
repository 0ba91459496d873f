"""A long run at a steady rate with the worker redeployed every few minutes; memory of worker and Temporal server
sampled throughout (issue 13's soak). A program, not a test::

    .venv/bin/python -m benchmarks.soak --minutes 30 --rate 0.4 --json benchmarks/results/soak_30min.json
    .venv/bin/python -m benchmarks.soak --minutes 2 --rate 0.5 --redeploy-every 1      # a quick check

What it does: starts the throwaway embedded stack of ``benchmarks.load`` (temporary data directory, free loopback
ports), then starts one agent run every ``1 / --rate`` seconds for ``--minutes`` minutes, the same mix as the load
tool (read-only, write with approval, python with approval; some decisions rejected, some left to time out), each
driven by ``benchmarks.load``'s scripted approver. Every ``--redeploy-every`` minutes the worker is redeployed
gracefully: SIGTERM to its supervisor (which forwards it; the worker drains its tasks, as ``tern down`` stops it),
then ``EmbeddedStack.up(["worker"])`` starts a new supervisor and worker, as a deploy would. Every
``--sample-every`` seconds it records the resident set size (psutil) of the worker process and of the Temporal
dev server (with their child processes).

Report (JSON): runs started and their end states, runs that ended otherwise than scripted, the redeploys (how
long the worker was away), the samples, and the memory slope of each (least squares, MB per hour): the Temporal
server over the whole run and over its second half (caches that fill and then stay flatten there; a leak does
not), the worker per lifetime (a redeploy starts a fresh process; the slopes are also averaged weighted by the
lifetime's length, and fitted again without each lifetime's first 2 minutes of warm-up), then the invariant check
of ``tern verify`` (IOC put log vs write ledger vs audit, no request left open, no orphan container). Exit 0 when
every run ended as scripted, every redeploy brought a worker back and no invariant is broken, 1 otherwise, 2 for
bad arguments. Only loopback is targeted; at most ``--max-in-flight`` runs are open at once (the start clock
waits while more are), so the tool's own load is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

from benchmarks._common import percentile, print_report
from benchmarks.load import CHANNELS, CODE, READS, _drive, _environment

WARMUP_S = 120.0  # the worker's steady-state slope leaves out its first 2 minutes: the soak saw spikes to 0.9 GB there
MAX_WRITES = 999  # write values are offset by (write number) * 1e-6 below the 1e-3 rounding: distinct while < 1000


def _args(argv: list[str] | None) -> argparse.Namespace:
    """Parse and validate the command line; exits 2 with every reason (argparse's ``error``) on bad input."""
    p = argparse.ArgumentParser(prog="benchmarks.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=30.0, help="how long runs are started (1-240 minutes)")
    p.add_argument("--rate", type=float, default=0.4, help="runs started per second (0.01-2)")
    p.add_argument("--redeploy-every", type=float, default=5.0, help="minutes between worker redeploys (0 = none)")
    p.add_argument("--sample-every", type=float, default=10.0, help="seconds between memory samples (1-60)")
    p.add_argument("--write-share", type=float, default=0.4, help="share of write plans (0-1)")
    p.add_argument("--python-share", type=float, default=0.1, help="share of python plans (0-1; needs Docker)")
    p.add_argument("--reject-share", type=float, default=0.1, help="share of decisions that reject (0-1)")
    p.add_argument("--timeout-share", type=float, default=0.05, help="share of requests left to time out (0-1)")
    p.add_argument("--max-in-flight", type=int, default=200, help="most runs open at once (1-1000)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", type=Path, help="write the report here too")
    a = p.parse_args(argv)
    problems = []
    if not 1 <= a.minutes <= 240:
        problems.append(f"--minutes must be 1..240, got {a.minutes:g}")
    if not 0.01 <= a.rate <= 2:
        problems.append(f"--rate must be 0.01..2 runs per second, got {a.rate:g}")
    if a.redeploy_every != 0 and not 0.5 <= a.redeploy_every <= 60:
        problems.append(f"--redeploy-every must be 0 (none) or 0.5..60 minutes, got {a.redeploy_every:g}")
    if not 1 <= a.sample_every <= 60:
        problems.append(f"--sample-every must be 1..60 seconds, got {a.sample_every:g}")
    for name in ("write_share", "python_share", "reject_share", "timeout_share"):
        if not 0 <= getattr(a, name) <= 1:
            problems.append(f"--{name.replace('_', '-')} must be within 0..1, got {getattr(a, name)}")
    if a.write_share + a.python_share > 1:
        problems.append("--write-share plus --python-share must not exceed 1")
    if a.reject_share + a.timeout_share > 1:
        problems.append("--reject-share plus --timeout-share must not exceed 1")
    if not 1 <= a.max_in_flight <= 1000:
        problems.append(f"--max-in-flight must be 1..1000, got {a.max_in_flight}")
    if 1 <= a.minutes <= 240 and 0.01 <= a.rate <= 2 and a.minutes * 60 * a.rate * a.write_share > MAX_WRITES:
        problems.append(
            f"at most {MAX_WRITES} write runs (each writes its own value): lower --minutes, --rate or --write-share"
        )
    if problems:
        p.error("; ".join(problems))  # exit 2
    return a


def slope_mb_per_hour(samples: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of ``(seconds, megabytes)`` samples, in MB per hour; None for fewer than 3 samples or
    when every sample has the same time (no slope to fit). Uses ``statistics.linear_regression`` (ordinary least
    squares)."""
    if len(samples) < 3 or len({t for t, _ in samples}) < 2:
        return None
    fit = statistics.linear_regression([t for t, _ in samples], [mb for _, mb in samples])
    return fit.slope * 3600.0


def lifetime_slopes(
    samples: Sequence[dict[str, Any]], key: str = "worker_rss_mb", warmup_s: float = 0.0
) -> dict[str, Any]:
    """The slope (MB/hour) of ``key`` within each worker lifetime (samples grouped by ``worker_pid``, in order),
    and their mean weighted by each lifetime's span. ``samples`` are the soak's dicts (``t_s``, ``worker_pid``,
    ``key``); samples without a worker (``worker_pid`` None, during a redeploy) are skipped, and so are those
    within ``warmup_s`` seconds of a lifetime's first sample (a fresh worker loads its imports, caches and models
    on its first runs: a one-time rise, not a leak)."""
    lives: dict[int, list[tuple[float, float]]] = {}
    for s in samples:
        if s.get("worker_pid") and s.get(key) is not None:
            lives.setdefault(s["worker_pid"], []).append((s["t_s"], s[key]))
    per_life: list[dict[str, Any]] = []
    for pid, all_points in lives.items():
        points = [(t, mb) for t, mb in all_points if t - all_points[0][0] >= warmup_s]
        if not points:
            continue
        slope = slope_mb_per_hour(points)
        span = points[-1][0] - points[0][0]
        per_life.append(
            {
                "pid": pid,
                "samples": len(points),
                "span_s": round(span, 1),
                "start_mb": points[0][1],
                "end_mb": points[-1][1],
                "slope_mb_per_h": None if slope is None else round(slope, 2),
            }
        )
    fitted: list[tuple[float, float]] = [
        (life["slope_mb_per_h"], life["span_s"]) for life in per_life if life["slope_mb_per_h"] is not None
    ]
    total = sum(span for _, span in fitted)
    weighted = sum(slope * span for slope, span in fitted) / total if total else None
    return {"lifetimes": per_life, "weighted_slope_mb_per_h": None if weighted is None else round(weighted, 2)}


def _spec(i: int, n_write: int, a: argparse.Namespace, rng: random.Random) -> dict[str, Any]:
    """Run number ``i``'s spec for ``benchmarks.load._drive``: its kind drawn by the shares, its plan, what the
    approver does. ``n_write`` numbers write runs: channel ``CHANNELS[n_write % 100]`` (a channel is reused only
    after 100 other writes), value offset by ``n_write * 1e-6`` so the invariant checker can match every put."""
    from tern.models import Plan

    draw = rng.random()
    kind = "write" if draw < a.write_share else "python" if draw < a.write_share + a.python_share else "read"
    steps: list[dict[str, Any]] = [{"kind": "channel_read", "channels": READS}]
    if kind == "write":
        value = round(rng.uniform(-10, 10), 3) + n_write * 1e-6
        steps.append(
            {"kind": "control_write", "channel": CHANNELS[n_write % len(CHANNELS)], "value": value, "reason": "soak"}
        )
    elif kind == "python":
        steps.append({"kind": "python", "code": CODE})
    steps.append({"kind": "respond"})
    d = rng.random()
    action = (
        "none"
        if kind == "read"
        else "timeout"
        if d < a.timeout_share
        else "reject"
        if d < a.timeout_share + a.reject_share
        else "approve"
    )
    return {
        "id": f"soak-{i:05d}",
        "kind": kind,
        "plan": Plan.model_validate({"steps": steps}),
        "action": action,
        "via": "update" if i % 2 else "signal",
    }


def _rss_mb(pid: int | None, field: str = "rss") -> float | None:
    """Resident memory of ``pid`` and its descendants, MB (psutil ``memory_info``): ``field`` ``rss`` for all of
    it, ``shared`` for its file-backed and shared part (Linux: RssFile + RssShmem, e.g. a memory-mapped database
    file); None when it is not running."""
    if not pid:
        return None
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return None
    total = 0
    for p in procs:
        try:
            total += getattr(p.memory_info(), field)
        except psutil.Error:
            pass
    return round(total / 2**20, 2)


async def _main(a: argparse.Namespace, root: Path) -> dict[str, Any]:
    from tern.config import TernSettings
    from tern.embedded.stack import EmbeddedStack

    os.environ.update(_environment(root))
    settings = TernSettings()
    assert settings.temporal.address.startswith("127.0.0.1:"), "the soak targets loopback only"
    stack = EmbeddedStack(settings, progress=lambda m: print(m, file=sys.stderr))
    try:  # a stack that fails half-way up, or a soak that fails, is stopped all the same
        await asyncio.to_thread(stack.up)
        return await _soak(a, root, stack, settings)
    finally:
        await asyncio.to_thread(stack.down)


async def _soak(a: argparse.Namespace, root: Path, stack: Any, settings: Any) -> dict[str, Any]:
    """The soak proper on a running ``stack`` (``tern.embedded.stack.EmbeddedStack``) with its ``settings``;
    returns the report (see the module docstring)."""
    from starters.client import TernClient
    from starters.verify_cli import collect
    from tern.embedded.supervise import SupervisorState
    from tern.models import AgentRunResult

    state_file = root / "run" / "worker.state.json"
    rng = random.Random(a.seed)
    samples: list[dict[str, Any]] = []
    redeploys: list[dict[str, Any]] = []
    outcomes: dict[str, dict[str, Any]] = {}
    specs: dict[str, dict[str, Any]] = {}
    decided: dict[str, float] = {}
    t0 = time.monotonic()
    stop_starting = asyncio.Event()

    def pids() -> dict[str, int | None]:
        return {c.name: c.pid for c in stack.status().components}

    async def sampler() -> None:
        while True:
            sup = SupervisorState.read(state_file)
            wpid = sup.child_pid if sup else None
            temporal = (await asyncio.to_thread(pids)).get("temporal")
            samples.append(
                {
                    "t_s": round(time.monotonic() - t0, 1),
                    "worker_pid": wpid,
                    "worker_rss_mb": _rss_mb(wpid),
                    "temporal_rss_mb": _rss_mb(temporal),
                    "temporal_shared_mb": _rss_mb(temporal, "shared"),
                    "in_flight": len(specs) - len(outcomes),
                }
            )
            await asyncio.sleep(a.sample_every)

    async def redeployer() -> None:
        while True:
            await asyncio.sleep(a.redeploy_every * 60)
            if stop_starting.is_set():
                return
            began = time.monotonic()
            sup_pid = (await asyncio.to_thread(pids)).get("worker")
            old = SupervisorState.read(state_file)
            if sup_pid:
                os.kill(sup_pid, signal.SIGTERM)  # the supervisor forwards it and waits for the worker to drain
                try:
                    await asyncio.to_thread(psutil.Process(sup_pid).wait, 60)
                except psutil.Error:
                    pass
            stopped = time.monotonic()
            error = None
            for _attempt in range(3):  # a worker that cannot start is reported, and tried again
                try:
                    await asyncio.to_thread(stack.up, ["worker"])
                    error = None
                    break
                except Exception as exc:  # StackError, OSError: recorded in the report, which then fails
                    error = str(exc)[:500]
                    await asyncio.sleep(5.0)
            new = SupervisorState.read(state_file)
            redeploys.append(
                {
                    "at_s": round(began - t0, 1),
                    "old_worker_pid": old.child_pid if old else None,
                    "new_worker_pid": new.child_pid if new else None,
                    "drain_s": round(stopped - began, 2),
                    "away_s": round(time.monotonic() - began, 2),
                    **({"error": error} if error else {}),
                }
            )

    async def one(spec: dict[str, Any]) -> None:
        started = time.time()
        try:
            await _drive(client, spec, decided)
            res = await client.client.get_workflow_handle(spec["id"], result_type=AgentRunResult).result()
            outcomes[spec["id"]] = {"state": res.status, "error": res.error, "e2e_s": time.time() - started}
        except Exception as exc:  # a lost run: recorded, judged below
            outcomes[spec["id"]] = {"state": "error", "error": repr(exc), "e2e_s": time.time() - started}

    client = await TernClient.connect(settings)
    tasks: list[asyncio.Task[None]] = []
    background = [asyncio.create_task(sampler())]
    if a.redeploy_every:
        background.append(asyncio.create_task(redeployer()))
    try:
        interval = 1.0 / a.rate
        end = t0 + a.minutes * 60
        i = n_write = 0
        waited_for_room = 0.0
        while time.monotonic() < end:
            next_at = t0 + i * interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            while len(specs) - len(outcomes) >= a.max_in_flight:  # bounded: wait for room
                await asyncio.sleep(0.5)
                waited_for_room += 0.5
            spec = _spec(i, n_write, a, rng)
            n_write += spec["kind"] == "write"
            specs[spec["id"]] = spec
            tasks.append(asyncio.create_task(one(spec)))
            i += 1
        stop_starting.set()
        started_for_s = time.monotonic() - t0
        _, pending = await asyncio.wait(tasks, timeout=600) if tasks else (set(), set())
        for task in pending:
            task.cancel()
        await asyncio.sleep(a.sample_every)  # one more sample after the last run
    finally:
        for task in background:
            task.cancel()
    invariants = await collect(None, root / "logs" / "ioc-puts.jsonl")
    states: dict[str, int] = {}
    unexpected = []
    for rid, spec in specs.items():
        out = outcomes.get(rid, {"state": "still_open", "error": "no result within 600 s of the last start"})
        states[out["state"]] = states.get(out["state"], 0) + 1
        expected = ("completed",) if spec["action"] in ("none", "approve") else ("rejected", "timed_out")
        if out["state"] not in expected:
            unexpected.append({"run": rid, "kind": spec["kind"], "action": spec["action"], **out})
    e2e = [o["e2e_s"] for o in outcomes.values() if "e2e_s" in o]
    worker = lifetime_slopes(samples)
    worker_steady = lifetime_slopes(samples, warmup_s=WARMUP_S)
    temporal_points = [(s["t_s"], s["temporal_rss_mb"]) for s in samples if s["temporal_rss_mb"] is not None]
    temporal_slope = slope_mb_per_hour(temporal_points)
    # a server's caches fill, then stay: the second half's slope tells a plateau from a steady leak
    temporal_late = slope_mb_per_hour(temporal_points[len(temporal_points) // 2 :])
    return {
        "minutes": a.minutes,
        "rate_per_s": a.rate,
        "started_for_s": round(started_for_s, 1),
        "runs_started": len(specs),
        "runs_completed": states.get("completed", 0),
        "mix": {k: sum(1 for s in specs.values() if s["kind"] == k) for k in ("read", "write", "python")},
        "actions": {
            k: sum(1 for s in specs.values() if s["action"] == k) for k in ("none", "approve", "reject", "timeout")
        },
        "states": states,
        "unexpected": unexpected,
        "end_to_end_s": {f"p{p}": round(percentile(e2e, p), 2) for p in (50, 95, 99)},
        "waited_for_room_s": waited_for_room,
        "redeploys": redeploys,
        "memory": {
            "temporal_slope_mb_per_h": None if temporal_slope is None else round(temporal_slope, 2),
            "temporal_second_half_slope_mb_per_h": None if temporal_late is None else round(temporal_late, 2),
            "temporal_first_last_mb": [temporal_points[0][1], temporal_points[-1][1]] if temporal_points else None,
            "worker": worker,
            f"worker_after_{WARMUP_S:g}s_warmup": worker_steady,
        },
        "load_average_at_end": os.getloadavg(),
        "invariants": invariants,
        "samples": samples,
        "ok": not unexpected and invariants["ok"] and not any("error" in r for r in redeploys),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the soak (see the module docstring); returns the exit status (0 ok, 1 a run or invariant failed)."""
    a = _args(argv)
    tmp = tempfile.mkdtemp(prefix="tern-soak-")
    try:
        report = asyncio.run(_main(a, Path(tmp)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print_report(report, a.json)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
