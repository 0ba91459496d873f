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
from typing import TYPE_CHECKING, Annotated

import typer

from starters.common import console, err, fail, load_settings, print_json, run_async

if TYPE_CHECKING:
    from starters.replay import ReplayReport

out = console()
DEFAULT_QUERY = 'ExecutionStatus = "Running"'


def replay_check(
    query: Annotated[str, typer.Option("--query", help="Visibility query selecting the executions.")] = DEFAULT_QUERY,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Check at most this many executions.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Replay the open runs of the namespace against this build's workflow code (run before rolling out workers);
    exit 1 when any history does not replay."""
    from temporalio.service import RPCError

    from starters.client import TernClient
    from starters.replay import replay_histories
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
