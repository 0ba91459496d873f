"""The protocol-neutral face of a control system, as the write protocol (:mod:`tern.control.write`) sees it.

A control system plugs into the write protocol by implementing :class:`ChannelIO`: read a channel's current value
from the server (never a cached monitor), and put a value and verify it at a level of
:class:`~tern.models.Verification` (:mod:`tern.control.verification` says what counts as proof). Channel Access
implements it with :class:`tern.control.ca_client.ChannelAccessClient` (a bounded pool of threads attached to the
one CA context); a second protocol (PVAccess) implements the same two calls and raises :class:`ChannelIOError`
(or a subclass) for a channel that cannot be reached, so the protocol's ledger, settle and re-put logic is shared.
"""

from __future__ import annotations

from typing import Protocol, Required, TypedDict, Unpack

from tern.control.verification import SmallChangeMode
from tern.models import Verification, WriteRecord


class ChannelIOError(RuntimeError):
    """A channel could not be connected, read or written; the message names the channel. Raised by
    :meth:`ChannelIO.write_channel` only when nothing was written."""


def readback_name(setpoint: str) -> str:
    """The readback of a setpoint by the facility's naming rule: ``X:SP`` (or its value field ``X:SP.VAL``) ->
    ``X:RB``; other names are their own readback."""
    record = setpoint[: -len(".VAL")] if setpoint.endswith(".VAL") else setpoint
    return record[:-3] + ":RB" if record.endswith(":SP") else setpoint


class WriteOptions(TypedDict, total=False):
    """The keyword options of :meth:`ChannelIO.write_channel`, one declaration for every implementation's facade
    (the Channel Access and PVAccess clients, the router). Meanings, units and defaults:
    :func:`tern.control.channel_access.write_channel` (``pva.write_channel`` takes the same)."""

    previous_value: Required[float | None]  # the value read just before the write, or None when unknown
    previous_readback: float | None
    connect_timeout_s: float  # seconds, as are the two below
    callback_timeout_s: float
    readback_timeout_s: float
    default_tolerance_percent: float  # %
    small_change: SmallChangeMode
    readback_clock_skew_s: float  # seconds
    put_not_after: float | None  # a time.monotonic() instant


class ChannelIO(Protocol):
    """What the write protocol needs of a control system (all values in the channel's engineering units)."""

    async def read_value(self, name: str, timeout_s: float = 2.0) -> float:
        """The current finite numeric value of ``name`` read from the server (not a monitor cache), waiting at
        most ``timeout_s`` seconds. Raises :class:`ChannelIOError` when it cannot be had."""
        ...

    async def write_channel(
        self, name: str, value: float, verification: Verification, **options: Unpack[WriteOptions]
    ) -> WriteRecord:
        """Put ``value`` once (never retried) and verify it at ``verification.level`` (:class:`WriteOptions`); not
        sent after the ``time.monotonic()`` instant ``put_not_after``. Raises :class:`ChannelIOError` or
        :class:`~tern.control.verification.UnverifiableChange` only when nothing was written; every other outcome
        is a :class:`WriteRecord` (``verified`` False when in doubt). The Channel Access semantics:
        :func:`tern.control.channel_access.write_channel`."""
        ...
