"""``tern replay-check``: the deploy check. Replays the histories of the namespace's open runs (by default every
``Running`` execution: runs waiting for approval, python steps, the freeze workflow, ingestion) against the
workflow code of this build, before its workers are rolled out.

The histories come from a visibility query (``Client.list_workflows(query).map_histories()``) and go through the
SDK's ``Replayer`` with the worker's workflow types and the pydantic data converter; a history the new code cannot
replay (``NondeterminismError``: a command added, removed or reordered without ``workflow.patched``) is listed with
its workflow id, type and error, and the command exits 1, so a pipeline stops before the rollout. Exit 0 when
every history replays; 2 for bad input; 1 also when Temporal cannot be reached. ``--json`` prints the report.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from pydantic import BaseModel

from starters.common import console, err, fail, load_settings, print_json, run_async

out = console()
DEFAULT_QUERY = 'ExecutionStatus = "Running"'
PROGRESS_EVERY = 50


class ReplayFailure(BaseModel):
    """One history the current code could not replay."""

    workflow_id: str
    run_id: str
    workflow_type: str
    error: str


class ReplayReport(BaseModel):
    """What ``tern replay-check`` found: how many histories replayed and which did not."""

    query: str
    checked: int
    failures: list[ReplayFailure]


async def replay_histories(
    client: Any, query: str, workflows: Sequence[type], *, progress: Any = None, limit: int | None = None
) -> ReplayReport:
    """Replay the histories of the executions ``query`` (a visibility list filter) selects against ``workflows``.

    Args:
        client: a connected ``temporalio.client.Client`` (its data converter decodes the histories' payloads).
        query: visibility query, e.g. ``ExecutionStatus = "Running"``.
        workflows: the workflow classes of this build (``worker.main.WORKFLOWS``).
        progress: called with the number checked so far every :data:`PROGRESS_EVERY` histories (optional).
        limit: stop after this many executions (None: all).

    Returns a :class:`ReplayReport`; replay failures are in it, not raised. Raises ``RPCError`` when the list or a
    history cannot be fetched."""
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.worker import Replayer

    replayer = Replayer(workflows=list(workflows), data_converter=pydantic_data_converter)
    histories = client.list_workflows(query, limit=limit).map_histories()
    failures: list[ReplayFailure] = []
    checked = 0
    async with replayer.workflow_replay_iterator(histories) as results:
        async for r in results:
            checked += 1
            if r.replay_failure is not None:
                first = r.history.events[0] if r.history.events else None
                wtype = first.workflow_execution_started_event_attributes.workflow_type.name if first else "?"
                failures.append(
                    ReplayFailure(
                        workflow_id=r.history.workflow_id,
                        run_id=r.history.run_id,
                        workflow_type=wtype,
                        error=str(r.replay_failure)[:2000],
                    )
                )
            if progress is not None and checked % PROGRESS_EVERY == 0:
                progress(checked)
    return ReplayReport(query=query, checked=checked, failures=failures)


def replay_check(
    query: Annotated[str, typer.Option("--query", help="Visibility query selecting the executions.")] = DEFAULT_QUERY,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Check at most this many executions.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Replay the open runs of the namespace against this build's workflow code (run before rolling out workers);
    exit 1 when any history does not replay."""
    from temporalio.service import RPCError

    from starters.client import TernClient
    from worker.main import WORKFLOWS

    if not query.strip():
        fail("--query must not be empty")
    s = load_settings()

    async def go() -> ReplayReport:
        client = (await TernClient.connect(s)).client
        try:
            return await replay_histories(
                client, query, WORKFLOWS, progress=lambda n: err.print(f"replayed {n} histories ..."), limit=limit
            )
        except RPCError as exc:
            fail(f"cannot list or fetch the histories ({query}): {exc}", 1)

    report = run_async(go())
    if as_json:
        print_json(report.model_dump(mode="json"))
    else:
        out.print(f"replayed {report.checked} histories ({report.query}): {len(report.failures)} failed")
        for f in report.failures:
            out.print(f"  {f.workflow_type} {f.workflow_id} ({f.run_id}): {f.error}", markup=False, highlight=False)
    if report.failures:
        sys.stdout.flush()
        raise typer.Exit(1)
