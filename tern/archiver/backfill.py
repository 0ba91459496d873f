"""First-start history for the embedded archiver: generated from the simulator's model
(:mod:`tern.sim.history`) for each archived channel that has none yet, once (table ``archiver_backfill``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

from tern.archiver.store import ArchiveStore
from tern.control.limits import LimitsDatabase
from tern.sim.accelerator import SimulatedAccelerator
from tern.sim.history import history

log = logging.getLogger(__name__)


async def backfill(
    store: ArchiveStore,
    channels: Sequence[str],
    *,
    end: datetime,
    days: float,
    period_s: float,
    limits_path: Path,
) -> dict[str, int]:
    """Generate ``days`` of history ending at ``end`` (aware) every ``period_s`` seconds for each channel of
    ``channels`` not backfilled before; returns channel -> samples written (absent: already done or not served by
    the simulator). ``limits_path`` is the limits database the simulator serves."""
    if days <= 0 or not channels:
        return {}
    sim = SimulatedAccelerator(LimitsDatabase.load(limits_path, allow_unlisted=True))
    infos = [await store.ensure_channel(c) for c in channels]
    done = await store.backfilled([i.id for i in infos])
    start = end - timedelta(days=days)
    written: dict[str, int] = {}
    for info in infos:
        if info.id in done:
            continue
        rows = await asyncio.to_thread(history, sim, info.name, start, end, period_s)
        if rows:
            await store.append(info.id, rows)
            written[info.name] = len(rows)
            log.info("backfilled %s: %d samples", info.name, len(rows))
        await store.mark_backfilled(info.id, int(start.timestamp()), int(end.timestamp()), len(rows))
    return written
