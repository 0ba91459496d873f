"""The deploy check's core (``tern replay-check``, :mod:`starters.replay_cli`): replay the histories a visibility
query selects against a build's workflow classes and report which do not replay."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

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
