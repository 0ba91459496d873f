"""The embedded archiver's sampler: Channel Access monitors on the archived channels, written to PostgreSQL.

camonitor semantics (pyepics ``PV(..., auto_monitor=True, form="time")``, https://pyepics.github.io/pyepics/pv.html):
every update the IOC posts arrives in a callback with ``value``, ``timestamp`` (the IOC's, POSIX seconds),
``severity`` and ``status``; the first callback carries the current value on connection. Callbacks run in
libca's threads and only append to a thread-safe buffer; :meth:`ChannelMonitor.flush` (an asyncio task) moves
the buffer to the database once per ``flush_period_s`` with COPY, so the ingest rate is not bound by round trips.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from tern.archiver.store import ArchiveStore, ChannelInfo, Row
from tern.control.ca_context import attach_thread

log = logging.getLogger(__name__)

_NATIVE_TO_PAYLOAD = {1: "SCALAR_SHORT", 2: "SCALAR_FLOAT", 3: "SCALAR_ENUM", 4: "SCALAR_BYTE", 5: "SCALAR_INT"}
"""Channel Access native type (``ftype % 7``: 0 STRING, 1 SHORT, 2 FLOAT, 3 ENUM, 4 CHAR, 5 LONG, 6 DOUBLE; the
DBR_, STS_, TIME_, GR_ and CTRL_ families are blocks of 7) to the Appliance's PayloadType; anything else (DOUBLE,
or not yet connected) is archived as SCALAR_DOUBLE."""


def payload_type(ftype: int | None) -> str:
    """The Appliance PayloadType name for a CA field type (pyepics ``PV.ftype``), see :data:`_NATIVE_TO_PAYLOAD`."""
    return "SCALAR_DOUBLE" if ftype is None or ftype < 0 else _NATIVE_TO_PAYLOAD.get(ftype % 7, "SCALAR_DOUBLE")


class ChannelMonitor:
    """Monitors ``channels`` and archives every update into ``store``.

    Args:
        store: where samples go.
        channels: channel names to monitor.
        flush_period_s: how often buffered samples are written, seconds.
    """

    def __init__(self, store: ArchiveStore, channels: Sequence[str], flush_period_s: float = 1.0) -> None:
        self.store = store
        self.names = list(channels)
        self.flush_period_s = flush_period_s
        self._buf: dict[str, list[Row]] = defaultdict(list)
        self._lock = threading.Lock()
        self._pvs: list[Any] = []
        self._info: dict[str, ChannelInfo] = {}
        self.written = 0

    def _callback(self, pvname: str = "", value: Any = None, timestamp: float | None = None, **kw: Any) -> None:
        try:
            v = float(value[0] if hasattr(value, "__len__") and not isinstance(value, str) else value)
        except (TypeError, ValueError, IndexError):
            return  # strings and empty arrays are not archived by Tern
        if not math.isfinite(v) or timestamp is None:
            return
        secs = int(timestamp)
        nanos = round((timestamp - secs) * 1e9) % 1_000_000_000
        row = (secs, nanos, v, int(kw.get("severity") or 0), int(kw.get("status") or 0))
        with self._lock:
            self._buf[pvname].append(row)

    async def start(self) -> None:
        """Register the channels (precision and units read once over CA) and subscribe to their updates."""

        def subscribe() -> list[tuple[str, int, str, str, tuple[str, ...]]]:
            epics = attach_thread()
            found: list[tuple[str, int, str, str, tuple[str, ...]]] = []
            for name in self.names:
                pv = epics.PV(name, form="time", auto_monitor=True, callback=self._callback, connection_timeout=5.0)
                self._pvs.append(pv)
            for pv in self._pvs:
                labels: tuple[str, ...] = ()
                prec, units, kind = 0, "", "SCALAR_DOUBLE"
                if pv.wait_for_connection(timeout=5.0):
                    ctrl = pv.get_ctrlvars() or {}
                    prec, units = int(ctrl.get("precision") or 0), str(ctrl.get("units") or "")
                    kind = payload_type(pv.ftype)
                    if kind == "SCALAR_ENUM":
                        labels = tuple(str(x) for x in ctrl.get("enum_strs") or ())
                else:
                    log.warning("channel %s did not connect; archived when it does", pv.pvname)
                found.append((pv.pvname, prec, units, kind, labels))
            return found

        for name, prec, units, kind, labels in await asyncio.to_thread(subscribe):
            self._info[name] = await self.store.ensure_channel(name, prec, units, kind, labels)

    def connected(self, name: str) -> bool | None:
        """Whether the monitored channel ``name`` is connected now; None when it is not monitored here."""
        for pv in self._pvs:
            if pv.pvname == name:
                return bool(pv.connected)
        return None

    async def flush(self) -> int:
        """Write what the callbacks buffered; returns the number of samples written."""
        with self._lock:
            taken, self._buf = self._buf, defaultdict(list)
        n = 0
        try:
            for name in list(taken):
                info = self._info.get(name) or await self.store.ensure_channel(name)
                self._info[name] = info
                n += await self.store.append(info.id, taken[name])
                del taken[name]
        finally:
            if taken:  # not written (database error): back in front of what arrived meanwhile
                with self._lock:
                    for name, rows in taken.items():
                        self._buf[name][0:0] = rows
            self.written += n
        return n

    async def run(self) -> None:
        """Flush every ``flush_period_s`` until cancelled (then flush once more)."""
        try:
            while True:
                await asyncio.sleep(self.flush_period_s)
                try:
                    await self.flush()
                except Exception:  # keep sampling through a database hiccup; unwritten samples stay buffered
                    log.exception("archiver flush failed")
        finally:
            await asyncio.shield(self.flush())

    def stop(self) -> None:
        """Clear the subscriptions."""
        for pv in self._pvs:
            pv.clear_callbacks()
            pv.disconnect()
        self._pvs.clear()
