"""Helpers shared by the ``tern`` command-line apps: error exits, settings loading, JSON output.

Start-up time (issue 17): this module and the command-line apps import only typer, rich's console and light
``tern`` modules at load; anything heavy (pydantic-settings, temporalio, docker, asyncpg, ``workflows``) is
imported inside the command that needs it, so ``tern --help`` and ``tern status`` answer at once.
``tests/test_cli_startup.py`` checks it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer
from rich.console import Console

if TYPE_CHECKING:
    from tern.config import TernSettings
    from tern.models import AgentRunResult

T = TypeVar("T")
PIPE_WIDTH = 400  # columns for output that is not a terminal: tables are not cut to 80 columns in a pipe or file


def console(*, stderr: bool = False) -> Console:
    """A rich console for CLI output: the terminal's width on a terminal, ``PIPE_WIDTH`` columns otherwise (rich
    assumes 80 for a pipe, and would cut table cells: ``tern ariel status | cat`` showed "complet…")."""
    c = Console(stderr=stderr, soft_wrap=True)
    if not c.is_terminal:
        c.width = PIPE_WIDTH
    return c


err = console(stderr=True)


DEMO_OPERATOR = "demo-operator"
"""The approver the demo acts as (``tern demo --auto-approve``; defined here so the CLI help needs no demo import)."""


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code`` (2: bad input, 1: runtime failure)."""
    err.print(f"error: {message}", markup=False, highlight=False)
    raise typer.Exit(code)


def load_settings() -> TernSettings:
    """``TernSettings()``, or exit 2 naming the bad setting by its path and environment name
    (``bad configuration: sandbox.timeout_s (TERN_SANDBOX__TIMEOUT_S): ...``)."""
    from pydantic import ValidationError

    from tern.config import TernSettings, setting_error

    try:
        return TernSettings()
    except ValidationError as exc:
        fail(f"bad configuration: {setting_error(exc)}")
    except ValueError as exc:
        fail(f"bad configuration: {exc}")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro``; turn Tern errors into CLI messages and exit statuses (user error 2, unavailable 1)."""
    import asyncio

    from starters.client import TernUnavailable, TernUserError

    try:
        return asyncio.run(coro)
    except TernUserError as exc:
        fail(str(exc), 2)
    except TernUnavailable as exc:
        fail(str(exc), 1)


def run_family_query(run_id: str) -> str:
    """The visibility query for a run and its child workflows (python steps run as ``RUN_ID.STEP``):
    ``RootWorkflowId = "RUN_ID"`` (a system search attribute of Temporal Server 1.27 and later; every workflow of
    one tree carries its root's id). Raises ``ValueError`` for an id holding a double quote."""
    if '"' in run_id:
        raise ValueError(f"run id {run_id!r} holds a double quote")
    return f'RootWorkflowId = "{run_id}"'


def run_family_url(settings: TernSettings, run_id: str) -> str:
    """Web UI link to the workflow list filtered to one run and its python steps (the list's ``?query=``
    parameter, as ``TernSettings.pending_url``)."""
    from urllib.parse import quote

    query = quote(run_family_query(run_id), safe="")
    return f"{settings.ui_url}/namespaces/{settings.temporal.namespace}/workflows?query={query}"


def search_lines(res: AgentRunResult) -> list[str]:
    """One line per logbook_search step of an ``AgentRunResult``: the mode that ran and the embedding model."""
    lines = []
    for step in res.steps:
        if step.kind == "logbook_search" and step.search_mode_used:
            model = f" with {step.embedding_model}" if step.embedding_model else ""
            lines.append(f"logbook search ({step.step_id}): {step.search_mode_used}{model}, {step.message}")
    return lines


def with_run_id(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` (a run's status or result as JSON) with ``run_id`` beside ``workflow_id`` and ``child_run_id``
    beside ``child_workflow_id``: the keys the ``--json`` outputs had before Tern's id was named for what it is
    (a Temporal Workflow ID, see ``tern.models.ids``); scripts may read either."""
    out = dict(data)
    for new, old in (("workflow_id", "run_id"), ("child_workflow_id", "child_run_id")):
        if new in out:
            out[old] = out[new]
    return out


def started_json(settings: TernSettings, workflow_id: str) -> dict[str, Any]:
    """What ``tern run --json``, ``tern ask --json`` and the MCP tools that start a run report: ``workflow_id`` (and
    ``run_id``, the same id, see :func:`with_run_id`), ``status`` ``"started"`` and ``ui_url``, the run's Web UI
    link."""
    return {
        "workflow_id": workflow_id,
        "run_id": workflow_id,
        "status": "started",
        "ui_url": settings.run_url(workflow_id),
    }


def print_json(obj: Any) -> None:
    """Write ``obj`` as indented JSON on stdout (datetimes and the like as strings)."""
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def hard_exit(code: int) -> NoReturn:
    """Flush and leave with ``os._exit``: a process that used the Temporal client can crash at interpreter
    exit (sdk-python issue 300), which would turn a success into a signal exit and lose buffered output. Spans
    still buffered for the OTLP exporter are exported first (when tracing was set up at all)."""
    telemetry = sys.modules.get("worker.telemetry")
    if telemetry is not None:
        telemetry.flush_tracing()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
