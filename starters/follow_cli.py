"""``tern follow RUN`` and ``tern ask --follow``: print a run's progress live as it publishes it (its memo,
:mod:`tern.models.progress`), read by :meth:`starters.client.TernClient.follow` (a long poll on the run's
history: no polling interval, no status query, no worker asked), then its result.

On a terminal a rich progress display (spinner, steps done of the plan's total, the latest line, elapsed time)
stays at the bottom while each publication is printed above it; in a pipe only the lines are printed. With
``--json`` each publication is one JSON line ``{"progress": RunProgress}`` and the last line is
``{"result": AgentRunResult}`` (or ``{"error": "..."}`` when the run failed).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from starters.client import TernClient, TernUnavailable
from tern.models import AgentRunResult
from tern.models.progress import RunProgress

STYLE = {"waiting": "yellow", "decided": "cyan", "finished": "bold", "plan_revised": "magenta", "planned": "magenta"}
"""Colour of a printed line by its event (others plain)."""


def json_line(obj: dict[str, Any]) -> None:
    """Write ``obj`` as one compact JSON line on stdout and flush (a reader sees it at once)."""
    sys.stdout.write(json.dumps(obj, default=str, separators=(",", ":")) + "\n")
    sys.stdout.flush()


async def follow_run(client: TernClient, workflow_id: str, *, as_json: bool, out: Console) -> AgentRunResult | None:
    """Print the progress of ``workflow_id`` until it closes; return its result (None when it failed: the
    error is printed, or written as ``{"error": ...}``). Raises :class:`starters.client.TernUserError` for an
    unknown run, :class:`TernUnavailable` when Temporal does not answer."""
    seen = 0
    if as_json:
        async for p in client.follow(workflow_id):
            seen += 1
            json_line({"progress": p.model_dump(mode="json")})
    else:
        columns = (
            SpinnerColumn(),
            TextColumn("[bold]{task.fields[run]}[/]"),
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            TextColumn("{task.description}", markup=False),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=out, transient=True) as bar:
            task = bar.add_task("following", total=None, run=workflow_id)
            async for p in client.follow(workflow_id):
                seen += 1
                _show(bar, task, p)
        if seen == 0:
            out.print(f"run {workflow_id} publishes no progress (started before progress publishing); its result:")
    try:
        return await client.result(workflow_id)
    except TernUnavailable as exc:
        if as_json:
            json_line({"error": str(exc)})
        else:
            out.print(f"error: {exc}", markup=False, highlight=False)
        return None


def _show(bar: Progress, task: Any, p: RunProgress) -> None:
    style = STYLE.get(p.event, "")
    bar.console.print(p.text(), style=style, markup=False, highlight=False)
    total = p.steps_total or None
    bar.update(task, total=total, completed=p.steps_done, description=p.line or p.event)
