"""Channel Access client (pyepics): read channels with metadata, write setpoints with verification.

Blocking calls, meant to run in a worker thread (Temporal runs synchronous activities in a thread pool);
each public function attaches the thread to pyepics' initial CA context first. Point the client at IOCs with
:func:`configure_environment` before the first call in a process (libca reads ``EPICS_CA_*`` once).

Verification levels (Osprey's connector semantics):
- ``none``: put without waiting; the write is reported as not verified.
- ``callback``: put and wait for the IOC's completion callback, then read the setpoint back (an IOC that
  refuses a value, e.g. outside DRVL/DRVH, still completes the callback), and compare within tolerance.
- ``readback``: as ``callback``, then poll the readback channel (``X:SP`` -> ``X:RB``; the setpoint itself when
  there is no readback) until it is within tolerance of the target or ``readback_timeout_s`` passes.
Tolerance: ``tolerance_absolute`` if given, else ``tolerance_percent`` % of |target| (default 0.1 %).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from tern.control.units import units_for
from tern.models import ChannelReading, Verification, WriteRecord


class ChannelAccessError(RuntimeError):
    """A channel could not be connected, read or written; the message names the channel."""


def configure_environment(env: Mapping[str, str]) -> None:
    """Set ``EPICS_CA_*`` variables for this process (call before the first Channel Access use)."""
    os.environ.update(env)


def _epics() -> Any:
    import epics

    epics.ca.use_initial_context()
    return epics


def _pv(epics: Any, name: str, timeout: float) -> Any:
    pv = epics.get_pv(name, connect=True, timeout=timeout, form="ctrl", auto_monitor=False)
    if not pv.connected and not pv.wait_for_connection(timeout=timeout):
        raise ChannelAccessError(f"channel {name} did not connect within {timeout:g} s")
    return pv


def _finite(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def read_channels(names: list[str], timeout_s: float = 2.0) -> list[ChannelReading]:
    """Read each channel's value with units, timestamp (UTC), alarm severity/status and control limits.

    A channel that does not connect yields a reading with ``connected=False`` and ``error`` set (the batch
    goes on); callers decide whether that is fatal.
    """
    epics = _epics()
    pvs = {n: epics.get_pv(n, form="ctrl", auto_monitor=False) for n in names}  # connect in parallel
    out: list[ChannelReading] = []
    for name, pv in pvs.items():
        if not pv.wait_for_connection(timeout=timeout_s):
            out.append(ChannelReading(channel=name, value=None, connected=False,
                                      error=f"not connected within {timeout_s:g} s"))
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
                lower_ctrl_limit=_finite(md.get("lower_ctrl_limit")),
                upper_ctrl_limit=_finite(md.get("upper_ctrl_limit")),
                precision=md.get("precision"),
            )
        )
    return out


def read_value(name: str, timeout_s: float = 2.0) -> float:
    """The current numeric value of ``name``, read from the IOC (not a cached monitor)."""
    epics = _epics()
    pv = _pv(epics, name, timeout_s)
    v = _finite(pv.get(use_monitor=False, timeout=timeout_s))
    if v is None:
        raise ChannelAccessError(f"channel {name} returned no numeric value")
    return v


def tolerance(target: float, verification: Verification, default_percent: float = 0.1) -> float:
    """Allowed |readback - target| in engineering units (see module docstring)."""
    if verification.tolerance_absolute is not None:
        return verification.tolerance_absolute
    pct = verification.tolerance_percent if verification.tolerance_percent is not None else default_percent
    return max(abs(target) * pct / 100.0, 1e-12)


def readback_name(setpoint: str) -> str:
    """``X:SP`` -> ``X:RB``; other names are their own readback."""
    return setpoint[:-3] + ":RB" if setpoint.endswith(":SP") else setpoint


def write_channel(
    name: str,
    value: float,
    verification: Verification,
    *,
    previous_value: float | None,
    connect_timeout_s: float = 2.0,
    callback_timeout_s: float = 5.0,
    readback_timeout_s: float = 5.0,
    default_tolerance_percent: float = 0.1,
    readback_channel: str | None = None,
) -> WriteRecord:
    """Put ``value`` to ``name`` and verify it at the requested level. Never retries the put.

    Raises :class:`ChannelAccessError` when the channel does not connect (nothing was written then).
    """
    epics = _epics()
    pv = _pv(epics, name, connect_timeout_s)
    level = verification.level
    tol = tolerance(value, verification, default_tolerance_percent)
    written_at = datetime.now(UTC)
    if level == "none":
        pv.put(value, wait=False)
        epics.ca.flush_io()
        return WriteRecord(channel=name, previous_value=previous_value, value=value, verified=False,
                           verification=level, message="put sent; verification level 'none'",
                           written_at=written_at)
    status = pv.put(value, wait=True, timeout=callback_timeout_s)
    if status != 1:
        return WriteRecord(channel=name, previous_value=previous_value, value=value, verified=False,
                           verification=level, written_at=written_at,
                           message=f"no put completion callback within {callback_timeout_s:g} s")
    accepted = _finite(pv.get(use_monitor=False, timeout=connect_timeout_s))
    if accepted is None or abs(accepted - value) > tol:
        return WriteRecord(channel=name, previous_value=previous_value, value=value, readback=accepted,
                           verified=False, verification=level, written_at=written_at,
                           message=f"IOC holds {accepted} after the put, not {value} (refused or clamped)")
    if level == "callback":
        return WriteRecord(channel=name, previous_value=previous_value, value=value, readback=accepted,
                           verified=True, verification=level, written_at=written_at,
                           message="put completed and setpoint holds the value")
    rb_name = readback_channel or readback_name(name)
    rb_pv = _pv(epics, rb_name, connect_timeout_s)
    deadline = time.monotonic() + readback_timeout_s
    rb: float | None = None
    while True:
        rb = _finite(rb_pv.get(use_monitor=False, timeout=connect_timeout_s))
        if rb is not None and abs(rb - value) <= tol:
            return WriteRecord(channel=name, previous_value=previous_value, value=value, readback=rb,
                               verified=True, verification=level, written_at=written_at,
                               message=f"{rb_name} = {rb:g} within ±{tol:g} of {value:g}")
        if time.monotonic() >= deadline:
            return WriteRecord(channel=name, previous_value=previous_value, value=value, readback=rb,
                               verified=False, verification=level, written_at=written_at,
                               message=f"{rb_name} = {rb} did not reach {value:g} ±{tol:g} "
                                       f"within {readback_timeout_s:g} s")
        time.sleep(0.05)
