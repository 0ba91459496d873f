"""Helpers of the control-system concurrency benchmarks (``ca_concurrency``, ``pva_concurrency``): the channels, the
concurrency levels, the simulated accelerator started on free ports, the client load, and the common arguments."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHANNELS = [f"SR:MAG:VCM:{n:02d}:CURRENT:SP" for n in range(1, 73)] + [
    f"SR:MAG:HCM:{n:02d}:CURRENT:SP" for n in range(2, 30)
]  # 100 writable setpoints, -12..12 A
LEVELS = (1, 10, 50)
"""Concurrent callers of each client measurement."""


def add_arguments(parser: argparse.ArgumentParser, pool_help: str = "the client's pool") -> None:
    """The options both benchmarks take: ``--reads``, ``--writes``, ``--repeat``, ``--max-concurrency``, ``--json``."""
    parser.add_argument("--reads", type=int, default=1000, help="read operations per measurement")
    parser.add_argument("--writes", type=int, default=200, help="write operations per measurement")
    parser.add_argument("--repeat", type=int, default=5, help="measurements per figure (median reported)")
    parser.add_argument("--max-concurrency", type=int, default=8, help=pool_help)
    parser.add_argument("--json", type=Path, help="write the raw figures here")


@contextmanager
def simulator(
    env: Mapping[str, str],
    probe: Callable[[], object],
    not_yet: tuple[type[BaseException], ...],
    what: str,
    timeout_s: float = 60.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """The simulated accelerator (``python -m tern.sim``) started with ``env`` (its ports), its output in a temporary
    log; yields the process once ``probe()`` stops raising one of ``not_yet``, and terminates it afterwards.

    Raises ``SystemExit`` naming ``what`` with the log's tail when the simulator exits or does not answer within
    ``timeout_s`` seconds."""
    with tempfile.TemporaryDirectory(prefix="control-bench-") as tmp:
        log = Path(tmp) / "sim.log"
        with open(log, "wb") as fh:
            sim = subprocess.Popen(
                [sys.executable, "-m", "tern.sim"], env=dict(env), stdout=fh, stderr=subprocess.STDOUT
            )
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    probe()
                    break
                except not_yet:
                    if sim.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(f"{what} did not start: " + log.read_text()[-2000:]) from None
            yield sim
        finally:
            sim.terminate()
            sim.wait(10)


async def client_ops(client: Any, concurrency: int, n: int, kind: str, level: Any) -> float:
    """ops/s of ``n`` client operations spread over ``concurrency`` callers, each on its own channels.

    Args:
        client: a ``ChannelAccessClient`` or ``PVAccessClient`` (same methods).
        kind: ``read`` (``read_value``) or a write (``write_channel`` of values 2..8 A, which must verify).
        level: the writes' :class:`~tern.models.Verification`.

    Raises ``RuntimeError`` with the record's message for a write that is not verified."""
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


def sim_env(**ports: int) -> dict[str, str]:
    """This process's environment with the simulator's ports set: ``ca=5064`` -> ``TERN_CONTROL__CA_SERVER_PORT``,
    ``pva=...`` -> ``TERN_CONTROL__PVA_SERVER_PORT``."""
    return {**os.environ, **{f"TERN_CONTROL__{k.upper()}_SERVER_PORT": str(v) for k, v in ports.items()}}
