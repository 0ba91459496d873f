"""Activities of the agent run: thin adapters from Temporal to the Tern core.

Each activity takes one pydantic model, calls ``tern.*``, and turns failures into ``ApplicationError``
(non-retryable where retrying cannot help: bad configuration, refused writes, unknown write outcome).
Channel Access goes through one :class:`~tern.control.ca_client.ChannelAccessClient` per ``AgentActivities``
(a bounded pool of threads attached to the CA context; never ``asyncio.to_thread``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeat import heartbeating
from activities.ring import with_predicted_effect
from tern import metrics
from tern.agent.compose import compose, compose_with_llm
from tern.ariel.service import search as ariel_search
from tern.audit.invariants import ledger_result_mismatch
from tern.audit.store import (
    audited_write,
    claim_age_s,
    claim_write,
    finish_write,
    mark_reput,
    record_event,
    release_claim,
    seconds_since_request,
)
from tern.config import TernSettings
from tern.control import channels as ca
from tern.control.ca_client import ChannelAccessClient
from tern.control.limits import LimitsDatabase, LimitsDatabaseError
from tern.control.units import units_for
from tern.control.verification import UnverifiableChange, effective_tolerance, reference
from tern.db import create_pool
from tern.llm.chat import LLMClient, LLMError, make_chat_provider
from tern.models import AuditEvent, AuditKind, ChannelReading, LimitsCheck, SearchResponse, WriteRecord
from tern.models.activity_io import (
    ChannelReadInput,
    ComposedAnswer,
    ComposeInput,
    LogbookSearchInput,
    WriteCheckInput,
    WriteInput,
)
from tern.planning import REGISTRY

T = TypeVar("T")
log = logging.getLogger("tern.activities.agent")
HEARTBEAT_EVERY_S = 1.0  # the write activity's heartbeat period (its heartbeat timeout: workflows.agent_run)


ANSWER_LLM_ATTEMPTS = 3
"""From this attempt of ``compose_answer`` on (the workflow's retry policy allows 5), an answer LLM that still fails
retryably (5xx, 429, timeout) gives the template answer, saying so: the run's steps are done, a write may have
landed, and the run must not fail for want of a summary (issue 13: an LLM outage failed every run at its respond
step, approved writes included)."""


def _waiting_s() -> float:
    """Seconds since this activity's first attempt was scheduled (0 outside an activity: direct calls in tests)."""
    if not activity.in_activity():
        return 0.0
    return (datetime.now(UTC) - activity.info().scheduled_time).total_seconds()


def put_window_s(settle_delay_s: float) -> float:
    """How long after claiming a write its put may still be sent, seconds: half the settle delay
    (``TernSettings.write_settle_delay_s``). A put that waited longer (Channel Access queue, slow connect) is not
    sent, so a retry that reads the channel ``settle_delay_s`` after the claim sees every put that will ever land
    from that attempt, with at least ``settle_delay_s / 2`` for it to be processed and read back."""
    return settle_delay_s / 2


async def _heartbeating(work: Awaitable[T]) -> T:
    """Await ``work``, heartbeating every ``HEARTBEAT_EVERY_S`` when running as an activity, so that a worker
    that dies mid-write is noticed within the activity's heartbeat timeout. Cancelling cancels ``work``."""
    async with heartbeating(HEARTBEAT_EVERY_S):
        return await work


class AgentActivities:
    """The agent-run activities, bound to one worker's settings and PostgreSQL pool.

    Args:
        settings: the worker's settings (writes switch, limits path, CA and timeouts).
        pool: an open asyncpg pool, or None to open one lazily from ``settings.writer_dsn``.
        ca_client: the Channel Access client, or None to create one on first use from ``settings``
            (``ca_max_concurrency``, ``ca_environment()``).
    """

    def __init__(
        self, settings: TernSettings, pool: asyncpg.Pool | None = None, ca_client: ChannelAccessClient | None = None
    ) -> None:
        self.settings = settings
        self._pool = pool
        self._pool_lock = asyncio.Lock()
        self._ca = ca_client
        self._owns_ca = ca_client is None
        self._answer_llm: LLMClient | None = None

    @property
    def ca(self) -> ChannelAccessClient:
        """The Channel Access client (created on first use; raises ``ChannelAccessError`` when libca already
        runs in this process with other ``EPICS_CA_*`` settings)."""
        if self._ca is None:
            self._ca = ChannelAccessClient(self.settings.control.ca_max_concurrency, self.settings.ca_environment())
        return self._ca

    async def pool(self) -> asyncpg.Pool:
        async with self._pool_lock:
            if self._pool is None:
                self._pool = await create_pool(self.settings.writer_dsn)
            return self._pool

    async def close(self) -> None:
        """Close the pool, and the Channel Access client if this object created it."""
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        if self._owns_ca and self._ca is not None:
            await asyncio.to_thread(self._ca.close)
            self._ca = None

    def limits(self) -> LimitsDatabase:
        """Load the limits database afresh (so an edit takes effect without a restart)."""
        return LimitsDatabase.load(
            self.settings.control.limits_path, allow_unlisted=self.settings.control.allow_unlisted_channels
        )

    def all(self) -> list[Callable[..., Any]]:
        """The activity callables to register on a worker."""
        return [
            self.search_logbook,
            self.read_channels,
            self.check_write,
            self.write_channel,
            self.record_audit,
            self.compose_answer,
        ]

    # ---------------------------------------------------------------------------------------------
    @activity.defn(name="search_logbook")
    async def search_logbook(self, inp: LogbookSearchInput) -> SearchResponse:
        """Search the logbook through the ARIEL service (configured backend; degrades to keyword search)."""
        return await ariel_search(await self.pool(), self.settings, inp.query, mode=inp.mode, limit=inp.limit)

    @activity.defn(name="read_channels")
    async def read_channels(self, inp: ChannelReadInput) -> list[ChannelReading]:
        """Read channels over Channel Access; unreachable channels come back with ``error`` set.

        An IOC or gateway that stops answering for a while (a reboot) should not fail the run: while the first
        attempt was scheduled less than ``ca_unreachable_grace_s`` ago, a read where any channel did not answer
        raises a retryable ``ChannelsUnreachable`` (the workflow's ``CA_RETRY`` tries again); after that, it returns
        the readings with their errors (the caller decides)."""
        readings = await self.ca.read_channels(inp.channels, self.settings.control.ca_timeout_s)
        failed = [r for r in readings if r.error]
        if failed and _waiting_s() < self.settings.control.ca_unreachable_grace_s:
            raise ApplicationError(
                f"{len(failed)} of {len(readings)} channels did not answer: "
                + "; ".join(f"{r.channel}: {r.error}" for r in failed[:10]),
                type="ChannelsUnreachable",
            )
        return readings

    @activity.defn(name="check_write")
    async def check_write(self, inp: WriteCheckInput) -> LimitsCheck:
        """Check a proposed write against the master switch, the limits database and the live value. A channel
        that does not answer raises a retryable ``ChannelUnreachable`` for ``ca_unreachable_grace_s`` after the
        first attempt (an IOC rebooting), then is refused (``channel_unreachable``)."""
        check = await self._check_write(inp)
        if not check.allowed:
            metrics.write_refusals.labels(reason=check.violation or "refused").inc()
        return check

    async def _check_write(self, inp: WriteCheckInput) -> LimitsCheck:
        base = {"channel": inp.channel, "value": inp.value}
        if not self.settings.control.writes_enabled:
            return LimitsCheck(
                **base,
                allowed=False,
                violation="writes_disabled",
                message="control writes are disabled (set writes_enabled=true to allow them)",
            )
        try:
            limits = self.limits()
        except LimitsDatabaseError as exc:
            return LimitsCheck(
                **base, allowed=False, violation="invalid_limits_database", message=f"all writes blocked: {exc}"
            )
        static = limits.check(inp.channel, inp.value, current=None)
        if not static.allowed and static.violation != "step_check_failed":
            return static
        try:
            current = await self.ca.read_value(inp.channel, self.settings.control.ca_timeout_s)
            readback = await self._read_readback(inp.channel, limits)
        except ca.ChannelAccessError as exc:
            if _waiting_s() < self.settings.control.ca_unreachable_grace_s:  # an IOC rebooting: the retry policy waits
                raise ApplicationError(
                    f"cannot read the current value of {inp.channel}: {exc}", type="ChannelUnreachable"
                ) from exc
            return static.model_copy(
                update={
                    "allowed": False,
                    "violation": "channel_unreachable",
                    "message": f"cannot read the current value: {exc}",
                }
            )
        check = self._verifiable(limits.check(inp.channel, inp.value, current=current, readback=readback))
        if not check.units:
            check.units = units_for(inp.channel)
        if check.allowed and self.settings.ring.predict:  # the approver sees what the write will do (issue 23)
            check = await with_predicted_effect(self.settings, self.ca, check, limits)
        return check

    async def _read_readback(self, channel: str, limits: LimitsDatabase) -> float | None:
        """The value of ``channel``'s readback (:func:`tern.control.channels.readback_name`) when the limits
        database makes it count (:meth:`LimitsDatabase.reads_readback`: ``max_step`` or readback verification),
        else None. Raises ``ChannelAccessError`` when it must be read and cannot be: the caller fails closed."""
        rb = ca.readback_name(channel)
        if rb == channel or not limits.reads_readback(channel):
            return None
        return await self.ca.read_value(rb, self.settings.control.ca_timeout_s)

    def _verifiable(self, check: LimitsCheck) -> LimitsCheck:
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
                self.settings.control.default_tolerance_percent,
                self.settings.control.small_change_verification,
            )
        except UnverifiableChange as exc:
            return check.model_copy(update={"allowed": False, "violation": "unverifiable_change", "message": str(exc)})
        return check

    @activity.defn(name="write_channel")
    async def write_channel(self, inp: WriteInput) -> WriteRecord:
        """Perform an approved write exactly once per ``idempotency_key``, re-checking limits just before.

        Raises non-retryable ``ApplicationError`` when writes are disabled, the limits refuse the write now,
        the live value moved (beyond the verification tolerance) from the one shown to the approver, or an
        earlier attempt was interrupted and the machine does not hold the target value.
        """
        s = self.settings
        if not s.control.writes_enabled:
            metrics.count_write("refused", "writes_disabled")
            raise ApplicationError(
                "control writes are disabled (writes_enabled=false)", type="WritesDisabled", non_retryable=True
            )
        try:
            limits = self.limits()
        except LimitsDatabaseError as exc:
            metrics.count_write("refused", "invalid_limits_database")
            raise ApplicationError(f"all writes blocked: {exc}", type="InvalidLimits", non_retryable=True) from exc
        key = inp.idempotency_key
        pool = await self.pool()
        async with pool.acquire() as conn:
            existing = await claim_write(conn, key, inp.workflow_id, inp.step_id, inp.channel, inp.value)
        put_not_after = time.monotonic() + put_window_s(s.control.write_settle_delay_s)
        if existing is not None:
            return await self._resume(existing, inp, limits)
        try:
            current = await self.ca.read_value(inp.channel, s.control.ca_timeout_s)
            readback = await self._read_readback(inp.channel, limits)
        except ca.ChannelAccessError as exc:
            async with pool.acquire() as conn:
                await release_claim(conn, key)
            raise ApplicationError(
                f"cannot read {inp.channel} before writing: {exc}", type="ChannelUnreachable"
            ) from exc
        check = self._verifiable(limits.check(inp.channel, inp.value, current=current, readback=readback))
        moved = inp.approved_from is not None and abs(current - inp.approved_from) > ca.tolerance(
            inp.approved_from, check.verification, s.control.default_tolerance_percent
        )
        if not check.allowed or moved:
            reason = (
                f"{inp.channel} moved from {inp.approved_from:g} (shown to the approver) to {current:g} "
                "since the approval; not writing: start a new run"
                if moved and check.allowed
                else f"write refused at execution time: {check.message}"
            )
            event = self._event(inp, "write_refused", current, None, None, reason)
            async with pool.acquire() as conn:
                await finish_write(conn, key, None, state="failed", event=event)
            metrics.count_write("refused", "value_changed_since_approval" if check.allowed else check.violation)
            raise ApplicationError(
                reason,
                type="ValueChangedSinceApproval" if moved and check.allowed else "WriteRefused",
                non_retryable=True,
            )
        return await self._put(inp, current, check, put_not_after=put_not_after)

    async def _put(
        self,
        inp: WriteInput,
        current: float,
        check: LimitsCheck,
        *,
        put_not_after: float,
        settled: tuple[str, dict[str, Any]] | None = None,
    ) -> WriteRecord:
        """Put ``inp.value`` (the ledger row for ``inp.idempotency_key`` is this attempt's), verify it, and record
        the outcome in the ledger and the audit table. ``put_not_after`` is the ``time.monotonic()`` instant after
        which the put must not be sent (see :func:`tern.control.channels.write_channel`); ``settled``, for a re-put
        of an interrupted write, is the sentence that opens the record's message and the audit row's details.
        Raises ``ApplicationError`` when nothing was written (claim released or marked failed)."""
        s = self.settings
        key = inp.idempotency_key
        pool = await self.pool()
        put = asyncio.ensure_future(
            self.ca.write_channel(
                inp.channel,
                inp.value,
                check.verification,
                previous_value=current,
                previous_readback=check.current_readback,
                connect_timeout_s=s.control.ca_timeout_s,
                callback_timeout_s=s.control.write_callback_timeout_s,
                readback_timeout_s=s.control.readback_timeout_s,
                default_tolerance_percent=s.control.default_tolerance_percent,
                small_change=s.control.small_change_verification,
                readback_clock_skew_s=s.control.readback_clock_skew_s,
                put_not_after=put_not_after,
            )
        )
        cancelled: asyncio.CancelledError | None = None
        try:
            await _heartbeating(asyncio.wait({put}))  # never raises the put's error, never cancels the put
        except asyncio.CancelledError as exc:  # the run was cancelled while the put is under way in its CA thread:
            cancelled = exc  # let it finish and record it (ledger and audit), then let the cancellation through
        try:
            record = await put
        except ca.ChannelAccessError as exc:  # raised only before the put: nothing was written
            async with pool.acquire() as conn:
                await release_claim(conn, key)
            raise ApplicationError(str(exc), type="ChannelUnreachable") from exc
        except UnverifiableChange as exc:  # checked above already; raised before the put
            event = self._event(inp, "write_refused", current, None, None, str(exc))
            async with pool.acquire() as conn:
                await finish_write(conn, key, None, state="failed", event=event)
            metrics.count_write("refused", "unverifiable_change")
            raise ApplicationError(
                f"write refused at execution time: {exc}", type="WriteRefused", non_retryable=True
            ) from exc
        record.idempotency_key = key
        details: dict[str, Any] | None = None
        if settled is not None:
            record.message = f"{settled[0]}; {record.message}"
            details = settled[1]
        if cancelled is not None:
            record.message += " (the run was cancelled while this write was under way)"
        event = self._event(inp, "write", current, record.readback, record.verified, record.message, details)
        async with pool.acquire() as conn:
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

    async def _resume(self, row: dict, inp: WriteInput, limits: LimitsDatabase) -> WriteRecord:
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
        - anything else: fail closed (``WriteOutcomeUnknown``), never a put.

        A ``done`` row's result is returned only when the audit holds its ``write`` event and they agree (channel,
        value, verified; :func:`tern.audit.invariants.ledger_result_mismatch`): a ledger set to ``done`` by hand
        fails closed (``WriteOutcomeUnknown``), neither reported as written nor put.
        """
        if row["state"] == "done":  # trusted only with its audited write (a ledger set to done by hand is not)
            async with (await self.pool()).acquire() as conn:
                audited = await audited_write(conn, inp.idempotency_key)
            problem = (
                "the audit has no write for it" if audited is None else ledger_result_mismatch(row["result"], audited)
            )
            if problem:
                raise ApplicationError(
                    f"the write ledger says this write is done but {problem}; not trusting it, not writing: check "
                    "`tern verify --audit` and the machine",
                    type="WriteOutcomeUnknown",
                    non_retryable=True,
                )
            return WriteRecord.model_validate_json(row["result"])
        if row["state"] == "failed":
            raise ApplicationError(
                "this write was already refused or failed; it is not retried", type="WriteRefused", non_retryable=True
            )
        s = self.settings
        pool = await self.pool()
        async with pool.acquire() as conn:
            age = await claim_age_s(conn, inp.idempotency_key)
        wait_s = s.control.write_settle_delay_s - (age or 0.0)
        if wait_s > 0:
            await _heartbeating(asyncio.sleep(wait_s))
        try:
            now = await self.ca.read_value(inp.channel, s.control.ca_timeout_s)
        except ca.ChannelAccessError as exc:
            raise ApplicationError(
                f"interrupted write, and {inp.channel} cannot be read: {exc}", type="WriteOutcomeUnknown"
            ) from exc
        verification = limits.channels[inp.channel].verification if inp.channel in limits else None
        tol = (
            effective_tolerance(inp.value, inp.approved_from, verification, s.control.default_tolerance_percent).value
            if verification
            else 1e-9
        )
        held = math.isfinite(now) and abs(now - inp.value) <= tol
        details: dict[str, Any] = {
            "held": now,
            "holds_target": held,
            "tolerance": tol,
            "claimed_at": row["claimed_at"].isoformat(),
            "settle_delay_s": s.control.write_settle_delay_s,
        }
        untouched = (
            not held
            and row["state"] == "claimed"
            and inp.approved_from is not None
            and verification is not None
            and math.isfinite(now)
            and abs(now - inp.approved_from)
            <= ca.tolerance(inp.approved_from, verification, s.control.default_tolerance_percent)
        )
        if untouched:
            return await self._reput(inp, limits, now, details)
        readback: float | None = now
        if held and verification is not None and verification.level == "readback":  # the readback must agree too
            rb_name = ca.readback_name(inp.channel)
            try:
                readback = await self.ca.read_value(rb_name, s.control.ca_timeout_s)
            except ca.ChannelAccessError:
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
            f"{s.control.write_settle_delay_s:g} s or more after the claim: "
            f"{'holds' if held else 'does not hold'} {inp.value:g} ±{tol:g}",
        )
        state = "done" if record.verified else "failed"
        details["settled_by"] = "read_after_interrupt"
        event = self._event(inp, "write", None, now, record.verified, record.message, details)
        async with pool.acquire() as conn:
            await finish_write(conn, inp.idempotency_key, record, state=state, event=event)
        metrics.count_write("verified" if record.verified else "unknown")
        if not record.verified:
            raise ApplicationError(
                f"an earlier attempt of this write was interrupted and {inp.channel} holds {now}, not "
                f"{inp.value}; not writing again: check the machine and start a new run",
                type="WriteOutcomeUnknown",
                non_retryable=True,
            )
        return record

    async def _reput(self, inp: WriteInput, limits: LimitsDatabase, now: float, details: dict[str, Any]) -> WriteRecord:
        """Put an interrupted write again: its channel still holds the value the approver was shown, after the
        settle delay, so the first put never landed. The ledger row moves ``claimed`` -> ``reput`` first (one
        re-put per key, ever); the limits are checked again against the value now."""
        s = self.settings
        try:  # before the row moves to reput: a failed read leaves it claimed for the retry to settle
            readback = await self._read_readback(inp.channel, limits)
        except ca.ChannelAccessError as exc:
            raise ApplicationError(
                f"interrupted write, and the readback of {inp.channel} cannot be read: {exc}", type="ChannelUnreachable"
            ) from exc
        pool = await self.pool()
        async with pool.acquire() as conn:
            mine = await mark_reput(conn, inp.idempotency_key)
        if not mine:  # another attempt settled, re-put or released it meanwhile: start over from the ledger
            raise ApplicationError("the write's ledger row changed under this attempt; retrying", type="LedgerRace")
        put_not_after = time.monotonic() + put_window_s(s.control.write_settle_delay_s)
        check = self._verifiable(limits.check(inp.channel, inp.value, current=now, readback=readback))
        if not check.allowed:
            reason = f"write refused at execution time: {check.message}"
            async with pool.acquire() as conn:
                await finish_write(
                    conn,
                    inp.idempotency_key,
                    None,
                    state="failed",
                    event=self._event(inp, "write_refused", now, None, None, reason),
                )
            metrics.count_write("refused", check.violation or "refused")
            raise ApplicationError(reason, type="WriteRefused", non_retryable=True)
        details["settled_by"] = "reput_after_interrupt"
        sentence = (
            f"an earlier attempt was interrupted after claiming the write and {inp.channel} still held {now:g} "
            f"(the value shown to the approver) {s.control.write_settle_delay_s:g} s or more after the claim, so its "
            "put never landed: put again under the same approval"
        )
        return await self._put(inp, now, check, put_not_after=put_not_after, settled=(sentence, details))

    @staticmethod
    def _event(
        inp: WriteInput,
        kind: AuditKind,
        prev: float | None,
        readback: float | None,
        verified: bool | None,
        comment: str,
        details: dict[str, Any] | None = None,
    ) -> AuditEvent:
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

    @activity.defn(name="record_audit")
    async def record_audit(self, event: AuditEvent) -> bool:
        """Append an audit event (idempotent by ``event_key``); an event recorded for the first time is counted
        in the approval metrics (:func:`tern.metrics.count_audit_event`), so retries and replays count nothing."""
        pool = await self.pool()
        async with pool.acquire() as conn:
            recorded = await record_event(conn, event)
            if recorded and event.event_kind in ("decision", "approval_timed_out"):
                waited = await seconds_since_request(conn, event.workflow_id, event.request_id)
            else:
                waited = None
        if recorded:
            metrics.count_audit_event(event, waited)
        return recorded

    @activity.defn(name="compose_answer")
    async def compose_answer(self, inp: ComposeInput) -> ComposedAnswer:
        """Compose the final answer: by the configured LLM (role 'answer'), grounded in the step results and
        with invented citations removed, or by the template composer when no LLM is configured. An endpoint
        failure is retried by the workflow's retry policy, and from attempt ``ANSWER_LLM_ATTEMPTS`` on answered by
        the template composer with a note saying the LLM failed; a refused request (bad key or model) is not
        retried."""
        if self._answer_llm is None:
            self._answer_llm = make_chat_provider(self.settings, "answer")
        if self._answer_llm is None:
            return compose(inp)
        try:
            return await compose_with_llm(self._answer_llm, inp, REGISTRY.summarise)
        except LLMError as exc:
            if exc.retryable and activity.in_activity() and activity.info().attempt >= ANSWER_LLM_ATTEMPTS:
                activity.logger.warning("run %s: answer LLM failing (%s): template answer", inp.workflow_id, exc)
                answer = compose(inp)
                note = f"(The answer LLM failed: {exc}. This answer was composed from the step results without it.)"
                return answer.model_copy(update={"answer": f"{answer.answer}\n\n{note}"})
            raise ApplicationError(f"answer: {exc}", type="LLMError", non_retryable=not exc.retryable) from exc
