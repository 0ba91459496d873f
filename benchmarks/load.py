"""Many agent runs at once on a throwaway embedded stack, with a scripted approver and injected faults,
then the invariant check (issue 13). A program, not a test::

    .venv/bin/python -m benchmarks.load --runs 200 --json benchmarks/results/load.json
    .venv/bin/python -m benchmarks.load --runs 60 --kill-worker 3 --json benchmarks/results/load_kill.json
    .venv/bin/python -m benchmarks.load --runs 40 --python-share 0.5 --python-seconds 8 --restart-docker 10 \
        --stagger 150 --fault-window 170 --docker-root /tmp/tern-load-dockerd
    .venv/bin/python -m benchmarks.load --runs 20 --ask-share 0.5 --llm-faults 60

What it does: starts PostgreSQL, the Temporal dev server, the simulated IOC (with its put log) and a supervised
worker in a temporary data directory on free loopback ports (``tern.embedded.stack``), then starts ``--runs``
agent runs at once, a mix of read-only plans (``channel_read`` + ``respond``), write plans (``control_write`` of a
distinct value to a distinct corrector setpoint, approval by ``alice``; the requester cannot approve a write) and
python plans (``--python-share``, sandbox code approved before it runs) and asked runs (``--ask-share``: no plan;
the worker's planner asks a scripted OpenAI-compatible server, ``benchmarks.fault_kit.FaultyLLM``, which plans a
read-only plan). ``--llm-faults S`` makes that server answer 500, 429 or hang past the client's timeout, in turn,
for S seconds: asked runs must plan after it or fail naming the LLM, and no run may hang. A scripted approver
decides every pending request, half through the ``decide`` Update and half through the ``decide_signal`` Signal;
``--reject-share`` of them are rejected and ``--timeout-share`` are left to time out (those runs ask for a 20 s
approval timeout).
Faults, at random moments within ``--fault-window`` seconds while runs are in flight: ``--kill-worker K`` SIGKILLs
the worker K times (its supervisor restarts it), ``--kill-temporal``/``--kill-postgres`` SIGKILL those servers
and restart them, ``--stall-ioc S`` freezes the simulated IOC for S seconds (writes in flight then have an
unknown outcome and must be settled by reading). ``--second-worker`` runs another worker process on the same task
queue (the stack worker's environment); ``--kill-target`` says which one ``--kill-worker`` kills (``stack``,
``second``, ``alternate``; a killed second worker is started again after 3 s). ``--kill-in-sandbox K`` waits K times
until a python step's container runs (Docker polled for the ``tern.run_id`` label) and SIGKILLs every worker then;
``--restart-docker K`` restarts the Docker engine K times while containers run (SIGTERM and SIGKILL alternately).
Both use a PRIVATE ``dockerd`` (``benchmarks.fault_kit.PrivateDockerd``: own data root, exec root, PID file and
socket; the sandbox image copied in), never the machine's; ``--python-seconds`` makes python steps run that long
and ``--stagger`` spreads the runs' starts so containers are in flight through the fault window. Afterwards every
run must have ended as scripted (``completed`` for approved and read runs, ``rejected`` for rejected ones,
``timed_out`` for those left to time out), and a failure is excused only by the injected fault that caused it
(:func:`classify`: an unverified write whose write activity overlapped an IOC freeze, an asked run whose planner
error carries the signs of an LLM fault served to that very run; each excuse is listed with ``excused_by``);
``tern verify``'s checks must pass (IOC put log vs write ledger vs audit, no request left open, no orphan
container); with a private engine no sandbox container of any kind may be left on it, and the python steps that
ran their code again say so (``ExecutionResult.reruns``).

Output (JSON): runs/s, p50/p95/p99 of start-to-first-activity, decision-to-write-completed and end-to-end (from the
workflow histories' event times, seconds), final states, worker CPU seconds and peak RSS (all worker processes,
sampled each second), history length and size per run, the invariant report. Exit 0 when every run ended as
expected and no invariant is broken, 1 otherwise, 2 for bad arguments. Only loopback is ever targeted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from benchmarks._common import percentile, print_report
from benchmarks.fault_kit import FaultyLLM, PrivateDockerd, SecondWorker, sandbox_containers
from tern.embedded.net import free_port

CHANNELS = [f"SR:MAG:VCM:{n:02d}:CURRENT:SP" for n in range(1, 73)] + [
    f"SR:MAG:HCM:{n:02d}:CURRENT:SP" for n in range(2, 30)
]  # 100 writable correctors, -12..12 A, readback verification
READS = ["SR:DIAG:DCCT:01:CURRENT:RB", "SR:RF:CAVITY:01:POWER:REV", "SR:VAC:ION-PUMP:01:VOLTAGE:SP"]
CODE = "results = {'total': sum(range(1000))}"
APPROVER = "alice"
REQUESTER = "loadgen"


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="benchmarks.load", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=200, help="agent runs started at once (1-1000)")
    p.add_argument("--write-share", type=float, default=0.4, help="share of write plans (0-1)")
    p.add_argument("--python-share", type=float, default=0.1, help="share of python plans (0-1; needs Docker)")
    p.add_argument(
        "--ask-share", type=float, default=0.0, help="share of asked runs, planned by a scripted LLM server (0-1)"
    )
    p.add_argument(
        "--llm-faults",
        type=float,
        default=0.0,
        help="for this many seconds the LLM server answers 500, 429 or hangs, in turn (0-300; needs --ask-share)",
    )
    p.add_argument("--reject-share", type=float, default=0.1, help="share of decisions that reject (0-1)")
    p.add_argument("--timeout-share", type=float, default=0.05, help="share of requests left to time out (0-1)")
    p.add_argument("--kill-worker", type=int, default=0, help="SIGKILL the worker this many times (0-50)")
    p.add_argument(
        "--kill-temporal", type=int, default=0, help="SIGKILL the Temporal dev server this many times, restart (0-20)"
    )
    p.add_argument(
        "--kill-postgres", type=int, default=0, help="SIGKILL PostgreSQL this many times, then restart it (0-20)"
    )
    p.add_argument(
        "--stall-ioc", type=float, default=0.0, help="freeze the simulated IOC (SIGSTOP) this many seconds (0-120)"
    )
    p.add_argument("--second-worker", action="store_true", help="run a second worker on the same task queue")
    p.add_argument(
        "--kill-target",
        choices=("stack", "second", "alternate"),
        default="stack",
        help="which worker --kill-worker kills (second and alternate need --second-worker)",
    )
    p.add_argument(
        "--kill-in-sandbox", type=int, default=0, help="SIGKILL the workers this many times while code runs (0-50)"
    )
    p.add_argument(
        "--restart-docker", type=int, default=0, help="restart the private Docker engine this many times (0-50)"
    )
    p.add_argument(
        "--docker-root",
        type=Path,
        help="data root of the private dockerd, kept between runs (default: a fresh one in the data directory)",
    )
    p.add_argument("--python-seconds", type=float, default=0.0, help="python steps sleep this long (0-60 s)")
    p.add_argument("--stagger", type=float, default=0.0, help="start the runs spread over this many seconds (0-600)")
    p.add_argument("--fault-window", type=float, default=40.0, help="faults happen within this many seconds")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", type=Path, help="write the report here too")
    p.add_argument("--keep", action="store_true", help="leave the stack running and its data directory in place")
    a = p.parse_args(argv)
    problems = []
    if not 1 <= a.runs <= 1000:
        problems.append(f"--runs must be 1..1000, got {a.runs}")
    for name in ("write_share", "python_share", "ask_share", "reject_share", "timeout_share"):
        if not 0 <= getattr(a, name) <= 1:
            problems.append(f"--{name.replace('_', '-')} must be within 0..1, got {getattr(a, name)}")
    if a.write_share + a.python_share + a.ask_share > 1:
        problems.append("--write-share plus --python-share plus --ask-share must not exceed 1")
    if not 0 <= a.llm_faults <= 300:
        problems.append(f"--llm-faults must be 0..300 seconds, got {a.llm_faults}")
    elif a.llm_faults and round(a.runs * a.ask_share) == 0:
        problems.append("--llm-faults needs asked runs: raise --ask-share")
    if a.reject_share + a.timeout_share > 1:
        problems.append("--reject-share plus --timeout-share must not exceed 1")
    if a.write_share * a.runs > len(CHANNELS):
        problems.append(f"at most {len(CHANNELS)} write runs (one channel each): lower --runs or --write-share")
    if not 0 <= a.kill_worker <= 50:
        problems.append(f"--kill-worker must be 0..50, got {a.kill_worker}")
    for name in ("kill_temporal", "kill_postgres"):
        if not 0 <= getattr(a, name) <= 20:
            problems.append(f"--{name.replace('_', '-')} must be 0..20, got {getattr(a, name)}")
    if not 0 <= a.stall_ioc <= 120:
        problems.append(f"--stall-ioc must be 0..120 seconds, got {a.stall_ioc}")
    for name in ("kill_in_sandbox", "restart_docker"):
        if not 0 <= getattr(a, name) <= 50:
            problems.append(f"--{name.replace('_', '-')} must be 0..50, got {getattr(a, name)}")
        elif getattr(a, name) and round(a.runs * a.python_share) == 0:
            problems.append(f"--{name.replace('_', '-')} needs python runs: raise --python-share")
    if a.kill_target != "stack" and not a.second_worker:
        problems.append(f"--kill-target {a.kill_target} needs --second-worker")
    if not 0 <= a.python_seconds <= 60:
        problems.append(f"--python-seconds must be 0..60, got {a.python_seconds}")
    if not 0 <= a.stagger <= 600:
        problems.append(f"--stagger must be 0..600 seconds, got {a.stagger}")
    if not 5 <= a.fault_window <= 3600:
        problems.append(f"--fault-window must be 5..3600 seconds, got {a.fault_window}")
    if problems:
        p.error("; ".join(problems))  # exit 2
    return a


def _environment(root: Path) -> dict[str, str]:
    """TERN_* variables of the throwaway stack: free loopback ports (every listening component, the worker's HTTP
    endpoint included, so two benchmark stacks can run side by side), a policy naming the approver."""
    return {
        "TERN_DATA_DIR": str(root),
        "TERN_DATABASE__PG_PORT": str(free_port()),
        "TERN_TEMPORAL__ADDRESS": f"127.0.0.1:{free_port()}",
        "TERN_TEMPORAL__UI_PORT": str(free_port()),
        "TERN_CONTROL__CA_SERVER_PORT": str(free_port()),
        "TERN_ARIEL__API_PORT": str(free_port()),
        "TERN_ARCHIVER__PORT": str(free_port()),
        "TERN_WORKER__HTTP_PORT": str(free_port()),  # not the default 9464: another stack's worker may hold it
        "TERN_TEMPORAL__TASK_QUEUE": "tern-load",
        "TERN_APPROVAL__APPROVERS": json.dumps([APPROVER, "bob"]),
        "TERN_CONTROL__WRITE_SETTLE_DELAY_S": "4",
    }


class WorkerWatch:
    """CPU seconds and peak RSS of every worker process the supervisor ran (sampled each second)."""

    def __init__(self, state_file: Path) -> None:
        self.state_file = state_file
        self.cpu: dict[int, float] = {}
        self.peak_rss = 0
        self.second: SecondWorker | None = None  # sampled too when set (its RSS counts apart: peak of each)

    def pid(self) -> int | None:
        try:
            return json.loads(self.state_file.read_text()).get("child_pid")
        except (OSError, ValueError):
            return None

    async def sample(self) -> None:
        while True:
            for pid in (self.pid(), self.second.pid if self.second else None):
                if not pid:
                    continue
                try:
                    proc = psutil.Process(pid)
                    times = proc.cpu_times()
                    self.cpu[pid] = times.user + times.system
                    self.peak_rss = max(self.peak_rss, proc.memory_info().rss)
                except psutil.Error:
                    pass
            await asyncio.sleep(1.0)


def _plans(a: argparse.Namespace, rng: random.Random) -> list[dict[str, Any]]:
    """One spec per run: its kind, plan, and what the approver will do with its request."""
    from tern.models import Plan

    n_write = round(a.runs * a.write_share)
    n_python = round(a.runs * a.python_share)
    n_ask = round(a.runs * a.ask_share)
    kinds = ["write"] * n_write + ["python"] * n_python + ["ask"] * n_ask
    kinds += ["read"] * (a.runs - len(kinds))
    rng.shuffle(kinds)
    channels = iter(CHANNELS)
    # Unique per invocation: sandbox containers are found and killed by run and step id (labels), and another load or
    # soak run may share the machine's Docker engine.
    tag = os.urandom(3).hex()
    specs = []
    for i, kind in enumerate(kinds):
        steps: list[dict[str, Any]] = [{"kind": "channel_read", "channels": READS}]
        if kind == "write":
            value = round(rng.uniform(-10, 10), 3) + i * 1e-6  # distinct: the checker matches puts by value
            steps.append({"kind": "control_write", "channel": next(channels), "value": value, "reason": "load"})
        elif kind == "python":
            code = f"import time\ntime.sleep({a.python_seconds:g})\n{CODE}" if a.python_seconds else CODE
            steps.append({"kind": "python", "code": code})
        steps.append({"kind": "respond"})
        draw = rng.random()
        action = (
            "none"
            if kind in ("read", "ask")
            else "timeout"
            if draw < a.timeout_share
            else "reject"
            if draw < a.timeout_share + a.reject_share
            else "approve"
        )
        specs.append(
            {
                "id": f"load-{tag}-{i:04d}",
                "kind": kind,
                "plan": None if kind == "ask" else Plan.model_validate({"steps": steps}),  # ask: the LLM plans
                "action": action,
                "via": "update" if i % 2 else "signal",
            }
        )
    return specs


async def _drive(client: Any, spec: dict[str, Any], decided: dict[str, float]) -> None:
    """Start one run and act as its approver until it ends."""
    from temporalio.exceptions import WorkflowAlreadyStartedError
    from temporalio.service import RPCError

    from starters.client import TernUnavailable, TernUserError, run_request
    from tern.models import Decision
    from workflows.agent_run import AgentRunWorkflow

    request = run_request(
        user=REQUESTER,
        query=f"load run {spec['id']}",
        plan=spec["plan"],
        approval_timeout_s=20.0 if spec["action"] == "timeout" else 600.0,
        python_approval_mode="all_code",
    )
    for attempt in range(60):  # Temporal may be down (a fault): start again; the workflow id makes it one run
        try:
            await client.start_run(request, workflow_id=spec["id"])
            break
        except WorkflowAlreadyStartedError:
            break
        except RPCError:
            if attempt == 59:
                raise
            await asyncio.sleep(1.0)
    if spec["action"] in ("none", "timeout"):
        return
    sent: dict[str, float] = {}  # request id -> when our decision was sent
    while True:
        try:
            st = await client.waiting(spec["id"])
        except (TernUnavailable, TernUserError, RPCError):
            await asyncio.sleep(1.0)  # a server or the worker is being restarted, or the query timed out: ask again
            continue
        if st.state not in ("running", "awaiting_approval"):
            return
        if st.pending is None:
            if sent:
                return  # our decision was taken (one request per run)
            await asyncio.sleep(0.5)
            continue
        rid = st.pending.request_id
        if rid in sent and time.time() - sent[rid] < 10.0:
            await asyncio.sleep(1.0)  # a Signal is not acknowledged: wait for the gate, send again after 10 s
            continue
        decision = Decision(
            request_id=rid,
            approver=APPROVER,
            approved=spec["action"] == "approve",
            comment="" if spec["action"] == "approve" else "load: rejected",
            surface="load",
        )
        target = client.client.get_workflow_handle(st.workflow_id)
        try:
            if spec["via"] == "update":
                await target.execute_update(AgentRunWorkflow.decide, decision, id=f"load-{rid}")
            else:
                await target.signal(AgentRunWorkflow.decide_signal, decision)
        except Exception:  # a refused or lost decision: look at the run again (the gate is the judge)
            await asyncio.sleep(1.0)
            continue
        sent[rid] = time.time()
        decided.setdefault(spec["id"], sent[rid])


def _timings(history: Any, decided_at: float | None) -> dict[str, float | None]:
    """Seconds from the history: start -> first activity scheduled... started, decision -> write completed, total."""
    events = list(history.events)
    start = events[0].event_time.ToDatetime().timestamp()
    first_activity = next(
        (e.event_time.ToDatetime().timestamp() for e in events if e.HasField("activity_task_started_event_attributes")),
        None,
    )
    write_done = None
    scheduled: dict[int, str] = {}
    for e in events:
        if e.HasField("activity_task_scheduled_event_attributes"):
            scheduled[e.event_id] = e.activity_task_scheduled_event_attributes.activity_type.name
        if e.HasField("activity_task_completed_event_attributes"):
            sid = e.activity_task_completed_event_attributes.scheduled_event_id
            if scheduled.get(sid) == "write_channel":
                write_done = e.event_time.ToDatetime().timestamp()
    end = events[-1].event_time.ToDatetime().timestamp()
    return {
        "start_to_first_activity": None if first_activity is None else first_activity - start,
        "decision_to_write": None if write_done is None or decided_at is None else write_done - decided_at,
        "end_to_end": end - start,
    }


async def _faults(
    a: argparse.Namespace,
    stack: Any,
    watch: WorkerWatch,
    rng: random.Random,
    engine: PrivateDockerd | None = None,
) -> list[dict[str, Any]]:
    """Inject the requested faults at random moments within ``--fault-window`` seconds; returns what was done.

    worker: SIGKILL of the ``--kill-target`` worker (the supervisor restarts the stack's; the benchmark starts a
    killed second worker again after 3 s); temporal / postgres: SIGKILL of the server, then ``tern up`` restarts it
    (the dev server keeps its SQLite file, PostgreSQL recovers its WAL); ioc: SIGSTOP of the simulated IOC for
    ``--stall-ioc`` seconds, then SIGCONT (an IOC that stops answering); sandbox: once a load run's container
    runs on ``engine`` (polled up to 60 s), SIGKILL of every worker; docker: once a container runs, a restart
    of ``engine`` (SIGTERM on even, SIGKILL on odd restarts)."""
    plan = ["worker"] * a.kill_worker + ["temporal"] * a.kill_temporal + ["postgres"] * a.kill_postgres
    plan += ["sandbox"] * a.kill_in_sandbox + ["docker"] * a.restart_docker
    plan += ["ioc"] if a.stall_ioc else []
    moments = sorted(rng.uniform(2.0, a.fault_window) for _ in plan)
    rng.shuffle(plan)
    done: list[dict[str, Any]] = []
    t0 = time.monotonic()
    kills = 0
    last_fault = 0.0  # wall clock
    for at, kind in zip(moments, plan, strict=True):
        await asyncio.sleep(max(0.0, at - (time.monotonic() - t0)))
        record: dict[str, Any] = {"fault": kind}
        if kind in ("sandbox", "docker"):
            assert engine is not None
            # a container started after the last fault: a live worker follows it (a killed worker's container runs on
            # to its deadline), on a worker that is up again
            running = await _container_running(engine, 90.0, since=last_fault, worker=watch.pid)
            if not running:
                done.append({"fault": kind, "at_s": round(time.monotonic() - t0, 1), "skipped": "no container ran"})
                continue
            record["runs_in_sandbox"] = running
        if kind == "docker":
            assert engine is not None
            sig = signal.SIGTERM if engine.restarts % 2 == 0 else signal.SIGKILL
            record |= {"at_s": round(time.monotonic() - t0, 1), "signal": sig.name}
            record["down_s"] = round(await asyncio.to_thread(engine.restart, sig), 1)
            done.append(record)
            last_fault = time.time()
            continue
        pids = {c.name: c.pid for c in (await asyncio.to_thread(stack.status)).components}
        targets: list[int | None]
        if kind == "worker":
            which = a.kill_target if a.kill_target != "alternate" else ("stack", "second")[kills % 2]
            kills += 1
            targets = [watch.pid() if which == "stack" else watch.second.pid if watch.second else None]
            record["worker"] = which
        elif kind == "sandbox":
            targets = [watch.pid(), watch.second.pid if watch.second else None]
        else:
            targets = [pids.get("sim" if kind == "ioc" else kind)]
        killed = []
        stop_t = time.time()
        for pid in filter(None, targets):
            try:
                os.kill(pid, signal.SIGSTOP if kind == "ioc" else signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
        if not killed:
            done.append({"fault": kind, "at_s": round(at, 1), "skipped": "not running"})
            continue
        done.append(record | {"at_s": round(time.monotonic() - t0, 1), "pids": killed})
        last_fault = time.time()
        if kind == "ioc":
            done[-1]["stopped_at"] = stop_t
            await asyncio.sleep(a.stall_ioc)
            os.kill(killed[0], signal.SIGCONT)
            done[-1]["resumed_at"] = time.time()
        elif kind in ("temporal", "postgres"):
            await asyncio.sleep(1.0)
            await asyncio.to_thread(stack.up)  # restarts what died
        else:
            await asyncio.sleep(3.0)  # let the supervisor restart the worker before another fault
            if watch.second is not None and watch.second.pid is None:
                await asyncio.to_thread(watch.second.start)
    return done


async def _container_running(
    engine: PrivateDockerd, within_s: float, *, since: float = 0.0, worker: Callable[[], int | None] | None = None
) -> list[str]:
    """Poll ``engine`` (every 0.2 s, up to ``within_s`` seconds) until a load run's sandbox container created after
    ``since`` (epoch seconds, its ``tern.created_at`` label) runs while ``worker()`` names a live process; returns
    the runs whose such containers run then (empty: none ran in time)."""
    deadline = time.monotonic() + within_s
    client = engine.client(10)
    while time.monotonic() < deadline:
        try:
            found = await asyncio.to_thread(sandbox_containers, client)
        except Exception:  # the engine is being restarted
            found = []
        fresh = [c for c in found if float(c["Labels"].get("tern.created_at") or 0) > since]
        pid = worker() if worker is not None else None
        if fresh and (worker is None or (pid and psutil.pid_exists(pid))):
            return sorted({c["Labels"]["tern.run_id"] for c in fresh})
        await asyncio.sleep(0.2)
    return []


async def _main(a: argparse.Namespace, root: Path) -> dict[str, Any]:
    from starters.client import TernClient
    from starters.verify_cli import collect
    from tern.config import TernSettings
    from tern.embedded.stack import EmbeddedStack
    from tern.models import AgentRunResult

    os.environ.update(_environment(root))
    settings = TernSettings()
    assert settings.temporal.address.startswith("127.0.0.1:"), "the load tool targets loopback only"
    rng = random.Random(a.seed)
    engine = await asyncio.to_thread(_private_engine, a, settings, root)
    llm = FaultyLLM(READS, a.llm_faults) if a.ask_share else None
    exits = contextlib.AsyncExitStack()
    if llm is not None:
        base = await exits.enter_async_context(await llm.serve())
        os.environ.update(llm.worker_env(base))
        settings = TernSettings()
    stack = EmbeddedStack(settings, progress=lambda m: print(m, file=sys.stderr))
    watch = WorkerWatch(root / "run" / "worker.state.json")
    try:
        await asyncio.to_thread(stack.up)  # up() runs its own event loop
        client = await TernClient.connect(settings)
        if a.second_worker:
            watch.second = SecondWorker(watch.pid() or 0, root / "logs" / "worker2.log")
            watch.second.start()
        sampler = asyncio.create_task(watch.sample())
        specs = _plans(a, rng)
        decided: dict[str, float] = {}
        started = time.time()
        faults = asyncio.create_task(_faults(a, stack, watch, random.Random(a.seed + 1), engine))
        if llm is not None:
            llm.open_window()

        async def drive_later(i: int, spec: dict[str, Any]) -> None:
            await asyncio.sleep(a.stagger * i / len(specs))
            await _drive(client, spec, decided)

        await asyncio.gather(*(drive_later(i, s) for i, s in enumerate(specs)))
        results = await asyncio.gather(
            *(client.client.get_workflow_handle(s["id"], result_type=AgentRunResult).result() for s in specs),
            return_exceptions=True,
        )
        elapsed = time.time() - started
        injected = await faults
        sampler.cancel()
        states: dict[str, int] = {}
        unexpected: list[dict[str, Any]] = []
        unverified_in_stall: list[dict[str, Any]] = []
        ask_failed: list[dict[str, Any]] = []
        timings: dict[str, list[float]] = {"start_to_first_activity": [], "decision_to_write": [], "end_to_end": []}
        history_bytes = []
        history_len = []
        stalls = [(f["stopped_at"], f["resumed_at"]) for f in injected if f["fault"] == "ioc" and "stopped_at" in f]
        hits = llm.hits if llm is not None else {}
        for spec, res in zip(specs, results, strict=True):
            state = "error" if isinstance(res, BaseException) else res.status
            states[state] = states.get(state, 0) + 1
            handle = client.client.get_workflow_handle(spec["id"])
            history = await handle.fetch_history()
            why = repr(res) if isinstance(res, BaseException) else res.error
            verdict, excuse = classify(
                spec, state, why, write_span=_write_span(history), ioc_stalls=stalls, llm_hits=hits
            )
            if verdict != "expected":
                entry = {"run": spec["id"], "kind": spec["kind"], "action": spec["action"], "state": state}
                entry |= {"error": why, "excused_by": excuse}
                {"ioc_stall": unverified_in_stall, "llm_fault": ask_failed, "unexpected": unexpected}[verdict].append(
                    entry
                )
            for k, v in _timings(history, decided.get(spec["id"])).items():
                if v is not None:
                    timings[k].append(v)
            desc = await handle.describe()
            history_len.append(desc.raw_description.workflow_execution_info.history_length)
            history_bytes.append(desc.raw_description.workflow_execution_info.history_size_bytes)
        invariants = await collect(None, root / "logs" / "ioc-puts.jsonl")
        left = await _containers_left(engine) if engine is not None else None
        python = _python_steps([r for r in results if not isinstance(r, BaseException)])
        return {
            "runs": a.runs,
            "mix": {k: sum(1 for s in specs if s["kind"] == k) for k in ("read", "write", "python", "ask")},
            "actions": {k: sum(1 for s in specs if s["action"] == k) for k in ("none", "approve", "reject", "timeout")},
            "faults": injected,
            "seconds": round(elapsed, 2),
            "runs_per_s": round(a.runs / elapsed, 3),
            "latency_s": {
                k: {f"p{p}": round(percentile(v, p), 3) for p in (50, 95, 99)} | {"n": len(v)}
                for k, v in timings.items()
            },
            "states": states,
            "unexpected": unexpected,
            "failed_unverified_during_ioc_stall": unverified_in_stall,
            "llm": None
            if llm is None
            else {
                "fault_window_s": a.llm_faults,
                "injected": llm.injected,
                "requests": len(llm.llm.requests),
                "ask_failed_naming_the_llm": ask_failed,
            },
            "worker_cpu_s": round(sum(watch.cpu.values()), 2),
            "worker_peak_rss_mb": round(watch.peak_rss / 2**20, 1),
            "history_events": {"p50": percentile(history_len, 50), "max": max(history_len)},
            "history_bytes": {"p50": percentile(history_bytes, 50), "max": max(history_bytes)},
            "invariants": invariants,
            "python_steps": python,
            "second_worker_starts": watch.second.starts if watch.second else 0,
            "private_engine": None if engine is None else {"host": engine.host, "containers_left": left},
            "ok": not unexpected and invariants["ok"] and not left,
        }
    finally:
        await exits.aclose()
        if not a.keep:
            await asyncio.to_thread(stack.down)
            if watch.second is not None:
                await asyncio.to_thread(watch.second.stop)
            if engine is not None:
                await asyncio.to_thread(engine.stop)


LLM_FAULT_SIGNS = {
    "500": ("HTTP 500", "load: injected 500"),
    "429": ("HTTP 429", "load: injected 429"),
    "timeout": ("APITimeoutError",),
}
"""What a failed asked run's error must contain to be excused by each ``FaultyLLM`` fault kind: the status and the
injected body's own text, or the client's timeout (a word like "rate" or "timed out" alone matched "generate" and any
timeout, issue 28)."""


def classify(
    spec: dict[str, Any],
    state: str,
    error: str | None,
    *,
    write_span: tuple[float, float] | None = None,
    ioc_stalls: list[tuple[float, float]] | None = None,
    llm_hits: dict[str, list[str]] | None = None,
) -> tuple[str, str | None]:
    """Judge one run's final state: ``("expected", None)``, ``("ioc_stall", why)`` or ``("llm_fault", why)`` for a
    failure an injected fault explains (``why`` names the fault and the run it hit), ``("unexpected", None)``.

    - ``spec``: the run's spec (``id``, ``kind``: read/write/python/ask, ``action``: none/approve/reject/timeout);
      a run approved or without a request must complete, a rejected one end ``rejected``, one left to time out
      end ``timed_out`` (neither accepts the other's outcome).
    - ``write_span``: epoch seconds from the start of the run's ``write_channel`` activity to its close (history);
      ``ioc_stalls``: the IOC's SIGSTOP..SIGCONT intervals (epoch seconds). An approved write run that failed with
      "write not verified" is excused only when its write overlapped a stall (a put then has no verifiable outcome:
      the safety model requires the failure).
    - ``llm_hits``: run id -> the ``FaultyLLM`` fault kinds served to that run's requests. A failed asked run is
      excused only when its error names the planner and carries the signs (:data:`LLM_FAULT_SIGNS`) of a fault
      that run was served.
    """
    wanted = {"none": "completed", "approve": "completed", "reject": "rejected", "timeout": "timed_out"}[spec["action"]]
    if state == wanted:
        return "expected", None
    why = error or ""
    if state == "failed" and spec["kind"] == "write" and "write not verified" in why and write_span is not None:
        start, end = write_span
        for stop, cont in ioc_stalls or []:
            if start <= cont and stop <= end:
                return "ioc_stall", f"IOC frozen {stop:.1f}..{cont:.1f} during the write {start:.1f}..{end:.1f}"
    if state == "failed" and spec["kind"] == "ask" and "planner:" in why:
        for kind in dict.fromkeys((llm_hits or {}).get(spec["id"], [])):
            if all(sign in why for sign in LLM_FAULT_SIGNS[kind]):
                return "llm_fault", f"injected LLM {kind} served to {spec['id']}"
    return "unexpected", None


def _write_span(history: Any) -> tuple[float, float] | None:
    """Epoch seconds from the first start of the run's ``write_channel`` activity to its last close, from the
    history (None: no write started)."""
    scheduled: set[int] = set()
    start = end = None
    for e in history.events:
        t = e.event_time.ToDatetime().timestamp()
        if e.HasField("activity_task_scheduled_event_attributes"):
            if e.activity_task_scheduled_event_attributes.activity_type.name == "write_channel":
                scheduled.add(e.event_id)
        for field in ("started", "completed", "failed", "timed_out"):
            name = f"activity_task_{field}_event_attributes"
            if e.HasField(name) and getattr(e, name).scheduled_event_id in scheduled:
                start = t if start is None and field == "started" else start
                end = t if field != "started" else end
    if start is None:
        return None
    return start, end if end is not None else time.time()


def _private_engine(a: argparse.Namespace, settings: Any, root: Path) -> PrivateDockerd | None:
    """The private ``dockerd`` the sandbox faults need (None without them), started, with the sandbox image
    copied in, and ``DOCKER_HOST`` pointed at it for the stack's worker and the checks."""
    if not (a.kill_in_sandbox or a.restart_docker):
        return None
    from tern.sandbox.image import image_ref

    (root / "logs").mkdir(parents=True, exist_ok=True)
    data_root = a.docker_root.resolve() if a.docker_root else root / "dockerd"
    engine = PrivateDockerd(data_root, root / "logs" / "dockerd.log", keep_data=a.docker_root is not None)
    engine.start()
    try:
        ref = settings.sandbox.image or image_ref()
        print(f"copying {ref} into the private dockerd at {engine.host}", file=sys.stderr)
        engine.load_image(ref)
    except BaseException:
        engine.stop()
        raise
    os.environ["DOCKER_HOST"] = engine.host
    return engine


async def _containers_left(engine: PrivateDockerd, settle_s: float = 60.0) -> int:
    """Sandbox containers (any, running or stopped) still on the private engine once every run ended; waits up to
    ``settle_s`` seconds for removals in progress (a retry's ``kill`` of the previous attempt's container)."""
    client = engine.client(10)
    deadline = time.monotonic() + settle_s
    while True:
        left = len(await asyncio.to_thread(client.api.containers, all=True, filters={"label": ["tern.sandbox=1"]}))
        if not left or time.monotonic() > deadline:
            return left
        await asyncio.sleep(2.0)


def _python_steps(results: list[Any]) -> dict[str, Any]:
    """What the python steps of the finished runs say about re-runs: steps, how many ran their code again
    (``reruns`` > 0) and how often in all, the highest execution attempt."""
    steps = [
        st.python.execution
        for r in results
        for st in r.steps
        if st.python is not None and st.python.execution is not None
    ]
    return {
        "executions": len(steps),
        "reran": sum(1 for e in steps if e.reruns),
        "reruns_total": sum(e.reruns for e in steps),
        "max_attempt": max((e.attempt for e in steps), default=0),
        "retried": sum(1 for e in steps if e.attempt > 1),
    }


def main(argv: list[str] | None = None) -> int:
    a = _args(argv)
    tmp = tempfile.mkdtemp(prefix="tern-load-")
    try:
        report = asyncio.run(_main(a, Path(tmp)))
    finally:
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print_report(report, a.json)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
