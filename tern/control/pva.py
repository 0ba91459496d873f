"""PVAccess (EPICS 7) operations through p4p: read channels with metadata, write setpoints with verification.

The same protocol as Channel Access (:mod:`tern.control.channel_access`), with PVAccess primitives:

- a *stamped read* is a PVAccess get of the ``NTScalar``: ``value`` and ``timeStamp`` (set by the server, the
  IOC's clock; POSIX epoch, so an unset stamp, 0 s, counts as none), never a monitor cache;
- a *put with completion* is a PVAccess put with ``record[block=true]`` (p4p ``wait=True``): the server answers
  when the put has been processed (a QSRV IOC after the record processed; the simulator after its model took the
  value), as Channel Access' put callback does. A put the server refuses (``RemoteError``) was delivered but not
  applied: it is recorded, not verified, as a CA put the IOC clamps;
- verification levels ``none``, ``callback`` and ``readback`` are checked exactly as for Channel Access (the
  setpoint's timestamp must advance past the one read before the put; the readback must be stamped no earlier
  than that and within tolerance), with :mod:`tern.control.verification`'s tolerances.

Structured values (``NTTable``, ``NTNDArray`` images, waveforms longer than :data:`INLINE_ARRAY_MAX`) are not put
into a :class:`~tern.models.ChannelReading` whole: the reading carries a one-line summary (type, shape, dtype,
min/max) and :func:`structured_value` returns the data (numpy arrays / column dict) for the artifact store.

Name resolution: the client finds servers through ``EPICS_PVA_NAME_SERVERS`` (TCP search, PVXS) built from
``TernSettings.control.pva_addr_list`` and ``pva_server_port`` (:func:`client_config`), with UDP search off, so
two simulators on one host (tests in parallel) never answer for each other.

p4p: https://epics-base.github.io/p4p/ (``p4p.client.thread.Context``: thread-safe, one per process).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Unpack

import numpy as np

from tern import tracing
from tern.control.channel_io import ChannelIOError, WriteOptions, readback_name
from tern.control.verification import (
    SmallChangeMode,
    Stamped,
    effective_tolerance,
    finite,
    put_window_closed,
    recorder,
    reference,
    stamp,
    verify_put,
)
from tern.models import ChannelReading, Verification, WriteRecord

INLINE_ARRAY_MAX = 64
"""Most elements of a waveform a reading carries inline; a longer one is summarised (and stored as an artifact by
the caller)."""


class PVAccessError(ChannelIOError):
    """A PVAccess channel could not be connected, read or written; the message names the channel. A
    :class:`~tern.control.channel_io.ChannelIOError`, as Channel Access' errors are, so the write protocol handles
    both alike (raised by :func:`write_channel` only when nothing was written)."""


def client_config(addr_list: str, server_port: int) -> dict[str, str]:
    """The p4p client configuration (``EPICS_PVA_*``) that searches only the servers named.

    Args:
        addr_list: space-separated hosts, each ``host`` or ``host:port`` (``TernSettings.control.pva_addr_list``).
        server_port: the TCP port of a host given without one (``pva_server_port``).

    Raises ``ValueError`` for an empty list or a port that is not a number in 1..65535.
    """
    servers = []
    for entry in addr_list.split():
        host, _, port = entry.partition(":")
        p = port or str(server_port)
        if not p.isdigit() or not 0 < int(p) < 65536:
            raise ValueError(f"PVAccess server {entry!r}: port must be a number in 1..65535")
        servers.append(f"{host}:{p}")
    if not servers:
        raise ValueError("no PVAccess server address given (TERN_CONTROL__PVA_ADDR_LIST is empty)")
    return {
        "EPICS_PVA_NAME_SERVERS": " ".join(servers),
        "EPICS_PVA_ADDR_LIST": "",
        "EPICS_PVA_AUTO_ADDR_LIST": "NO",
    }


def make_context(conf: Mapping[str, str]) -> Any:
    """A p4p client context for ``conf`` (:func:`client_config`); the process environment is not read."""
    from p4p.client.thread import Context

    return Context("pva", conf=dict(conf), useenv=False)


def _unwrap(v: Any) -> Any:
    """p4p's unwrapped form of a value (``ntfloat``/``ntndarray``...); p4p's client does not always unwrap (seen
    for several channels fetched in one ``get``), so a raw ``NTScalar``/``NTNDArray`` is unwrapped here."""
    from p4p import Value
    from p4p.nt import NTNDArray, NTScalar

    if not isinstance(v, Value):
        return v
    sid = _structure_id(v)
    if sid.startswith("epics:nt/NTScalar"):
        return NTScalar.unwrap(v)
    if sid.startswith("epics:nt/NTNDArray"):
        return NTNDArray.unwrap(v)
    return v


def _get(ctx: Any, name: str, timeout: float) -> Any:
    """One PVAccess get of ``name`` (unwrapped NT value); raises :class:`PVAccessError` naming the channel."""
    from p4p.client.thread import Disconnected, RemoteError

    try:
        return _unwrap(ctx.get(name, timeout=timeout))
    except TimeoutError as exc:
        raise PVAccessError(f"PVAccess channel {name} did not answer within {timeout:g} s") from exc
    except (RemoteError, Disconnected) as exc:
        raise PVAccessError(f"PVAccess get of {name} failed: {exc}") from exc


def read_stamped(ctx: Any, name: str, timeout: float) -> Stamped:
    """Value and timestamp of ``name`` read from the server. Raises :class:`PVAccessError` when it does not
    answer."""
    v = _get(ctx, name, timeout)
    return Stamped(finite(v), stamp(getattr(v, "timestamp", None)))


def read_value(ctx: Any, name: str, timeout_s: float = 2.0) -> float:
    """The current numeric value of ``name``. Raises :class:`PVAccessError` when it does not answer or the value
    is not a finite number."""
    v = read_stamped(ctx, name, timeout_s).value
    if v is None:
        raise PVAccessError(f"PVAccess channel {name} holds no finite number")
    return v


def _structure_id(v: Any) -> str:
    raw = getattr(v, "raw", v)
    try:
        return str(raw.getID())
    except AttributeError:
        return ""


def structured_value(v: Any) -> dict[str, Any] | None:
    """The data of a structured PVAccess value, or None for a scalar, enum or short waveform.

    Returns ``{"kind": "image", "array": ndarray (rows, columns[, colour])}`` for an ``NTNDArray``,
    ``{"kind": "table", "columns": {label: ndarray}}`` for an ``NTTable``, ``{"kind": "waveform", "array":
    ndarray}`` for a waveform longer than :data:`INLINE_ARRAY_MAX`."""
    sid = _structure_id(v)
    if sid.startswith("epics:nt/NTNDArray"):
        return {"kind": "image", "array": np.asarray(v)}
    if sid.startswith("epics:nt/NTTable"):
        raw = getattr(v, "raw", v)
        value = raw["value"]
        return {"kind": "table", "columns": {k: np.asarray(value[k]) for k in value.keys()}}
    if isinstance(v, np.ndarray) and v.size > INLINE_ARRAY_MAX:
        return {"kind": "waveform", "array": v}
    return None


def summarise(data: dict[str, Any]) -> str:
    """A one-line description of :func:`structured_value`'s result for history and the answer."""
    if data["kind"] == "table":
        cols = data["columns"]
        rows = max((len(c) for c in cols.values()), default=0)
        return f"NTTable {rows} rows x {len(cols)} columns ({', '.join(cols)})"
    a = data["array"]
    finite = a[np.isfinite(a)] if a.dtype.kind == "f" else a
    rng = f", min {finite.min():g}, max {finite.max():g}" if finite.size and a.dtype.kind in "fiu" else ""
    what = "NTNDArray image" if data["kind"] == "image" else "waveform"
    return f"{what} {'x'.join(str(d) for d in a.shape)} {a.dtype}{rng}"


def to_npz(data: dict[str, Any]) -> bytes:
    """:func:`structured_value`'s result as an ``.npz`` file (numpy's zip of arrays, read back with
    ``numpy.load``): an image or waveform as the array ``value``; a table as one array per column. Plus ``kind``."""
    import io

    arrays = data["columns"] if data["kind"] == "table" else {"value": data["array"]}
    buf = io.BytesIO()
    np.savez_compressed(buf, kind=np.array(data["kind"]), **arrays)
    return buf.getvalue()


def _reading(name: str, v: Any) -> ChannelReading:
    raw = getattr(v, "raw", None)

    def field(path: str) -> Any:
        try:
            return raw[path] if raw is not None else None
        except (KeyError, TypeError):
            return None

    structured = structured_value(v)
    kind = None
    if structured is not None:
        value: Any = summarise(structured)
        kind = structured["kind"]
    elif isinstance(v, np.ndarray):
        value = [float(x) for x in v.tolist()]
    elif isinstance(v, str):
        value = str(v)
    elif field("value.choices") is not None:  # NTEnum: the index, as Channel Access reads an enum
        value = int(field("value.index"))
    elif isinstance(v, bool | int | np.integer):
        value = int(v)
    else:
        value = float(v)
    ts = stamp(getattr(v, "timestamp", None))
    precision = field("display.precision")
    return ChannelReading(
        channel=f"pva://{name}",
        value=value,
        units=str(field("display.units") or ""),
        timestamp=datetime.fromtimestamp(ts, UTC) if ts else None,
        severity=getattr(v, "severity", None),
        status=getattr(v, "status", None),
        lower_ctrl_limit=finite(field("control.limitLow"))
        if field("control.limitLow") != field("control.limitHigh")
        else None,
        upper_ctrl_limit=finite(field("control.limitHigh"))
        if field("control.limitLow") != field("control.limitHigh")
        else None,
        precision=int(precision) if precision is not None else None,
        structured=kind,
    )


def read_channels(ctx: Any, names: list[str], timeout_s: float = 2.0) -> list[ChannelReading]:
    """Read each channel (bare names) with units, timestamp, alarm and control limits, in parallel.

    A channel that does not answer yields a reading with ``connected=False`` and ``error`` set (the batch goes on).
    Readings are named ``pva://NAME``."""
    if not names:
        return []
    values = ctx.get(list(names), timeout=timeout_s, throw=False)
    out = []
    for name, v in zip(names, values, strict=True):
        if isinstance(v, Exception):
            why = f"not connected within {timeout_s:g} s" if isinstance(v, TimeoutError) else str(v)
            out.append(ChannelReading(channel=f"pva://{name}", value=None, connected=False, error=why))
        else:
            out.append(_reading(name, _unwrap(v)))
    return out


def _put(ctx: Any, name: str, value: float, wait: bool, timeout: float) -> str | None:
    """Put ``value``; None when the server completed it, else why not (timeout: no completion; refusal).
    Raises :class:`PVAccessError` when the put could not be sent (disconnected): nothing was written."""
    from p4p.client.thread import Disconnected, RemoteError

    try:
        ctx.put(name, value, timeout=timeout, wait=wait)
    except TimeoutError:
        return f"no put completion within {timeout:g} s"
    except RemoteError as exc:
        return f"the server refused the put: {exc}"
    except Disconnected as exc:
        raise PVAccessError(f"put to {name} was not sent: {exc}") from exc
    return None


def write_channel(
    ctx: Any,
    name: str,
    value: float,
    verification: Verification,
    *,
    previous_value: float | None,
    previous_readback: float | None = None,
    connect_timeout_s: float = 2.0,
    callback_timeout_s: float = 5.0,
    readback_timeout_s: float = 5.0,
    default_tolerance_percent: float = 0.1,
    readback_channel: str | None = None,
    small_change: SmallChangeMode = "tighten",
    readback_clock_skew_s: float = 0.0,
    put_not_after: float | None = None,
) -> WriteRecord:
    """Put ``value`` to PVAccess channel ``name`` (bare) and verify it; never retries the put.

    Arguments, levels and outcomes as :func:`tern.control.channel_access.write_channel` (same keyword arguments, units
    and rules; see the module docstring for the PVAccess primitives). The record's ``channel`` is
    ``pva://NAME``.

    Raises :class:`PVAccessError` when the channel does not answer or gives no timestamp before the put, the put
    window has closed, or the put cannot be sent; :class:`~tern.control.verification.UnverifiableChange` for a
    small change in ``refuse`` mode. Nothing was written in any of these cases.
    """
    tol = effective_tolerance(
        value,
        reference(value, previous_value, previous_readback, verification),
        verification,
        default_tolerance_percent,
        small_change,
    )
    level = verification.level
    record = recorder(f"pva://{name}", value, previous_value, level, tol, datetime.now(UTC))
    before = read_stamped(ctx, name, connect_timeout_s)  # PVAccessError here: nothing was written
    if level != "none" and before.ts is None:
        raise PVAccessError(
            f"{name} gave no timestamped reading before the put, so the put could not be verified; not writing"
        )
    if (closed := put_window_closed(name, put_not_after, "PVAccess")) is not None:
        raise PVAccessError(closed)
    if level == "none":
        why = _put(ctx, name, value, False, callback_timeout_s)
        return record(False, f"put sent; verification level 'none'{f' ({why})' if why else ''}")
    why = _put(ctx, name, value, True, callback_timeout_s)
    if why is not None:
        return record(False, why)
    try:
        return verify_put(
            functools.partial(read_stamped, ctx, timeout=connect_timeout_s),
            name,
            value,
            level,
            tol,
            before,
            record,
            readback_channel=readback_channel or readback_name(name),
            readback_timeout_s=readback_timeout_s,
            readback_clock_skew_s=readback_clock_skew_s,
            server="server",
        )
    except PVAccessError as exc:  # after the put: recorded, not verified
        return record(False, f"put completed, but verification could not read the server: {exc}")


class PVAccessClient:
    """Async PVAccess for one process, the twin of :class:`~tern.control.ca_client.ChannelAccessClient` (same
    methods, same arguments; names are bare, without ``pva://``).

    One p4p client context (thread-safe), and a bounded pool of ``max_concurrency`` threads that run the blocking
    operations; further calls wait in the pool's queue.

    Args:
        conf: the client configuration (:func:`client_config`).
        max_concurrency: most operations in flight at once, >= 1.
    """

    def __init__(self, conf: Mapping[str, str], max_concurrency: int = 8) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self.conf = dict(conf)
        self.max_concurrency = max_concurrency
        self._ctx = make_context(self.conf)
        self._pool = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="tern-pva")

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, self._ctx, *args, **kwargs))

    async def read_value(self, name: str, timeout_s: float = 2.0) -> float:
        """See :func:`read_value` (seconds; raises :class:`PVAccessError`). Span ``pva.read``."""
        with tracing.span("pva.read", {"pva.channel": name}):
            return float(await self._call(read_value, name, timeout_s))

    async def read_channels(self, names: list[str], timeout_s: float = 2.0) -> list[ChannelReading]:
        """See :func:`read_channels`. Span ``pva.read``."""
        with tracing.span("pva.read", {"pva.channels": ",".join(names)}) as span:
            readings: list[ChannelReading] = await self._call(read_channels, names, timeout_s)
            span.set_attribute("pva.errors", sum(1 for r in readings if r.error))
            return readings

    async def read_structured(self, name: str, timeout_s: float = 2.0) -> dict[str, Any] | None:
        """The data of a structured channel (:func:`structured_value`), or None for a scalar. Raises
        :class:`PVAccessError`."""
        v = await self._call(_get, name, timeout_s)
        return structured_value(v)

    async def write_channel(
        self, name: str, value: float, verification: Verification, **kwargs: Unpack[WriteOptions]
    ) -> WriteRecord:
        """See :func:`write_channel` (same keyword arguments and errors). Span ``pva.write``."""
        attrs: dict[str, str | float] = {
            "pva.channel": name,
            "pva.value": value,
            "pva.verification": verification.level,
        }
        with tracing.span("pva.write", attrs) as span:
            record: WriteRecord = await self._call(write_channel, name, value, verification, **kwargs)
            span.set_attribute("pva.verified", bool(record.verified))
            return record

    def close(self, wait: bool = True) -> None:
        """Stop the pool and close the p4p context; later calls raise ``RuntimeError``."""
        self._pool.shutdown(wait=wait, cancel_futures=True)
        self._ctx.close()
