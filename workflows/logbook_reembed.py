"""``LogbookReembedWorkflow``: embed every stored logbook entry with another embedding model.

The procedure: call ``ariel_reembed`` (a few batches of entries that lack a current vector of the model) until
none lack one; after ``steps_per_run`` calls, or when Temporal suggests it, continue as new carrying the
totals. Progress lives in the database (which entries have a vector of the model), not in the workflow, so
a worker killed mid-batch loses at most that batch's work, and a run cancelled midway is resumed by starting
another: it skips what is done. Vectors of other models are left as they are; search uses the configured
model's only (``tern.ariel.service``).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.ariel import ArielActivities
    from tern.models.ariel import ReembedInput, ReembedProgress, ReembedRequest, ReembedResult, ReembedStep

# Timeouts and retry policies (named, next to the workflow that uses them).
REEMBED_STEP_TIMEOUT = timedelta(minutes=30)
REEMBED_HEARTBEAT = timedelta(seconds=20)  # the activity beats every 5 s; a killed worker is noticed in 20
REEMBED_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
    maximum_attempts=10,
    # The model cannot be loaded, or its dimension contradicts stored vectors under the same name: retrying
    # cannot help; the message names the setting and the fix.
    non_retryable_error_types=["EnhancementUnavailable", "EmbeddingDimensionMismatch"],
)


@workflow.defn
class LogbookReembedWorkflow:
    def __init__(self) -> None:
        self._progress = ReembedProgress()

    @workflow.query
    def progress(self) -> ReembedProgress:
        return self._progress

    @workflow.run
    async def run(self, req: ReembedRequest) -> ReembedResult:
        self._progress = ReembedProgress(phase="embedding", done=req.done)
        calls_this_run = 0
        while True:
            step: ReembedStep = await workflow.execute_activity_method(
                ArielActivities.reembed,
                ReembedInput(
                    provider=req.provider, model=req.model, batch_size=req.batch_size, max_batches=req.max_batches
                ),
                start_to_close_timeout=REEMBED_STEP_TIMEOUT,
                heartbeat_timeout=REEMBED_HEARTBEAT,
                retry_policy=REEMBED_RETRY,
                summary=f"re-embed with {req.provider}/{req.model[:60]}: step {req.steps + 1}",
            )
            req.done += step.processed
            req.steps += 1
            self._progress = ReembedProgress(
                phase="embedding", stored_as=step.stored_as, done=req.done, remaining=step.remaining, total=step.total
            )
            if step.remaining == 0 or step.processed == 0:
                break
            calls_this_run += 1
            if calls_this_run >= req.steps_per_run or workflow.info().is_continue_as_new_suggested():
                workflow.continue_as_new(req)
        self._progress.phase = "done"
        return ReembedResult(
            provider=req.provider,
            model=req.model,
            stored_as=step.stored_as,
            embedded=req.done,
            remaining=step.remaining,
            total=step.total,
        )
