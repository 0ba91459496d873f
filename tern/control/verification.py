"""What proves that a control write arrived: tolerances, the small-change rule, and the time reference.

A write is verified only when a reading shows the *new* value, not merely a value close to the target:

- **Value**: the reading is within the tolerance of the target. Tolerance: ``tolerance_absolute`` if given,
  else ``tolerance_percent`` % of |target| (the limits database; default ``default_tolerance_percent``).
- **Small changes**: when the change is not larger than that tolerance (|target - previous| <= tol), the old
  value itself would pass, so a reading within tolerance proves nothing. "Previous" is the value the verifying
  reading had before the write (:func:`reference`): at level ``readback`` the readback's as well as the
  setpoint's (a setpoint may be stale: a readback that already reads about the target proves nothing either),
  whichever is nearer the target; at level ``callback`` the setpoint's. Per
  ``TernSettings.small_change_verification``: ``"tighten"`` (default) verifies with the tolerance tightened to
  :data:`SMALL_CHANGE_FRACTION` (40 %) of the change, i.e. below half of it, so that only a reading closer to the
  target than to the previous value passes; ``"refuse"`` refuses such a write before approval and again before
  the put (:class:`UnverifiableChange`, violation ``unverifiable_change``). A write of the value already held
  (change 0) can then only be verified by an exact reading (``tighten``) or is refused (``refuse``).
- **Time**: the reading carries a Channel Access timestamp (``DBR_TIME_*``, stamped by the IOC) not older than
  the put. The reference is the IOC's own clock, never this host's: the setpoint is read with its timestamp
  just before the put and again after the put completes; its record must have processed since (its timestamp
  advanced), and that new setpoint timestamp is "the put" that a readback's timestamp must not precede. An IOC
  on another host may run seconds away from this host's clock; comparing its stamps with the local clock would
  either reject every write (IOC behind) or accept a readback that never moved (IOC ahead). Setpoint and
  readback are normally served by the same IOC (one clock). For a readback stamped by another IOC,
  ``TernSettings.readback_clock_skew_s`` (default 0) is the allowed amount by which its clock may lag the
  setpoint's; the value rule above holds regardless.

EPICS timestamps count from the EPICS epoch 1990-01-01 UTC; pyepics converts them to POSIX seconds, so an
undefined stamp (0 s, 0 ns) reads as :data:`EPICS_EPOCH_POSIX` and is treated as "no timestamp".
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from tern.models import Verification, VerificationLevel, WriteRecord

SmallChangeMode = Literal["tighten", "refuse"]
SMALL_CHANGE_FRACTION = 0.4  # tightened tolerance as a fraction of |target - previous| (must stay below 0.5)
EPICS_EPOCH_POSIX = 631152000.0  # 1990-01-01T00:00:00Z, the EPICS epoch (epicsTime), in POSIX seconds


class UnverifiableChange(ValueError):
    """The change is within the verification tolerance and ``small_change_verification`` is ``"refuse"``."""


def tolerance(target: float, verification: Verification, default_percent: float = 0.1) -> float:
    """Allowed |reading - target| in engineering units, from the limits database (see module docstring)."""
    if verification.tolerance_absolute is not None:
        return verification.tolerance_absolute
    pct = verification.tolerance_percent if verification.tolerance_percent is not None else default_percent
    return max(abs(target) * pct / 100.0, 1e-12)


@dataclass(frozen=True)
class Tolerance:
    """The tolerance a write is verified with.

    Attributes:
        value: allowed |reading - target|, engineering units.
        base: the limits database's tolerance for the target, engineering units.
        change: |target - previous|, or None when the previous value is unknown.
        tightened: True when ``value`` was tightened below ``base`` by the small-change rule.
    """

    value: float
    base: float
    change: float | None
    tightened: bool

    def describe(self) -> str:
        """E.g. ``±0.004 (tightened from ±0.0149: the change 0.01 is within it)``."""
        if not self.tightened:
            return f"±{self.value:g}"
        return (
            f"±{self.value:g} (tightened from ±{self.base:g}: the change {self.change:g} is within it, "
            "so the old value would pass)"
        )

    def holds(self, reading: float | None, target: float) -> bool:
        """Whether ``reading`` is within this tolerance of ``target``."""
        return reading is not None and abs(reading - target) <= self.value


def reference(
    target: float, previous: float | None, previous_readback: float | None, verification: Verification
) -> float | None:
    """The previous value a change to ``target`` is measured from for the small-change rule.

    Args:
        target: the value to write; ``previous`` and ``previous_readback`` in the same units.
        previous: the setpoint's value read before the write, or None when unknown.
        previous_readback: its readback's value read before the write, or None when not read.
        verification: the channel's verification; the readback counts only at level ``readback`` (the level
            whose proof is a readback reading).

    Returns the one of the two nearer ``target`` (the smaller change, hence the tighter tolerance: the reading
    the old state would give must not pass), or the one known, or None when neither is.
    """
    known = [v for v in (previous, previous_readback if verification.level == "readback" else None) if v is not None]
    return min(known, key=lambda v: abs(target - v), default=None)


def small_change(
    target: float, previous: float | None, verification: Verification, default_percent: float = 0.1
) -> bool:
    """True when |target - previous| <= the base tolerance (False when ``previous`` is unknown)."""
    return previous is not None and abs(target - previous) <= tolerance(target, verification, default_percent)


def effective_tolerance(
    target: float,
    previous: float | None,
    verification: Verification,
    default_percent: float = 0.1,
    mode: SmallChangeMode = "tighten",
) -> Tolerance:
    """The tolerance to verify a write of ``target`` over ``previous`` with (see module docstring).

    Raises :class:`UnverifiableChange` for a small change when ``mode`` is ``"refuse"``.
    """
    base = tolerance(target, verification, default_percent)
    change = None if previous is None else abs(target - previous)
    if change is None or change > base:
        return Tolerance(base, base, change, False)
    if mode == "refuse":
        raise UnverifiableChange(
            f"the change {change:g} (from {previous:g} to {target:g}) is within the verification tolerance "
            f"±{base:g}, so no reading could show that the write arrived; refused "
            "(TERN_CONTROL__SMALL_CHANGE_VERIFICATION=refuse)"
        )
    return Tolerance(change * SMALL_CHANGE_FRACTION, base, change, True)


def stamp(ts: float | None) -> float | None:
    """A Channel Access timestamp in POSIX seconds, or None when absent or undefined (the EPICS epoch)."""
    if ts is None or ts <= EPICS_EPOCH_POSIX:
        return None
    return float(ts)


def fmt_stamp(ts: float | None) -> str:
    """``12:00:01.234 UTC`` for a POSIX timestamp (IOC clock), ``no timestamp`` for None."""
    if ts is None:
        return "no timestamp"
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S.%f")[:-3] + " UTC"


def as_datetime(ts: float | None) -> datetime | None:
    """A POSIX timestamp as an aware UTC datetime (None stays None)."""
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def finite(v: Any) -> float | None:
    """``v`` as a finite float, or None when it is not a number (or is NaN/inf)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


@dataclass(frozen=True)
class Stamped:
    """A numeric value and its server timestamp (POSIX seconds, the IOC's clock), each None when absent,
    undefined or not numeric: one *stamped read* of a channel, by whichever protocol."""

    value: float | None
    ts: float | None


StampedReader = Callable[[str], Stamped]
"""Reads a channel (by name) from the server, never from a monitor cache; raises the protocol's error (a
:class:`~tern.control.channel_io.ChannelIOError`) when the channel cannot be read."""

READBACK_POLL_S = 0.05
"""Seconds between two reads of the readback while waiting for it at level ``readback``."""


class Recorder(Protocol):
    """Builds the :class:`WriteRecord` of one write (see :func:`recorder`)."""

    def __call__(
        self,
        verified: bool,
        message: str,
        readback: float | None = None,
        sp_ts: float | None = None,
        rb_ts: float | None = None,
    ) -> WriteRecord: ...


def recorder(
    channel: str,
    value: float,
    previous_value: float | None,
    level: VerificationLevel,
    tol: Tolerance,
    written_at: datetime,
) -> Recorder:
    """The record builder of one write: everything fixed before the put is bound here; each outcome adds whether
    it was verified, why, the reading (engineering units) and the setpoint's and readback's timestamps (POSIX
    seconds, IOC clock, None when unknown).

    Args:
        channel: the channel as recorded (``X:SP`` for Channel Access, ``pva://X:SP`` for PVAccess).
        value: the value put; ``previous_value`` the value read just before (None when unknown).
        level: the verification level; ``tol`` the tolerance verified with; ``written_at`` when the write began.
    """

    def record(
        verified: bool,
        message: str,
        readback: float | None = None,
        sp_ts: float | None = None,
        rb_ts: float | None = None,
    ) -> WriteRecord:
        return WriteRecord(
            channel=channel,
            previous_value=previous_value,
            value=value,
            readback=readback,
            verified=verified,
            verification=level,
            message=message,
            written_at=written_at,
            tolerance=tol.value,
            setpoint_timestamp=as_datetime(sp_ts),
            readback_timestamp=as_datetime(rb_ts),
        )

    return record


def put_window_closed(name: str, put_not_after: float | None, protocol: str) -> str | None:
    """Why a put to ``name`` must not be sent now, or None when it may: ``put_not_after`` is a ``time.monotonic()``
    instant (None: no bound; see :func:`tern.control.write.put_window_s`); ``protocol`` names the waited-for
    protocol in the message (``Channel Access``, ``PVAccess``)."""
    if put_not_after is None:
        return None
    late = time.monotonic() - put_not_after
    if late <= 0:
        return None
    waited = f"waited too long for {protocol}"
    return f"put to {name} not sent: its window closed {late:.1f} s ago ({waited}); nothing written"


def verify_put(
    read: StampedReader,
    name: str,
    value: float,
    level: VerificationLevel,
    tol: Tolerance,
    before: Stamped,
    record: Recorder,
    *,
    readback_channel: str,
    readback_timeout_s: float,
    readback_clock_skew_s: float,
    server: str = "IOC",
) -> WriteRecord:
    """The checks after a completed put at level ``callback`` or ``readback`` (module docstring), for any protocol.

    Args:
        read: the protocol's stamped read (:data:`StampedReader`); its errors propagate (the caller records the
            write as not verified: the put was sent).
        name: the setpoint channel; ``value`` the value put (engineering units).
        level: ``callback`` or ``readback``; ``tol`` the tolerance (:func:`effective_tolerance`).
        before: the setpoint's stamped read just before the put (its timestamp not None).
        record: the write's :func:`recorder`.
        readback_channel: the channel polled at level ``readback`` (read only at that level).
        readback_timeout_s: how long the readback is polled, seconds (every :data:`READBACK_POLL_S`).
        readback_clock_skew_s: how far the readback's clock may lag the setpoint's, seconds.
        server: what serves the channel, in messages (``IOC``, ``server``).

    Returns a :class:`WriteRecord`, ``verified`` only when the setpoint's timestamp advanced past ``before`` and
    its value holds within ``tol``, and, at level ``readback``, a readback stamped no earlier than that (less the
    skew) holds within ``tol`` before the deadline.
    """
    after = read(name)
    if after.ts is None:
        return record(
            False,
            f"{name} = {after.value} after the put carries no timestamp: cannot show that the put was processed",
            after.value,
        )
    if after.ts <= (before.ts or 0.0):
        return record(
            False,
            f"{name} timestamp {fmt_stamp(after.ts)} did not advance past {fmt_stamp(before.ts)}"
            f" (before the put): the {server} did not process the put",
            after.value,
            after.ts,
        )
    if not tol.holds(after.value, value):
        return record(
            False,
            f"{server} holds {after.value} after the put at {fmt_stamp(after.ts)}, not {value:g} "
            f"{tol.describe()} (refused or clamped)",
            after.value,
            after.ts,
        )
    if level == "callback":
        return record(
            True,
            f"{name} = {after.value:g} at {fmt_stamp(after.ts)}, processed by the put (last "
            f"processed before at {fmt_stamp(before.ts)}), within {tol.describe()} of {value:g}",
            after.value,
            after.ts,
            after.ts,
        )
    put_at = after.ts
    deadline = time.monotonic() + readback_timeout_s
    while True:
        rb = read(readback_channel)
        fresh = rb.ts is not None and rb.ts >= put_at - readback_clock_skew_s
        if fresh and tol.holds(rb.value, value):
            return record(
                True,
                f"RB {readback_channel} = {rb.value:g} at {fmt_stamp(rb.ts)}, after the put at "
                f"{fmt_stamp(put_at)}, within {tol.describe()} of {value:g}",
                rb.value,
                put_at,
                rb.ts,
            )
        if time.monotonic() >= deadline:
            why = "it was not updated after the put" if not fresh else f"it is outside {tol.describe()}"
            return record(
                False,
                f"{readback_channel} did not reach {value:g} {tol.describe()} after the put at "
                f"{fmt_stamp(put_at)} within {readback_timeout_s:g} s: last {rb.value} at "
                f"{fmt_stamp(rb.ts)}, {why}",
                rb.value,
                put_at,
                rb.ts,
            )
        time.sleep(READBACK_POLL_S)
