"""One ``archiver_read`` step's work, Temporal-free: resolve the range, choose the binning, fetch every channel
concurrently, store the samples as one artifact, and summarise. The activity (``activities/archiver.py``) only
adapts errors."""

from __future__ import annotations

from datetime import timedelta

import asyncpg

from tern.archiver.binning import Binning, auto_binning
from tern.archiver.client import ArchiverClient, ArchiverError
from tern.archiver.series import SERIES_MEDIA_TYPE, Series, pack
from tern.config import TernSettings
from tern.db import Conn
from tern.models.archiver import ArchiverReadInput, ArchiverReadOutput, SeriesSummary
from tern.models.timerange import resolve, zone
from tern.sandbox.artifacts import store_artifact


def choose_binning(text: str, span_s: float, target_points: int) -> Binning | None:
    """``auto`` -> :func:`auto_binning`, ``raw`` -> None, else ``operator_N``. Raises ``BinningError``."""
    if text == "auto":
        return auto_binning(span_s, target_points)
    if text == "raw":
        return None
    return Binning.parse(text)


async def read_archived(
    settings: TernSettings, db: asyncpg.Pool | Conn, inp: ArchiverReadInput, client: ArchiverClient | None = None
) -> ArchiverReadOutput:
    """Fetch ``inp.channels`` over the step's range and store them as one artifact of ``inp.workflow_id``/``step_id``.

    Channels without data (not archived, nothing in the range) are summarised with ``error`` set; no artifact is
    stored when no channel has data. Raises ``TimeRangeError`` / ``BinningError`` (bad step), or
    ``ArchiverUnavailable`` / ``ArchiverProtocolError`` (the archiver failed for every channel alike)."""
    start, end = resolve(
        range_text=inp.range,
        start=inp.start,
        end=inp.end,
        now=inp.now,
        tz=zone(settings.archiver.facility_timezone),
        max_span=timedelta(hours=settings.archiver.max_span_h),
    )
    binning = choose_binning(inp.binning, (end - start).total_seconds(), settings.archiver.target_points)
    own = client is None
    c = client or ArchiverClient(
        settings.archiver.base_url, timeout_s=settings.archiver.timeout_s, attempts=settings.archiver.attempts
    )
    try:
        found = await c.get_each(inp.channels, start, end, binning)
    finally:
        if own:
            await c.close()
    unavailable = [r for r in found.values() if isinstance(r, ArchiverError) and not hasattr(r, "channel")]
    if unavailable and len(unavailable) == len(found):
        raise unavailable[0]  # the archiver itself failed: let the activity retry
    ok: list[Series] = [r for r in found.values() if isinstance(r, Series)]
    summaries = [
        r.summary() if isinstance(r, Series) else SeriesSummary(channel=ch, count=0, error=str(r))
        for ch, r in found.items()
    ]
    out = ArchiverReadOutput(
        start=start, end=end, binning=binning.label if binning else None, series=summaries, samples=sum(map(len, ok))
    )
    if ok:
        content = pack(ok)
        out.artifact_id = await store_artifact(
            db, content, workflow_id=inp.workflow_id, step_id=inp.step_id, name=f"{inp.step_id}.json.gz",
            media_type=SERIES_MEDIA_TYPE,
        )  # fmt: skip
        out.artifact_bytes = len(content)
    return out
