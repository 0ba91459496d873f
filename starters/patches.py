"""Patch ids and the open runs that recorded them (``tern patches``; docs/how-to/upgrade-workers.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel

from starters.common import err

if TYPE_CHECKING:
    from temporalio.client import Client


class PatchCount(BaseModel):
    """One patch id: how the code asks for it and how many open runs recorded it."""

    patch_id: str
    in_code: str  # "patched", "deprecated", or "absent" (recorded by open runs, no longer in the code)
    open_runs: int


class PatchReport(BaseModel):
    """``tern patches --json``."""

    query: str
    open_runs: int
    patches: list[PatchCount]


async def patch_report(client: Client, query: str = 'ExecutionStatus = "Running"') -> PatchReport:
    """Count, over the executions of ``query`` (default the open ones), how many recorded each patch id in
    ``TemporalChangeVersion`` (per-request ids ``<patch>:<step>`` count toward their patch, once per run), for every
    id in :data:`workflows.patches.PATCHES` and every other id found. Raises ``temporalio.service.RPCError``."""
    from temporalio.common import SearchAttributeKey

    from workflows.patches import PATCHES, family

    key = SearchAttributeKey.for_keyword_list("TemporalChangeVersion")
    counts = dict.fromkeys(PATCHES, 0)
    n = 0
    async for wf in client.list_workflows(query):
        n += 1
        if n % 500 == 0:
            err.print(f"read {n} executions ...")
        for pid in {family(v) for v in (wf.typed_search_attributes.get(key) or [])}:
            counts[pid] = counts.get(pid, 0) + 1
    return PatchReport(
        query=query,
        open_runs=n,
        patches=[PatchCount(patch_id=p, in_code=PATCHES.get(p, "absent"), open_runs=c) for p, c in counts.items()],
    )
