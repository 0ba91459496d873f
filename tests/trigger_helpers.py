"""Helpers of the trigger tests: the ``tern`` CLI as a subprocess against a test's own services, and counting
the runs a trigger started."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from pydantic import SecretStr
from temporalio.client import Client

from tern.config import TernSettings
from tern.models import Plan
from tern.models.trigger import TriggerAction, TriggerDefinition
from tern.triggers.store import add_trigger

ROOT = Path(__file__).resolve().parent.parent
READ_PLAN = {"steps": [{"id": "read", "kind": "channel_read", "channels": ["SR:RF:CAVITY:01:VOLTAGE:RB"]}]}
WAITING_PLAN = {  # waits for an approval that never comes: the run stays open
    "steps": [{"id": "w", "kind": "control_write", "channel": "SR:RF:CAVITY:01:VOLTAGE:SP", "value": 1.6}]
}


WEBHOOK_SECRETS = {"ops-bot": "s3cret-ops-0123456789"}
"""The webhook key of :func:`webhook_trigger` (key id -> secret)."""


async def webhook_trigger(
    settings: TernSettings, address: str, prefix: str, **triggers: float
) -> tuple[TernSettings, str]:
    """Store a new webhook trigger ``<prefix>-<6 hex>`` (plan :data:`READ_PLAN` as user ``ops``, key ``ops-bot``)
    in ``settings``' database. Returns settings for the webhook API (the :data:`WEBHOOK_SECRETS`, Temporal at
    ``address``, ``triggers`` such as ``dedup_window_s`` over the defaults) and the trigger's name."""
    s = settings.model_copy(
        update={
            "chat": settings.chat.model_copy(
                update={"webhook_secrets": {k: SecretStr(v) for k, v in WEBHOOK_SECRETS.items()}}
            ),
            "temporal": settings.temporal.model_copy(update={"address": address}),
            "triggers": settings.triggers.model_copy(update=triggers),
        }
    )
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    conn = await asyncpg.connect(s.dsn)
    try:
        definition = TriggerDefinition(
            name=name,
            kind="webhook",
            action=TriggerAction(plan=Plan.model_validate(READ_PLAN), user="ops"),
            key_ids=list(WEBHOOK_SECRETS),
        )
        assert await add_trigger(conn, definition)
    finally:
        await conn.close()
    return s, name


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
