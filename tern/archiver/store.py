"""The embedded archiver's storage in PostgreSQL (tables ``archiver_channels``, ``archiver_samples``,
``archiver_backfill``; migration 300): append samples, read them raw or binned as :class:`Series`.

Binning is done by SQL over whole bins of ``bin_s`` seconds aligned to the POSIX epoch (``secs / bin_s``); each
bin's sample is stamped with its bin's start, carries the bin's worst severity and status 0, as the Appliance's
summary post-processors do (archiver-appliance/epicsarchiverap, ``SummaryStatsPostProcessor``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import asyncpg

from tern.archiver.binning import Binning
from tern.archiver.series import Series
from tern.db import Conn

Row = tuple[int, int, float, int, int]
"""One sample: ``(secs, nanos, value, severity, status)``."""

_AGG = {
    "mean": "avg(val)",
    "min": "min(val)",
    "max": "max(val)",
    "count": "count(*)::float8",
    "firstSample": "(array_agg(val ORDER BY secs, nanos))[1]",
    "lastSample": "(array_agg(val ORDER BY secs DESC, nanos DESC))[1]",
    "median": "percentile_cont(0.5) WITHIN GROUP (ORDER BY val)",
    "std": "coalesce(stddev_pop(val), 0)",
}


DBR_TYPES = ("SCALAR_BYTE", "SCALAR_SHORT", "SCALAR_INT", "SCALAR_ENUM", "SCALAR_FLOAT", "SCALAR_DOUBLE")
"""The channel types the embedded archiver stores, named as the Appliance's ``EPICSEvent.proto`` PayloadType."""


@dataclass(frozen=True)
class ChannelInfo:
    """An archived channel: its id, name, display precision and units, its type (one of :data:`DBR_TYPES`) and,
    for an enum, its labels in order."""

    id: int
    name: str
    prec: int
    units: str
    dbr_type: str = "SCALAR_DOUBLE"
    enum_strs: tuple[str, ...] = ()


_INFO_COLS = "id, name, prec, units, dbr_type, enum_strs"


def _info(row: asyncpg.Record) -> ChannelInfo:
    return ChannelInfo(
        row["id"], row["name"], row["prec"], row["units"], row["dbr_type"], tuple(row["enum_strs"] or ())
    )


def _split(t: float) -> tuple[int, int]:
    """POSIX seconds as ``(whole seconds, nanoseconds)``, the way samples are stored."""
    secs = math.floor(t)
    return secs, min(round((t - secs) * 1e9), 999_999_999)


class ArchiveStore:
    """Samples in PostgreSQL. ``db`` is an asyncpg pool or connection (schema migrated, see ``tern.db``)."""

    def __init__(self, db: asyncpg.Pool | Conn) -> None:
        self.db = db

    async def channel(self, name: str) -> ChannelInfo | None:
        """The archived channel ``name``, or None when it is not archived."""
        row = await self.db.fetchrow(f"SELECT {_INFO_COLS} FROM archiver_channels WHERE name = $1", name)
        return None if row is None else _info(row)

    async def channels(self, pattern: str = "%") -> list[str]:
        """Names of archived channels matching the SQL LIKE ``pattern``, sorted."""
        rows = await self.db.fetch("SELECT name FROM archiver_channels WHERE name LIKE $1 ORDER BY name", pattern)
        return [r["name"] for r in rows]

    async def ensure_channel(
        self,
        name: str,
        prec: int = 0,
        units: str = "",
        dbr_type: str = "SCALAR_DOUBLE",
        enum_strs: Sequence[str] = (),
    ) -> ChannelInfo:
        """Register ``name`` for archiving (idempotent; precision, units, type and enum labels are updated) and
        return it. ``dbr_type`` is one of :data:`DBR_TYPES` (``ValueError`` otherwise)."""
        if dbr_type not in DBR_TYPES:
            raise ValueError(f"archiver channel {name}: type {dbr_type!r} is not one of {', '.join(DBR_TYPES)}")
        row = await self.db.fetchrow(
            "INSERT INTO archiver_channels (name, prec, units, dbr_type, enum_strs) VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (name) DO UPDATE SET prec = excluded.prec, units = excluded.units,"
            " dbr_type = excluded.dbr_type, enum_strs = excluded.enum_strs"
            f" RETURNING {_INFO_COLS}",
            name,
            prec,
            units,
            dbr_type,
            list(enum_strs),
        )
        assert row is not None
        return _info(row)

    async def channel_infos(self, names: Sequence[str]) -> list[ChannelInfo]:
        """The archived channels among ``names`` (unknown names left out), sorted by name."""
        rows = await self.db.fetch(
            f"SELECT {_INFO_COLS} FROM archiver_channels WHERE name = ANY($1::text[]) ORDER BY name", list(names)
        )
        return [_info(r) for r in rows]

    async def last_sample_secs(self, channel_id: int) -> int | None:
        """POSIX seconds of ``channel_id``'s newest sample, or None when it has none."""
        value = await self.db.fetchval("SELECT max(secs) FROM archiver_samples WHERE channel_id = $1", channel_id)
        return None if value is None else int(value)

    async def append(self, channel_id: int, rows: Iterable[Row]) -> int:
        """Append samples of one channel with COPY; samples already stored (same time) are skipped. Returns the
        number of rows given."""
        records = [(channel_id, *r) for r in rows]
        if not records:
            return 0
        cols = ["channel_id", "secs", "nanos", "val", "severity", "status"]
        if isinstance(self.db, asyncpg.Pool):
            async with self.db.acquire() as conn:
                await self._copy(conn, records, cols)
        else:
            await self._copy(self.db, records, cols)
        return len(records)

    @staticmethod
    async def _copy(conn: Conn, records: list[tuple[int, int, int, float, int, int]], cols: list[str]) -> None:
        async with conn.transaction():
            await conn.execute("CREATE TEMP TABLE IF NOT EXISTS _arch_in (LIKE archiver_samples) ON COMMIT DELETE ROWS")
            await conn.copy_records_to_table("_arch_in", records=records, columns=cols)
            await conn.execute("INSERT INTO archiver_samples SELECT * FROM _arch_in ON CONFLICT DO NOTHING")

    async def read(self, info: ChannelInfo, from_secs: float, to_secs: float, binning: Binning | None) -> Series:
        """Samples of ``info`` with ``from_secs <= time <= to_secs`` (POSIX seconds), raw or binned, in time
        order, with the Appliance ``meta`` (``name``, ``PREC``, ``EGU``). An empty range gives an empty series."""
        # (secs, nanos) compared as a pair: a sample at 04:00:00.3 is after a range ending at 04:00:00
        lo, lo_ns = _split(from_secs)
        hi, hi_ns = _split(to_secs)
        in_range = "channel_id = $1 AND (secs, nanos) BETWEEN ($2::bigint, $3::bigint) AND ($4::bigint, $5::bigint)"
        if binning is None:
            rows = await self.db.fetch(
                "SELECT secs, nanos, val, severity, status FROM archiver_samples"
                f" WHERE {in_range} ORDER BY secs, nanos",
                info.id,
                lo,
                lo_ns,
                hi,
                hi_ns,
            )
        else:
            rows = await self.db.fetch(
                f"SELECT (secs / $6) * $6 AS secs, 0 AS nanos, {_AGG[binning.operator]} AS val,"
                " max(severity) AS severity, 0 AS status FROM archiver_samples"
                f" WHERE {in_range} GROUP BY 1 ORDER BY 1",
                info.id,
                lo,
                lo_ns,
                hi,
                hi_ns,
                binning.bin_s,
            )
        s = Series(
            channel=info.name,
            meta={"name": info.name, "PREC": str(info.prec), **({"EGU": info.units} if info.units else {})},
            binning=binning.label if binning else None,
        )
        s.secs = [r[0] for r in rows]
        s.nanos = [r[1] for r in rows]
        s.vals = [r[2] for r in rows]
        s.severity = [r[3] for r in rows]
        s.status = [r[4] for r in rows]
        return s

    async def backfilled(self, channel_ids: Sequence[int]) -> set[int]:
        """The channel ids among ``channel_ids`` whose history was already generated."""
        rows = await self.db.fetch(
            "SELECT channel_id FROM archiver_backfill WHERE channel_id = ANY($1::int[])", list(channel_ids)
        )
        return {r["channel_id"] for r in rows}

    async def mark_backfilled(self, channel_id: int, from_secs: int, to_secs: int, samples: int) -> None:
        """Record that ``channel_id``'s history ``[from_secs, to_secs]`` was generated (``samples`` rows)."""
        await self.db.execute(
            "INSERT INTO archiver_backfill (channel_id, from_secs, to_secs, samples) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (channel_id) DO NOTHING",
            channel_id,
            from_secs,
            to_secs,
            samples,
        )
