"""Channel Access operations (pyepics): read channels with metadata, write setpoints with verification.

Blocking calls. Activities run them through :class:`tern.control.ca_client.ChannelAccessClient` (one thread
pool per worker, bounded, threads attached to the CA context once); called directly (tests, scripts) they run
in the calling thread, which :func:`tern.control.ca_context.attach_thread` first joins to the process's one
CA context (safely, from any thread). Point the client at IOCs with :func:`configure_environment` before the
first call in a process (libca reads ``EPICS_CA_*`` once).

Verification levels (Osprey's connector semantics; what counts as proof: :mod:`tern.control.verification`):
- ``none``: put without waiting; the write is reported as not verified.
- ``callback``: put and wait for the IOC's completion callback, then read the setpoint back with its timestamp
  (an IOC that refuses a value, e.g. outside DRVL/DRVH, still completes the callback): its timestamp must have
  advanced past the one read just before the put, and its value must be within tolerance of the target.
- ``readback``: as ``callback``, then poll the readback channel (``X:SP`` -> ``X:RB``; the setpoint itself when
  there is no readback) until a reading stamped no earlier than the setpoint's post-put timestamp is within
  tolerance of the target, or ``readback_timeout_s`` passes.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from tern.control.ca_context import ChannelAccessError, attach_thread, configure_environment
from tern.control.channel_io import readback_name
from tern.control.units import units_for
from tern.control.verification import (
    SmallChangeMode,
    Stamped,
    effective_tolerance,
    finite,
    put_window_closed,
    recorder,
    reference,
    stamp,
    tolerance,
    verify_put,
)
from tern.models import ChannelReading, Verification, WriteRecord

__all__ = [
    "ChannelAccessError",
    "configure_environment",
    "read_channels",
    "read_value",
    "readback_name",
    "tolerance",
    "write_channel",
]


def _pv(epics: Any, name: str, timeout: float) -> Any:
    pv = epics.get_pv(name, connect=True, timeout=timeout, form="time", auto_monitor=False)
    if not pv.connected and not pv.wait_for_connection(timeout=timeout):
        raise ChannelAccessError(f"channel {name} did not connect within {timeout:g} s")
    return pv


def read_channels(names: list[str], timeout_s: float = 2.0) -> list[ChannelReading]:
    """Read each channel's value with units, timestamp (UTC), alarm severity/status and control limits.

    A channel that does not connect yields a reading with ``connected=False`` and ``error`` set (the batch
    goes on); callers decide whether that is fatal.
    """
    epics = attach_thread()
    pvs = {n: epics.get_pv(n, form="ctrl", auto_monitor=False) for n in names}  # connect in parallel
    out: list[ChannelReading] = []
    for name, pv in pvs.items():
        if not pv.wait_for_connection(timeout=timeout_s):
            out.append(
                ChannelReading(channel=name, value=None, connected=False, error=f"not connected within {timeout_s:g} s")
            )
            continue
        md = pv.get_with_metadata(form="ctrl", use_monitor=False, timeout=timeout_s, as_numpy=False)
        if md is None or md.get("value") is None:
            out.append(ChannelReading(channel=name, value=None, connected=True, error="get timed out"))
            continue
        value = md["value"]
        if isinstance(value, bytes):
            value = value.decode(errors="replace")
        elif hasattr(value, "tolist"):
            value = value.tolist()
        ts = md.get("timestamp")
        out.append(
            ChannelReading(
                channel=name,
                value=value,
                units=str(md.get("units") or units_for(name)),
                timestamp=datetime.fromtimestamp(ts, UTC) if ts else None,
                severity=md.get("severity"),
                status=md.get("status"),
                lower_ctrl_limit=finite(md.get("lower_ctrl_limit")),
                upper_ctrl_limit=finite(md.get("upper_ctrl_limit")),
                precision=md.get("precision"),
            )
        )
    return out


def read_value(name: str, timeout_s: float = 2.0) -> float:
    """The current numeric value of ``name``, read from the IOC (not a cached monitor).

    Raises :class:`ChannelAccessError` when it does not connect, the get fails twice, or the value is not a
    finite number.
    """
    epics = attach_thread()
    v = _read_stamped(_pv(epics, name, timeout_s), timeout_s).value
    if v is None:
        raise ChannelAccessError(
            f"channel {name} gave no numeric value within {timeout_s:g} s (the get timed out or the value is not a "
            "finite number)"
        )
    return v


GET_ATTEMPTS = 2  # a get that fails is tried once more before ChannelAccessError


def _read_stamped(pv: Any, timeout: float) -> Stamped:
    """Value and Channel Access timestamp (``DBR_TIME_*``) read from the IOC, never from a monitor cache.

    ``form="time"`` makes pyepics derive the request type from the channel's field type at this call, not from
    the type the ``PV`` object cached when it connected. A get that fails (pyepics raises, e.g.
    ``ChannelAccessGetFailure``) is tried again, up to ``GET_ATTEMPTS``; then :class:`ChannelAccessError`.
    A get that times out gives ``Stamped(None, None)``.
    """
    from epics.ca import CASeverityException, ChannelAccessException, ChannelAccessGetFailure

    for attempt in range(1, GET_ATTEMPTS + 1):
        try:
            md = pv.get_with_metadata(form="time", use_monitor=False, timeout=timeout, as_numpy=False)
            break
        except (ChannelAccessGetFailure, ChannelAccessException, CASeverityException) as exc:
            if attempt == GET_ATTEMPTS:
                raise ChannelAccessError(f"get of {pv.pvname} failed {attempt} times: {exc}") from exc
            time.sleep(0.05)
    if not md:
        return Stamped(None, None)
    return Stamped(finite(md.get("value")), stamp(md.get("timestamp")))


def write_channel(
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
    """Put ``value`` to ``name`` and verify it at the requested level. Never retries the put.

    Args:
        name: the setpoint channel; ``value`` in its engineering units.
        verification: level and tolerance from the limits database (see :mod:`tern.control.verification`).
        previous_value: the value read just before (for the small-change rule), or None when unknown.
        previous_readback: its readback's value read just before, or None when not read; at level ``readback``
            the small-change rule measures from whichever of the two is nearer ``value``
            (:func:`~tern.control.verification.reference`).
        connect_timeout_s, callback_timeout_s, readback_timeout_s: seconds.
        default_tolerance_percent: tolerance when the limits database gives none, %.
        readback_channel: the readback to poll at level ``readback``; default :func:`readback_name`.
        small_change: ``tighten`` or ``refuse`` (``TernSettings.small_change_verification``).
        readback_clock_skew_s: how far the readback's IOC clock may lag the setpoint's, seconds.
        put_not_after: a ``time.monotonic()`` instant after which the put is not sent (a caller whose interrupted
            attempts are settled by reading after a delay bounds when a put may land; see
            :func:`tern.control.write.put_window_s`), or None for no bound.

    Raises :class:`ChannelAccessError` when the channel does not connect, cannot be read with a timestamp
    before the put, the put's window (``put_not_after``) has closed, or libca does not send the put, and
    :class:`~tern.control.verification.UnverifiableChange` for a small change in ``refuse`` mode; nothing was
    written in any of these cases. Every other outcome is a :class:`WriteRecord` (``verified`` False when in
    doubt, including a get that fails after the put).
    """
    epics = attach_thread()
    tol = effective_tolerance(
        value,
        reference(value, previous_value, previous_readback, verification),
        verification,
        default_tolerance_percent,
        small_change,
    )
    pv = _pv(epics, name, connect_timeout_s)
    level = verification.level
    record = recorder(name, value, previous_value, level, tol, datetime.now(UTC))
    before = Stamped(None, None)
    if level != "none":
        before = _read_stamped(pv, connect_timeout_s)  # ChannelAccessError here: nothing was written
        if before.ts is None:
            raise ChannelAccessError(
                f"{name} gave no timestamped reading before the put, so the put could not be verified; not writing"
            )
    if (closed := put_window_closed(name, put_not_after, "Channel Access")) is not None:
        raise ChannelAccessError(closed)
    try:
        if level == "none":
            pv.put(value, wait=False)
            epics.ca.flush_io()
            return record(False, "put sent; verification level 'none'")
        status = pv.put(value, wait=True, timeout=callback_timeout_s)
    except epics.ca.CASeverityException as exc:  # libca refused to queue the request: nothing was sent
        raise ChannelAccessError(f"put to {name} was not sent: {exc}") from exc
    if status != 1:
        return record(False, f"no put completion callback within {callback_timeout_s:g} s")

    def read(channel: str) -> Stamped:
        return _read_stamped(_pv(epics, channel, connect_timeout_s), connect_timeout_s)

    try:
        return verify_put(
            read,
            name,
            value,
            level,
            tol,
            before,
            record,
            readback_channel=readback_channel or readback_name(name),
            readback_timeout_s=readback_timeout_s,
            readback_clock_skew_s=readback_clock_skew_s,
        )
    except ChannelAccessError as exc:  # after the put: recorded, not verified
        return record(False, f"put completed, but verification could not read the IOC: {exc}")
