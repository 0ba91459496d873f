"""The one post-put verification routine both protocols use (``tern.control.verification.verify_put``), driven by a
reader callable that replays the stamped reads a server would give. The protocols' own tests (test_write_*.py over
Channel Access, test_pva_writes.py over PVAccess) run it against real servers; here each rule is isolated: which
reading proves what, and which channel is read at which level."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime

import pytest

from tern.control.verification import (
    Stamped,
    effective_tolerance,
    put_window_closed,
    recorder,
    verify_put,
)
from tern.models import Verification

SP, RB = "X:SP", "X:RB"
T0 = 1_700_000_000.0  # an IOC timestamp (POSIX seconds), after the EPICS epoch


class Script:
    """A reader: each channel answers its readings in turn (the last one repeats); records what was read."""

    def __init__(self, readings: dict[str, Iterable[Stamped | Exception]]) -> None:
        self.left = {k: list(v) for k, v in readings.items()}
        self.reads: list[str] = []

    def __call__(self, channel: str) -> Stamped:
        self.reads.append(channel)
        queue = self.left[channel]
        r = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(r, Exception):
            raise r
        return r


def _verify(level: str, read: Script, value: float = 10.0, *, timeout_s: float = 0.0, skew_s: float = 0.0):
    ver = Verification(level=level, tolerance_absolute=0.5)
    tol = effective_tolerance(value, 5.0, ver)  # a change of 5 > 0.5: not tightened
    record = recorder(SP, value, 5.0, ver.level, tol, datetime.now(UTC))
    return verify_put(
        read,
        SP,
        value,
        ver.level,
        tol,
        Stamped(5.0, T0),
        record,
        readback_channel=RB,
        readback_timeout_s=timeout_s,
        readback_clock_skew_s=skew_s,
    )


def test_callback_level_verifies_a_processed_setpoint_and_never_reads_the_readback() -> None:
    read = Script({SP: [Stamped(10.2, T0 + 1)], RB: [RuntimeError("no such channel")]})
    rec = _verify("callback", read)
    assert rec.verified, rec.message
    assert read.reads == [SP]
    assert rec.readback == 10.2 and rec.setpoint_timestamp == datetime.fromtimestamp(T0 + 1, UTC)
    assert rec.tolerance == 0.5 and rec.previous_value == 5.0 and rec.channel == SP


@pytest.mark.parametrize(
    ("after", "why"),
    [
        (Stamped(10.0, None), "carries no timestamp"),
        (Stamped(10.0, T0), "did not advance"),  # same stamp as before the put: not processed
        (Stamped(10.0, T0 - 3), "did not advance"),
        (Stamped(9.4, T0 + 1), "IOC holds 9.4"),  # |9.4 - 10| = 0.6 > 0.5: clamped
        (Stamped(None, T0 + 1), "IOC holds None"),
    ],
)
def test_setpoint_rules_refuse(after: Stamped, why: str) -> None:
    rec = _verify("readback", Script({SP: [after], RB: [Stamped(10.0, T0 + 1)]}))
    assert not rec.verified and why in rec.message, rec.message


def test_readback_level_polls_until_a_fresh_reading_within_tolerance() -> None:
    read = Script(
        {
            SP: [Stamped(10.0, T0 + 1)],
            RB: [Stamped(10.0, T0 + 0.5), Stamped(7.0, T0 + 2), Stamped(9.6, T0 + 3)],  # stale, far, good
        }
    )
    rec = _verify("readback", read, timeout_s=30.0)
    assert rec.verified, rec.message
    assert read.reads == [SP, RB, RB, RB]
    assert rec.readback == 9.6 and rec.readback_timestamp == datetime.fromtimestamp(T0 + 3, UTC)
    assert rec.setpoint_timestamp == datetime.fromtimestamp(T0 + 1, UTC)


def test_readback_that_never_moves_is_not_verified_when_the_time_is_up() -> None:
    # 10.0 is within tolerance, but stamped before the put: an old reading proves nothing.
    rec = _verify("readback", Script({SP: [Stamped(10.0, T0 + 1)], RB: [Stamped(10.0, T0 + 0.5)]}))
    assert not rec.verified
    assert "did not reach" in rec.message and "not updated after the put" in rec.message


def test_readback_clock_skew_admits_a_lagging_readback_clock() -> None:
    read = Script({SP: [Stamped(10.0, T0 + 1)], RB: [Stamped(10.0, T0 + 0.5)]})
    assert _verify("readback", read, skew_s=0.6).verified
    assert not _verify("readback", read, skew_s=0.4).verified


def test_a_failed_read_propagates_to_the_caller() -> None:
    with pytest.raises(RuntimeError, match="gone"):
        _verify("readback", Script({SP: [Stamped(10.0, T0 + 1)], RB: [RuntimeError("gone")]}))


def test_put_window() -> None:
    assert put_window_closed(SP, None, "PVAccess") is None
    assert put_window_closed(SP, time.monotonic() + 3600, "PVAccess") is None
    why = put_window_closed(SP, time.monotonic() - 5, "PVAccess")
    assert why is not None and why.startswith(f"put to {SP} not sent") and "PVAccess" in why
    assert float(why.split("closed ")[1].split(" s")[0]) >= 5.0
