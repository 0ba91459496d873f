"""Helpers of the trigger tests: the ``tern`` CLI as a subprocess against a test's own services, and counting
the runs a trigger started."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from temporalio.client import Client

from tern.config import TernSettings

ROOT = Path(__file__).resolve().parent.parent
READ_PLAN = {"steps": [{"id": "read", "kind": "channel_read", "channels": ["SR:RF:CAVITY:01:VOLTAGE:RB"]}]}
WAITING_PLAN = {  # waits for an approval that never comes: the run stays open
    "steps": [{"id": "w", "kind": "control_write", "channel": "SR:RF:CAVITY:01:VOLTAGE:SP", "value": 1.6}]
}


def cli_env(settings: TernSettings, address: str, **extra: str) -> dict[str, str]:
    """Environment for ``python -m starters.cli`` on ``settings``' database, task queue and IOC, at Temporal
    ``address``; no LLM unless ``extra`` sets one."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TERN_")}
    return {
        **env,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "TERN_DATA_DIR": str(settings.data_dir),
        "TERN_TEMPORAL__ADDRESS": address,
        "TEMPORAL_ADDRESS": address,
        "TERN_TEMPORAL__TASK_QUEUE": settings.temporal.task_queue,
        "TERN_DATABASE__URL": settings.dsn,
        "TERN_CONTROL__CA_SERVER_PORT": str(settings.control.ca_server_port),
        "TERN_CONTROL__LIMITS_PATH": str(settings.control.limits_path),
        **extra,
    }


def tern(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``tern ARGS`` (``python -m starters.cli``)."""
    return subprocess.run(
        [sys.executable, "-m", "starters.cli", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def write_plan(path: Path, plan: dict[str, Any]) -> Path:
    path.write_text(json.dumps(plan))
    return path


async def runs_with_prefix(client: Client, prefix: str) -> list[str]:
    """Workflow IDs starting with ``prefix`` (visibility: ``WorkflowId STARTS_WITH``)."""
    return [wf.id async for wf in client.list_workflows(f'WorkflowId STARTS_WITH "{prefix}"')]
