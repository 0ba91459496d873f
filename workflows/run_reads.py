"""The read steps of ``AgentRunWorkflow``: logbook search, channel find, channel read, archiver read, gather
(several reads at once), and memory (recall notes; remember one, approval-gated when the worker says so)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ChildWorkflowError, is_cancelled_exception

from workflows.declined import decided_by, declined_result
from workflows.failures import failure_chain
from workflows.run_base import CA_RETRY, MEMORY_TIMEOUT, READ_RETRY, RunSteps

with workflow.unsafe.imports_passed_through():
    from activities.agent import AgentActivities
    from activities.archiver import ArchiverActivities
    from activities.channel_finder import ChannelActivities
    from activities.memory import MemoryActivities
    from tern.models import (
        ArchiverReadStep,
        ChannelFindStep,
        ChannelReadStep,
        GatherStep,
        LogbookSearchStep,
        MemoryStep,
        StepResult,
    )
    from tern.models.activity_io import ChannelFindInput, ChannelReadInput, LogbookSearchInput
    from tern.models.archiver import ArchiverReadInput
    from tern.models.memory import MemoryAddInput, MemorySearchInput

LOGBOOK_SEARCH_TIMEOUT = timedelta(seconds=60)
CHANNEL_FIND_TIMEOUT = timedelta(minutes=5)  # the first semantic find embeds every channel description
CHANNEL_READ_TIMEOUT = timedelta(seconds=30)
# One archiver_read step: every channel fetched concurrently, each request retried by the client
# (archiver_attempts, archiver_timeout_s); the samples go to the artifact store, only summaries come back.
ARCHIVER_READ_TIMEOUT = timedelta(minutes=5)
ARCHIVER_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    maximum_interval=timedelta(seconds=20),
    maximum_attempts=3,
    non_retryable_error_types=["BadArchiverRequest"],
)
MAX_READ_CHANNELS = 500  # channels one channel_read step reads, named and found by earlier steps together


class ReadSteps(RunSteps):
    """Handlers of the read step kinds (and ``memory``)."""

    async def _logbook(self, step: LogbookSearchStep, limit: timedelta | None = None) -> StepResult:
        found = await workflow.execute_activity_method(
            AgentActivities.search_logbook,
            LogbookSearchInput(
                workflow_id=self._workflow_id, step_id=step.id, query=step.query, limit=step.limit, mode=step.mode
            ),
            start_to_close_timeout=min(LOGBOOK_SEARCH_TIMEOUT, limit or LOGBOOK_SEARCH_TIMEOUT),
            schedule_to_close_timeout=limit,
            retry_policy=READ_RETRY,
            summary=f"logbook search ({step.mode}): {step.query[:80]}",
        )
        note = f" ({found.notice})" if found.notice else ""
        return StepResult(
            step_id=step.id,
            kind=step.kind,
            status="completed",
            hits=found.hits,
            message=f"{len(found.hits)} entries{note}",
            search_mode_used=found.mode_used,
            embedding_model=found.embedding_model or None,
        )

    async def _find_channels(self, step: ChannelFindStep) -> StepResult:
        found = await workflow.execute_activity_method(
            ChannelActivities.find_channels,
            ChannelFindInput(
                workflow_id=self._workflow_id, step_id=step.id, query=step.query, limit=step.limit, mode=step.mode
            ),
            start_to_close_timeout=CHANNEL_FIND_TIMEOUT,
            retry_policy=READ_RETRY,
            summary=f"find channels ({step.mode}): {step.query[:80]}",
        )
        note = f" ({found.notice})" if found.notice else ""
        return StepResult(
            step_id=step.id,
            kind=step.kind,
            status="completed",
            channels=found.hits,
            message=f"{len(found.hits)} channels{note}",
        )

    async def _read(self, step: ChannelReadStep, limit: timedelta | None = None) -> StepResult:
        found = [c.name for s in self._steps if s.step_id in step.channels_from for c in s.channels or []]
        channels = list(dict.fromkeys([*step.channels, *found]))[:MAX_READ_CHANNELS]
        if not channels:
            return StepResult(
                step_id=step.id,
                kind=step.kind,
                status="failed",
                message=f"no channels: steps {', '.join(step.channels_from)} found none",
            )
        readings = await workflow.execute_activity_method(
            AgentActivities.read_channels,
            ChannelReadInput(workflow_id=self._workflow_id, step_id=step.id, channels=channels),
            start_to_close_timeout=min(CHANNEL_READ_TIMEOUT, limit or CHANNEL_READ_TIMEOUT),
            schedule_to_close_timeout=limit,
            retry_policy=CA_RETRY,
            summary=f"read {', '.join(channels)[:100]}",
        )
        bad = [r.channel for r in readings if r.error]
        return StepResult(
            step_id=step.id,
            kind=step.kind,
            status="failed" if bad else "completed",
            readings=readings,
            message=f"unavailable: {', '.join(bad)}" if bad else f"{len(readings)} channels read",
        )

    async def _archiver(self, step: ArchiverReadStep, limit: timedelta | None = None) -> StepResult:
        """Archived history: the activity stores the samples as an artifact and returns summaries only. The step
        fails when no channel has data; channels without data are named in the message."""
        out = await workflow.execute_activity_method(
            ArchiverActivities.read_archiver,
            ArchiverReadInput(
                workflow_id=self._workflow_id,
                step_id=step.id,
                channels=step.channels,
                range=step.range,
                start=step.start,
                end=step.end,
                binning=step.binning,
                now=workflow.now(),
            ),
            start_to_close_timeout=min(ARCHIVER_READ_TIMEOUT, limit or ARCHIVER_READ_TIMEOUT),
            schedule_to_close_timeout=limit,
            retry_policy=ARCHIVER_RETRY,
            summary=f"archiver {', '.join(step.channels)[:80]} ({step.range or step.start})",
        )
        missing = "; ".join(f"{s.channel}: {s.error}" for s in out.failed)
        if len(out.failed) == len(out.series):
            return StepResult(
                step_id=step.id, kind=step.kind, status="failed", archived=out, message=f"no archived data: {missing}"
            )
        message = (
            f"{len(out.series) - len(out.failed)} channels, {out.samples} samples ({out.binning or 'raw'}) from "
            f"{out.start:%Y-%m-%d %H:%M} to {out.end:%Y-%m-%d %H:%M} UTC"
        )
        return StepResult(
            step_id=step.id,
            kind=step.kind,
            status="completed",
            archived=out,
            message=f"{message}; no data: {missing}" if missing else message,
        )

    async def _gather(self, step: GatherStep) -> StepResult:
        """Every source as its own activity, all at once, each within ``step.timeout_s`` (retries included); a
        source that fails is named and the others are kept (Osprey's data-source manager). Fails only when every
        source fails. A cancelled run cancels every source."""
        limit = timedelta(seconds=step.timeout_s) if step.timeout_s else None

        async def fetch(src: LogbookSearchStep | ChannelReadStep | ArchiverReadStep) -> StepResult:
            if isinstance(src, LogbookSearchStep):
                return await self._logbook(src, limit)
            if isinstance(src, ChannelReadStep):
                return await self._read(src, limit)
            return await self._archiver(src, limit)

        async def one(src: LogbookSearchStep | ChannelReadStep | ArchiverReadStep) -> StepResult:
            try:
                return await fetch(src)
            except (ActivityError, ChildWorkflowError) as exc:
                if is_cancelled_exception(exc):
                    raise
                within = f" (time limit {step.timeout_s:g} s)" if step.timeout_s else ""
                return StepResult(step_id=src.id, kind=src.kind, status="failed", message=failure_chain(exc) + within)

        results = list(await asyncio.gather(*(one(src) for src in step.sources)))
        failed = [r for r in results if r.status != "completed"]
        message = f"{len(results) - len(failed)} of {len(results)} sources"
        if failed:
            message += "; failed: " + "; ".join(f"{r.step_id} ({r.kind}): {r.message}" for r in failed)
        status = "failed" if len(failed) == len(results) else "completed"
        return StepResult(step_id=step.id, kind=step.kind, status=status, sources=results, message=message)

    async def _memory(self, step: MemoryStep) -> StepResult:
        """recall: the user's relevant notes. remember: the worker's memory approval mode, then (when it says
        'always') the approval gate, then the note is stored once (idempotent under run/step)."""
        req, workflow_id = self._req, self._workflow_id
        if step.action == "recall":
            found = await workflow.execute_activity_method(
                MemoryActivities.recall,
                MemorySearchInput(user=req.user, query=step.query or "", limit=step.limit),
                start_to_close_timeout=MEMORY_TIMEOUT,
                retry_policy=READ_RETRY,
                summary=f"recall notes of {req.user}",
            )
            return StepResult(
                step_id=step.id, kind=step.kind, status="completed", memories=found, message=f"{len(found)} notes"
            )
        text = step.text or ""
        policy = await workflow.execute_activity_method(
            MemoryActivities.memory_policy, start_to_close_timeout=MEMORY_TIMEOUT, retry_policy=READ_RETRY
        )
        if policy.approval_mode == "always":
            decision = await self._gate.request(
                kind="memory", step_id=step.id, summary=f"remember for {req.user}: {text[:300]}", reason=text
            )
            if decision.decision != "approved":
                return declined_result(step, decision, f"note not stored: {decided_by(decision)}")
        note = await workflow.execute_activity_method(
            MemoryActivities.remember,
            MemoryAddInput(
                user=req.user,
                text=text,
                source=f"run {workflow_id} step {step.id}",
                idem_key=f"{workflow_id}/{step.id}",
                workflow_id=workflow_id,
                step_id=step.id,
            ),
            start_to_close_timeout=MEMORY_TIMEOUT,
            retry_policy=READ_RETRY,
            summary=f"remember a note of {req.user}",
        )
        return StepResult(
            step_id=step.id, kind=step.kind, status="completed", memories=[note], message=f"note {note.id} stored"
        )
