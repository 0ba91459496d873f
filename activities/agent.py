"""Activities of the agent run: thin adapters from Temporal to the Tern core.

Each activity takes one pydantic model, calls ``tern.*``, and turns failures into ``ApplicationError``
(non-retryable where retrying cannot help: bad configuration, refused writes, unknown write outcome).
Channel Access goes through one :class:`~tern.control.ca_client.ChannelAccessClient` per ``AgentActivities``
(a bounded pool of threads attached to the CA context; never ``asyncio.to_thread``), PVAccess through one
:class:`~tern.control.pva.PVAccessClient`; :attr:`AgentActivities.channels` routes each channel to its protocol
(``pva://NAME``; :mod:`tern.control.routing`) and is the ``ChannelIO`` the write protocol gets.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import ring
from activities.ring import with_predicted_effect
from tern import metrics
from tern.agent.compose import compose, compose_with_llm
from tern.ariel.service import search as ariel_search
from tern.audit.store import record_event, seconds_since_request
from tern.config import TernSettings
from tern.control import write as control_write
from tern.control.ca_client import ChannelAccessClient
from tern.control.limits import LimitsDatabase, LimitsDatabaseError
from tern.control.pva import PVAccessClient, to_npz
from tern.control.routing import ChannelRouter
from tern.db import create_pool
from tern.llm.chat import LLMClient, LLMError, make_chat_provider
from tern.models import AuditEvent, ChannelReading, LimitsCheck, SearchResponse, WriteRecord
from tern.models.activity_io import (
    ChannelReadInput,
    ComposedAnswer,
    ComposeInput,
    LogbookSearchInput,
    WriteCheckInput,
    WriteInput,
)
from tern.models.ring import (
    MeasuredEffect,
    MeasureEffectInput,
    OrbitCorrectInput,
    OrbitCorrectOutput,
    PlanEffect,
    PlanPredictInput,
    RingSnapshot,
    RingSnapshotInput,
)
from tern.planning import REGISTRY
from tern.sandbox.artifacts import store_artifact

log = logging.getLogger("tern.activities.agent")


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


@contextmanager
def _as_application_error() -> Iterator[None]:
    """Turn the write protocol's :class:`~tern.control.write.WriteError` into Temporal's ``ApplicationError`` of the
    same type name and retryability."""
    try:
        yield
    except control_write.WriteError as exc:
        raise ApplicationError(str(exc), type=type(exc).__name__, non_retryable=exc.non_retryable) from exc


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
        self._pva: PVAccessClient | None = None
        self._limits: tuple[tuple[float, int], LimitsDatabase] | None = None
        self._answer_llm: LLMClient | None = None

    @property
    def ca(self) -> ChannelAccessClient:
        """The Channel Access client (created on first use; raises ``ChannelAccessError`` when libca already
        runs in this process with other ``EPICS_CA_*`` settings)."""
        if self._ca is None:
            self._ca = ChannelAccessClient(self.settings.control.ca_max_concurrency, self.settings.ca_environment())
        return self._ca

    @property
    def pva(self) -> PVAccessClient:
        """The PVAccess client (created on first use from ``settings.pva_config()``; raises ``ValueError`` for a
        bad ``TERN_CONTROL__PVA_ADDR_LIST``)."""
        if self._pva is None:
            self._pva = PVAccessClient(self.settings.pva_config(), self.settings.control.ca_max_concurrency)
        return self._pva

    @property
    def channels(self) -> ChannelRouter:
        """Channel reads and writes of either protocol: ``pva://NAME``, or a bare name whose limits entry says
        ``"protocol": "pva"``, over PVAccess; the rest over Channel Access (:mod:`tern.control.routing`)."""
        return ChannelRouter(lambda: self.ca, lambda: self.pva, self._routing_limits)

    def _routing_limits(self) -> LimitsDatabase:
        """The limits database for routing bare names, read again only when its file changed (size, mtime);
        raises ``LimitsDatabaseError`` (the router then takes Channel Access; the write path refuses anyway)."""
        path = self.settings.control.limits_path
        try:
            st = path.stat()
        except OSError as exc:
            raise LimitsDatabaseError(f"limits database not found: {path}") from exc
        stamp = (st.st_mtime, st.st_size)
        if self._limits is None or self._limits[0] != stamp:
            self._limits = (stamp, control_write.load_limits(self.settings.control))
        return self._limits[1]

    async def pool(self) -> asyncpg.Pool:
        async with self._pool_lock:
            if self._pool is None:
                self._pool = await create_pool(self.settings.writer_dsn)
            return self._pool

    async def close(self) -> None:
        """Close the pool, the Channel Access client if this object created it, and the PVAccess client."""
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        if self._owns_ca and self._ca is not None:
            await asyncio.to_thread(self._ca.close)
            self._ca = None
        if self._pva is not None:
            await asyncio.to_thread(self._pva.close)
            self._pva = None

    def all(self) -> list[Callable[..., Any]]:
        """The activity callables to register on a worker."""
        return [
            self.search_logbook,
            self.read_channels,
            self.check_write,
            self.write_channel,
            self.ring_snapshot,
            self.measure_effect,
            self.plan_orbit_correction,
            self.predict_plan,
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
        """Read channels over Channel Access or PVAccess; unreachable channels come back with ``error`` set.

        A structured PVAccess value (NTNDArray image, NTTable, long waveform) stays out of history: its reading
        carries a summary, and its data is stored as an ``.npz`` artifact of this run and step (``artifact_id``),
        which a python step loads with ``load_image()``/``load_structured()``.

        An IOC or gateway that stops answering for a while (a reboot) should not fail the run: while the first
        attempt was scheduled less than ``ca_unreachable_grace_s`` ago, a read where any channel did not answer
        raises a retryable ``ChannelsUnreachable`` (the workflow's ``CA_RETRY`` tries again); after that, it returns
        the readings with their errors (the caller decides)."""
        readings = await self.channels.read_channels(inp.channels, self.settings.control.ca_timeout_s)
        failed = [r for r in readings if r.error]
        if failed and _waiting_s() < self.settings.control.ca_unreachable_grace_s:
            raise ApplicationError(
                f"{len(failed)} of {len(readings)} channels did not answer: "
                + "; ".join(f"{r.channel}: {r.error}" for r in failed[:10]),
                type="ChannelsUnreachable",
            )
        return [await self._store_structured(inp, r) if r.structured else r for r in readings]

    async def _store_structured(self, inp: ChannelReadInput, reading: ChannelReading) -> ChannelReading:
        """Fetch a structured PVAccess value whole and store it as an ``.npz`` artifact; the reading with its id."""
        _, name = self.channels.route(reading.channel)
        data = await self.pva.read_structured(name, self.settings.control.ca_timeout_s)
        if data is None:  # changed shape since the read: keep the summary
            return reading
        ref = await store_artifact(
            await self.pool(),
            to_npz(data),
            workflow_id=inp.workflow_id,
            step_id=inp.step_id,
            name=reading.channel,
            media_type="application/x-npz",
        )
        return reading.model_copy(update={"artifact_id": ref})

    @activity.defn(name="check_write")
    async def check_write(self, inp: WriteCheckInput) -> LimitsCheck:
        """Check a proposed write (:func:`tern.control.write.check_write`: master switch, limits database, live
        value), then, for a magnet of the ring model, predict its effect (:mod:`activities.ring`), and with
        ``inp.plan_writes`` the plan's as the whole: refused before approval when it leaves no closed orbit or
        breaks an effect limit. A channel that does not answer raises a
        retryable ``ChannelUnreachable`` for ``ca_unreachable_grace_s`` after the first attempt (an IOC rebooting),
        then is refused (``channel_unreachable``)."""
        with _as_application_error():
            check = await control_write.check_write(self.channels, self.settings.control, inp, _waiting_s)
        if check.allowed and self.settings.ring.predict:  # the approver sees what the write will do (issue 23)
            check = await with_predicted_effect(self.settings, self.ca, check, inp.plan_writes, inp.plan_each)
            if not check.allowed:
                metrics.write_refusals.labels(reason=check.violation or "refused").inc()
        return check

    @activity.defn(name="ring_snapshot")
    async def ring_snapshot(self, inp: RingSnapshotInput) -> RingSnapshot:
        """BPM positions and tunes right before a magnet write (:func:`activities.ring.ring_snapshot`)."""
        return await ring.ring_snapshot(self.settings, self.ca, inp.bpms)

    @activity.defn(name="measure_effect")
    async def measure_effect(self, inp: MeasureEffectInput) -> MeasuredEffect:
        """After a verified magnet write: settle, read, measured against predicted
        (:func:`activities.ring.measure_effect`)."""
        heartbeat = activity.heartbeat if activity.in_activity() else None
        return await ring.measure_effect(self.settings, self.ca, inp, heartbeat)

    @activity.defn(name="predict_plan")
    async def predict_plan(self, inp: PlanPredictInput) -> PlanEffect | None:
        """A plan's magnet writes predicted as the whole, for its approval
        (:func:`activities.ring.predict_plan_effect`); None when fewer than two are mapped or prediction is off."""
        if not self.settings.ring.predict:
            return None
        return await ring.predict_plan_effect(self.settings, self.ca, inp.writes)

    @activity.defn(name="plan_orbit_correction")
    async def plan_orbit_correction(self, inp: OrbitCorrectInput) -> OrbitCorrectOutput:
        """Corrector writes for an ``orbit_correct`` step (:func:`activities.ring.plan_orbit_correction`)."""
        return await ring.plan_orbit_correction(self.settings, self.ca, inp)

    @activity.defn(name="write_channel")
    async def write_channel(self, inp: WriteInput) -> WriteRecord:
        """Perform an approved write exactly once per ``idempotency_key`` (:func:`tern.control.write.write`),
        heartbeating while the put or the settle delay is awaited.

        Raises non-retryable ``ApplicationError`` when writes are disabled, the limits refuse the write now,
        the live value moved (beyond the verification tolerance) from the one shown to the approver, or an
        earlier attempt was interrupted and the machine does not hold the target value; its ``type`` is the
        name of the :class:`~tern.control.write.WriteError` subclass.
        """
        heartbeat = activity.heartbeat if activity.in_activity() else None
        with _as_application_error():
            return await control_write.write(self.channels, await self.pool(), self.settings.control, inp, heartbeat)

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
