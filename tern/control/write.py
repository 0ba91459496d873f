"""The exactly-once control-write protocol: limits check, ledger claim, put, settle, re-put and verification.

Plain async code that takes its collaborators, as :func:`tern.sandbox.execute` does: a :class:`ChannelIO` (the
control system: Channel Access through :class:`tern.control.ca_client.ChannelAccessClient`, or another protocol),
an asyncpg pool on the audit database (the write ledger and the audit), the ``control`` settings section, and a
heartbeat callback. The Temporal activity (``activities.agent``) is a thin adapter: it maps a :class:`WriteError`
to an ``ApplicationError`` of the same type name and retryability; the MCP server's pre-check calls
:func:`check_write` directly.

The protocol, per idempotency key (one approved write step):

1. :func:`check_write` before approval: master switch, limits database, live value (and its readback when the limits
   make it count), verifiability of the change.
2. :func:`write`: switch and limits again, then **claim** the key in the write ledger. A key already claimed means
   an earlier attempt ran: :func:`_resume` returns its result or settles it (below). Otherwise read the live value,
   check the limits against it and that it did not move from the value shown to the approver, then **put** and
   verify, and record the result in the ledger and the audit in one transaction.
3. **Settle** an interrupted attempt (a ``claimed`` row without a result): wait until ``write_settle_delay_s`` after
   the claim (a put is never sent later than :func:`put_window_s` after its claim), read the channel: it holds the
   target -> done; it still holds the approved-from value and no re-put was made -> **re-put** once under the same
   key (row ``claimed`` -> ``reput`` first); anything else -> :class:`WriteOutcomeUnknown`, never a put.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, TypeVar

import asyncpg

from tern import metrics
from tern.audit.invariants import ledger_result_mismatch
from tern.audit.store import audited_write, claim_age_s, claim_write, finish_write, mark_reput, release_claim
from tern.config_sections import ControlSettings
from tern.control.channel_io import ChannelIO, ChannelIOError, readback_name
from tern.control.limits import LimitsDatabase, LimitsDatabaseError
from tern.control.units import units_for
from tern.control.verification import UnverifiableChange, effective_tolerance, reference, tolerance
from tern.models import AuditEvent, AuditKind, LimitsCheck, WriteRecord
from tern.models.activity_io import WriteCheckInput, WriteInput

T = TypeVar("T")
log = logging.getLogger("tern.control.write")
HEARTBEAT_EVERY_S = 1.0
"""The write's heartbeat period while it waits on a put or the settle delay, seconds (the activity's heartbeat
timeout: ``workflows.agent_run``)."""


class WriteError(Exception):
    """A write (or its check) that did not happen; the message says why. ``non_retryable`` is True where trying
    again cannot help (refused, disabled, outcome unknown); the activity raises an ``ApplicationError`` whose
    ``type`` is the subclass's name."""

    non_retryable_default: ClassVar[bool] = True

    def __init__(self, message: str, *, non_retryable: bool | None = None) -> None:
        super().__init__(message)
        self.non_retryable = self.non_retryable_default if non_retryable is None else non_retryable


class WritesDisabled(WriteError):
    """The master switch ``control.writes_enabled`` is off."""


class InvalidLimits(WriteError):
    """The limits database does not load: every write is blocked."""


class WriteRefused(WriteError):
    """The limits refuse the write now, or the ledger holds it as refused or failed."""


class ValueChangedSinceApproval(WriteError):
    """The live value moved, beyond the verification tolerance, from the one shown to the approver."""


class WriteOutcomeUnknown(WriteError):
    """An earlier attempt was interrupted and the machine does not show what happened, or the ledger disagrees with
    the audit: fail closed (retryable only when the channel could not be read)."""


class ChannelUnreachable(WriteError):
    """The channel (or its readback) did not answer; nothing was written. Retryable: an IOC may be rebooting."""

    non_retryable_default = False


class LedgerRace(WriteError):
    """The write's ledger row changed under this attempt; retryable (the retry starts over from the ledger)."""

    non_retryable_default = False


def put_window_s(settle_delay_s: float) -> float:
    """How long after claiming a write its put may still be sent, seconds: half the settle delay
    (``control.write_settle_delay_s``). A put that waited longer (Channel Access queue, slow connect) is not
    sent, so a retry that reads the channel ``settle_delay_s`` after the claim sees every put that will ever land
    from that attempt, with at least ``settle_delay_s / 2`` for it to be processed and read back."""
    return settle_delay_s / 2


def load_limits(control: ControlSettings) -> LimitsDatabase:
    """The limits database, loaded afresh (an edit takes effect without a restart). Raises
    ``LimitsDatabaseError``."""
    return LimitsDatabase.load(control.limits_path, allow_unlisted=control.allow_unlisted_channels)


async def _beating(work: Awaitable[T], heartbeat: Callable[[], None] | None) -> T:
    """Await ``work``, calling ``heartbeat()`` at once and every :data:`HEARTBEAT_EVERY_S` seconds meanwhile, so
    that a worker that dies mid-write is noticed within the activity's heartbeat timeout. Cancelling cancels
    ``work``."""
    if heartbeat is None:
        return await work

    async def beat() -> None:
        while True:
            heartbeat()
            await asyncio.sleep(HEARTBEAT_EVERY_S)

    task = asyncio.create_task(beat())
    try:
        return await work
    finally:
        task.cancel()


async def read_readback(io: ChannelIO, control: ControlSettings, channel: str, limits: LimitsDatabase) -> float | None:
    """The value of ``channel``'s readback (:func:`~tern.control.channel_io.readback_name`) when the limits
    database makes it count (:meth:`LimitsDatabase.reads_readback`: ``max_step`` or readback verification),
    else None. Raises ``ChannelIOError`` when it must be read and cannot be: the caller fails closed."""
    rb = readback_name(channel)
    if rb == channel or not limits.reads_readback(channel):
        return None
    return await io.read_value(rb, control.ca_timeout_s)


def verifiable(control: ControlSettings, check: LimitsCheck) -> LimitsCheck:
    """``check``, refused (``unverifiable_change``) when the change is within the verification tolerance
    and ``small_change_verification`` is ``refuse`` (see :mod:`tern.control.verification`; the change is
    measured from the setpoint's or, at level ``readback``, the readback's value, whichever is nearer)."""
    if not check.allowed or check.verification.level == "none":
        return check
    try:
        effective_tolerance(
            check.value,
            reference(check.value, check.current_value, check.current_readback, check.verification),
            check.verification,
            control.default_tolerance_percent,
            control.small_change_verification,
        )
    except UnverifiableChange as exc:
        return check.model_copy(update={"allowed": False, "violation": "unverifiable_change", "message": str(exc)})
    return check


async def check_write(
    io: ChannelIO, control: ControlSettings, inp: WriteCheckInput, waited_s: Callable[[], float] = lambda: 0.0
) -> LimitsCheck:
    """Check a proposed write against the master switch, the limits database and the live value (and readback).

    Args:
        io: the control system; control: the settings section; inp: channel and value (engineering units).
        waited_s: seconds since the first attempt of this check was scheduled (0 for a one-off check). While it is
            below ``control.ca_unreachable_grace_s``, a channel that does not answer raises
            :class:`ChannelUnreachable` (retryable: an IOC rebooting); after that it is refused
            (``channel_unreachable``).

    Returns the check (``allowed`` False with ``violation`` and ``message`` when refused; a refusal is counted in
    ``tern.metrics.write_refusals``).
    """
    check = await _check_write(io, control, inp, waited_s)
    if not check.allowed:
        metrics.write_refusals.labels(reason=check.violation or "refused").inc()
    return check


async def _check_write(
    io: ChannelIO, control: ControlSettings, inp: WriteCheckInput, waited_s: Callable[[], float]
) -> LimitsCheck:
    base = {"channel": inp.channel, "value": inp.value}
    if not control.writes_enabled:
        return LimitsCheck(
            **base,
            allowed=False,
            violation="writes_disabled",
            message="control writes are disabled (set writes_enabled=true to allow them)",
        )
    try:
        limits = load_limits(control)
    except LimitsDatabaseError as exc:
        return LimitsCheck(
            **base, allowed=False, violation="invalid_limits_database", message=f"all writes blocked: {exc}"
        )
    static = limits.check(inp.channel, inp.value, current=None)
    if not static.allowed and static.violation != "step_check_failed":
        return static
    try:
        current = await io.read_value(inp.channel, control.ca_timeout_s)
        readback = await read_readback(io, control, inp.channel, limits)
    except ChannelIOError as exc:
        if waited_s() < control.ca_unreachable_grace_s:  # an IOC rebooting: the retry policy waits
            raise ChannelUnreachable(f"cannot read the current value of {inp.channel}: {exc}") from exc
        return static.model_copy(
            update={
                "allowed": False,
                "violation": "channel_unreachable",
                "message": f"cannot read the current value: {exc}",
            }
        )
    check = verifiable(control, limits.check(inp.channel, inp.value, current=current, readback=readback))
    if not check.units:
        check.units = units_for(inp.channel)
    return check


async def write(
    io: ChannelIO,
    pool: asyncpg.Pool,
    control: ControlSettings,
    inp: WriteInput,
    heartbeat: Callable[[], None] | None = None,
) -> WriteRecord:
    """Perform an approved write exactly once per ``inp.idempotency_key``, re-checking limits just before.

    Args:
        io: the control system; pool: asyncpg pool on the database holding the write ledger and the audit (the
            writer role); control: the settings section; inp: the approved write.
        heartbeat: called about every :data:`HEARTBEAT_EVERY_S` seconds while a put or the settle delay is awaited
            (pass ``activity.heartbeat``), or None.

    Raises :class:`WritesDisabled`, :class:`InvalidLimits`, :class:`WriteRefused` when the limits refuse the write
    now, :class:`ValueChangedSinceApproval` when the live value moved from the one shown to the approver,
    :class:`WriteOutcomeUnknown` when an earlier attempt was interrupted and the machine does not hold the target,
    :class:`ChannelUnreachable` and :class:`LedgerRace` (retryable; nothing written). A cancellation while the put
    is under way lets the put finish and be recorded, then propagates.
    """
    return await _Write(io, pool, control, inp, heartbeat).run()


class _Write:
    """One attempt of one write (the steps of :func:`write`)."""

    def __init__(
        self,
        io: ChannelIO,
        pool: asyncpg.Pool,
        control: ControlSettings,
        inp: WriteInput,
        heartbeat: Callable[[], None] | None,
    ) -> None:
        self.io, self.pool, self.s, self.inp, self.heartbeat = io, pool, control, inp, heartbeat

    async def run(self) -> WriteRecord:
        s, inp, pool = self.s, self.inp, self.pool
        if not s.writes_enabled:
            metrics.count_write("refused", "writes_disabled")
            raise WritesDisabled("control writes are disabled (writes_enabled=false)")
        try:
            limits = load_limits(s)
        except LimitsDatabaseError as exc:
            metrics.count_write("refused", "invalid_limits_database")
            raise InvalidLimits(f"all writes blocked: {exc}") from exc
        key = inp.idempotency_key
        async with pool.acquire() as conn:
            existing = await claim_write(conn, key, inp.workflow_id, inp.step_id, inp.channel, inp.value)
        put_not_after = time.monotonic() + put_window_s(s.write_settle_delay_s)
        if existing is not None:
            return await self._resume(existing, limits)
        try:
            current = await self.io.read_value(inp.channel, s.ca_timeout_s)
            readback = await read_readback(self.io, s, inp.channel, limits)
        except ChannelIOError as exc:
            async with pool.acquire() as conn:
                await release_claim(conn, key)
            raise ChannelUnreachable(f"cannot read {inp.channel} before writing: {exc}") from exc
        check = verifiable(s, limits.check(inp.channel, inp.value, current=current, readback=readback))
        moved = inp.approved_from is not None and abs(current - inp.approved_from) > tolerance(
            inp.approved_from, check.verification, s.default_tolerance_percent
        )
        if not check.allowed or moved:
            reason = (
                f"{inp.channel} moved from {inp.approved_from:g} (shown to the approver) to {current:g} "
                "since the approval; not writing: start a new run"
                if moved and check.allowed
                else f"write refused at execution time: {check.message}"
            )
            event = self._event("write_refused", current, None, None, reason)
            async with pool.acquire() as conn:
                await finish_write(conn, key, None, state="failed", event=event)
            metrics.count_write("refused", "value_changed_since_approval" if check.allowed else check.violation)
            raise (ValueChangedSinceApproval if moved and check.allowed else WriteRefused)(reason)
        return await self._put(current, check, put_not_after=put_not_after)

    async def _put(
        self,
        current: float,
        check: LimitsCheck,
        *,
        put_not_after: float,
        settled: tuple[str, dict[str, Any]] | None = None,
    ) -> WriteRecord:
        """Put and verify (``current``: the value read before; ``check``: the limits check against it), then record
        the outcome in the ledger and the audit. ``put_not_after`` is the ``time.monotonic()`` instant after
        which the put must not be sent (see :meth:`ChannelIO.write_channel`); ``settled``, for a re-put of an
        interrupted write, is the sentence that opens the record's message and the audit row's details.
        Raises :class:`WriteError` when nothing was written (claim released or marked failed)."""
        s, inp = self.s, self.inp
        key = inp.idempotency_key
        put = asyncio.ensure_future(
            self.io.write_channel(
                inp.channel,
                inp.value,
                check.verification,
                previous_value=current,
                previous_readback=check.current_readback,
                connect_timeout_s=s.ca_timeout_s,
                callback_timeout_s=s.write_callback_timeout_s,
                readback_timeout_s=s.readback_timeout_s,
                default_tolerance_percent=s.default_tolerance_percent,
                small_change=s.small_change_verification,
                readback_clock_skew_s=s.readback_clock_skew_s,
                put_not_after=put_not_after,
            )
        )
        cancelled: asyncio.CancelledError | None = None
        try:
            await _beating(asyncio.wait({put}), self.heartbeat)  # never raises the put's error, never cancels it
        except asyncio.CancelledError as exc:  # the run was cancelled while the put is under way in its I/O thread:
            cancelled = exc  # let it finish and record it (ledger and audit), then let the cancellation through
        try:
            record = await put
        except ChannelIOError as exc:  # raised only before the put: nothing was written
            async with self.pool.acquire() as conn:
                await release_claim(conn, key)
            raise ChannelUnreachable(str(exc)) from exc
        except UnverifiableChange as exc:  # checked above already; raised before the put
            event = self._event("write_refused", current, None, None, str(exc))
            async with self.pool.acquire() as conn:
                await finish_write(conn, key, None, state="failed", event=event)
            metrics.count_write("refused", "unverifiable_change")
            raise WriteRefused(f"write refused at execution time: {exc}") from exc
        record.idempotency_key = key
        details: dict[str, Any] | None = None
        if settled is not None:
            record.message = f"{settled[0]}; {record.message}"
            details = settled[1]
        if cancelled is not None:
            record.message += " (the run was cancelled while this write was under way)"
        event = self._event("write", current, record.readback, record.verified, record.message, details)
        async with self.pool.acquire() as conn:
            await finish_write(conn, key, record, state="done", event=event)
        metrics.count_write("verified" if record.verified else "unverified")
        log.info(
            "wrote %s = %g (%s): %s",
            inp.channel,
            inp.value,
            "verified" if record.verified else "NOT verified",
            record.message,
        )
        if cancelled is not None:
            raise cancelled
        return record

    async def _resume(self, row: dict, limits: LimitsDatabase) -> WriteRecord:
        """An earlier attempt claimed this write. Return its result, or settle an interrupted attempt.

        A ``claimed`` (or ``reput``) row means an attempt died between claiming and recording, so its put may or
        may not have landed. Once a put sent just before the interruption has had time to land
        (``write_settle_delay_s`` after the claim; a put is never sent later than :func:`put_window_s` after its
        claim), the channel is read:

        - it holds the target (and, at level ``readback``, so does its readback): the write is recorded as done,
          settled by reading;
        - it still holds exactly the value the approver was shown (``approved_from``, within the verification
          tolerance), so the put never landed, and no re-put was made yet: the write is put again under the same
          approval and idempotency key (the row moves to ``reput`` first, so this happens at most once);
        - anything else: fail closed (:class:`WriteOutcomeUnknown`), never a put.

        A ``done`` row's result is returned only when the audit holds its ``write`` event and they agree (channel,
        value, verified; :func:`tern.audit.invariants.ledger_result_mismatch`): a ledger set to ``done`` by hand
        fails closed (:class:`WriteOutcomeUnknown`), neither reported as written nor put.
        """
        s, inp, pool = self.s, self.inp, self.pool
        if row["state"] == "done":  # trusted only with its audited write (a ledger set to done by hand is not)
            async with pool.acquire() as conn:
                audited = await audited_write(conn, inp.idempotency_key)
            problem = (
                "the audit has no write for it" if audited is None else ledger_result_mismatch(row["result"], audited)
            )
            if problem:
                raise WriteOutcomeUnknown(
                    f"the write ledger says this write is done but {problem}; not trusting it, not writing: check "
                    "`tern verify --audit` and the machine"
                )
            return WriteRecord.model_validate_json(row["result"])
        if row["state"] == "failed":
            raise WriteRefused("this write was already refused or failed; it is not retried")
        async with pool.acquire() as conn:
            age = await claim_age_s(conn, inp.idempotency_key)
        wait_s = s.write_settle_delay_s - (age or 0.0)
        if wait_s > 0:
            await _beating(asyncio.sleep(wait_s), self.heartbeat)
        try:
            now = await self.io.read_value(inp.channel, s.ca_timeout_s)
        except ChannelIOError as exc:
            raise WriteOutcomeUnknown(
                f"interrupted write, and {inp.channel} cannot be read: {exc}", non_retryable=False
            ) from exc
        verification = limits.channels[inp.channel].verification if inp.channel in limits else None
        tol = (
            effective_tolerance(inp.value, inp.approved_from, verification, s.default_tolerance_percent).value
            if verification
            else 1e-9
        )
        held = math.isfinite(now) and abs(now - inp.value) <= tol
        details: dict[str, Any] = {
            "held": now,
            "holds_target": held,
            "tolerance": tol,
            "claimed_at": row["claimed_at"].isoformat(),
            "settle_delay_s": s.write_settle_delay_s,
        }
        untouched = (
            not held
            and row["state"] == "claimed"
            and inp.approved_from is not None
            and verification is not None
            and math.isfinite(now)
            and abs(now - inp.approved_from) <= tolerance(inp.approved_from, verification, s.default_tolerance_percent)
        )
        if untouched:
            return await self._reput(limits, now, details)
        readback: float | None = now
        if held and verification is not None and verification.level == "readback":  # the readback must agree too
            try:
                readback = await self.io.read_value(readback_name(inp.channel), s.ca_timeout_s)
            except ChannelIOError:
                readback = None
            held = readback is not None and math.isfinite(readback) and abs(readback - inp.value) <= tol
        record = WriteRecord(
            channel=inp.channel,
            previous_value=inp.approved_from,
            value=inp.value,
            readback=readback,
            verified=held,
            verification=verification.level if verification else "none",
            idempotency_key=inp.idempotency_key,
            tolerance=tol,
            message=f"an earlier attempt was interrupted after claiming the write; not written "
            f"again; settled by reading {inp.channel} = {now:g}"
            f"{f' and its readback = {readback}' if readback is not now else ''} "
            f"{s.write_settle_delay_s:g} s or more after the claim: "
            f"{'holds' if held else 'does not hold'} {inp.value:g} ±{tol:g}",
        )
        state = "done" if record.verified else "failed"
        details["settled_by"] = "read_after_interrupt"
        event = self._event("write", None, now, record.verified, record.message, details)
        async with pool.acquire() as conn:
            await finish_write(conn, inp.idempotency_key, record, state=state, event=event)
        metrics.count_write("verified" if record.verified else "unknown")
        if not record.verified:
            raise WriteOutcomeUnknown(
                f"an earlier attempt of this write was interrupted and {inp.channel} holds {now}, not "
                f"{inp.value}; not writing again: check the machine and start a new run"
            )
        return record

    async def _reput(self, limits: LimitsDatabase, now: float, details: dict[str, Any]) -> WriteRecord:
        """Put an interrupted write again: its channel still holds the value the approver was shown, after the
        settle delay, so the first put never landed. The ledger row moves ``claimed`` -> ``reput`` first (one
        re-put per key, ever); the limits are checked again against the value now."""
        s, inp, pool = self.s, self.inp, self.pool
        try:  # before the row moves to reput: a failed read leaves it claimed for the retry to settle
            readback = await read_readback(self.io, s, inp.channel, limits)
        except ChannelIOError as exc:
            raise ChannelUnreachable(
                f"interrupted write, and the readback of {inp.channel} cannot be read: {exc}"
            ) from exc
        async with pool.acquire() as conn:
            mine = await mark_reput(conn, inp.idempotency_key)
        if not mine:  # another attempt settled, re-put or released it meanwhile: start over from the ledger
            raise LedgerRace("the write's ledger row changed under this attempt; retrying")
        put_not_after = time.monotonic() + put_window_s(s.write_settle_delay_s)
        check = verifiable(s, limits.check(inp.channel, inp.value, current=now, readback=readback))
        if not check.allowed:
            reason = f"write refused at execution time: {check.message}"
            async with pool.acquire() as conn:
                await finish_write(
                    conn,
                    inp.idempotency_key,
                    None,
                    state="failed",
                    event=self._event("write_refused", now, None, None, reason),
                )
            metrics.count_write("refused", check.violation or "refused")
            raise WriteRefused(reason)
        details["settled_by"] = "reput_after_interrupt"
        sentence = (
            f"an earlier attempt was interrupted after claiming the write and {inp.channel} still held {now:g} "
            f"(the value shown to the approver) {s.write_settle_delay_s:g} s or more after the claim, so its "
            "put never landed: put again under the same approval"
        )
        return await self._put(now, check, put_not_after=put_not_after, settled=(sentence, details))

    def _event(
        self,
        kind: AuditKind,
        prev: float | None,
        readback: float | None,
        verified: bool | None,
        comment: str,
        details: dict[str, Any] | None = None,
    ) -> AuditEvent:
        inp = self.inp
        return AuditEvent(
            event_kind=kind,
            workflow_id=inp.workflow_id,
            event_key=f"{kind}:{inp.idempotency_key}",
            step_id=inp.step_id,
            request_id=inp.request_id,
            actor=inp.approver,
            channel=inp.channel,
            previous_value=prev,
            value=inp.value,
            readback=readback,
            verified=verified,
            comment=comment,
            details=details or {},
        )
