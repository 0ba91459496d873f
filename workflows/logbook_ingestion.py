"""``LogbookIngestionWorkflow``: ingest a logbook source page by page, then enhance it.

Deterministic orchestration only: each page is read and upserted by the ``ariel_ingest_page`` activity (the
entries never enter history, only counts and a cursor); after ``pages_per_run`` pages, or when Temporal
suggests it, the workflow continues as new carrying its cursor and totals. The run is recorded in
``ingestion_runs`` (running -> completed | failed) under the workflow id. Enhancement (embeddings, then LLM
keywords and summaries) works through whatever is still pending in the database, so it resumes after a crash.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.ariel import ArielActivities
    from tern.models.ariel import (
        MAX_BAD_RECORDS,
        EnhanceInput,
        EnhanceResult,
        IngestionProgress,
        IngestionRequest,
        IngestionResult,
        IngestionRun,
        IngestPageInput,
        RunStatusName,
    )

# Timeouts and retry policies (named, next to the workflow that uses them).
INGEST_PAGE_TIMEOUT = timedelta(minutes=10)
INGEST_PAGE_HEARTBEAT = timedelta(seconds=60)
ENHANCE_TIMEOUT = timedelta(minutes=30)
ENHANCE_HEARTBEAT = timedelta(minutes=2)
RECORD_RUN_TIMEOUT = timedelta(seconds=30)
INGEST_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
    maximum_attempts=10,
    non_retryable_error_types=["AdapterError"],
)
ENHANCE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
    maximum_attempts=8,
    non_retryable_error_types=["EnhancementUnavailable"],
)
RECORD_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))
ENHANCE_MAX_STEPS = 1000  # activity calls per enhancement kind in one run (each does up to max_batches)


@workflow.defn
class LogbookIngestionWorkflow:
    def __init__(self) -> None:
        self._progress = IngestionProgress()

    @workflow.query
    def progress(self) -> IngestionProgress:
        return self._progress

    async def _record(self, req: IngestionRequest, run_key: str, status: RunStatusName, error: str = "") -> None:
        s = req.state
        await workflow.execute_activity_method(
            ArielActivities.record_run,
            IngestionRun(
                run_key=run_key,
                adapter=req.adapter,
                source=req.source,
                status=status,
                counts=s.counts,
                cursor=s.cursor,
                bad_records=s.bad_records,
                error=error,
            ),
            start_to_close_timeout=RECORD_RUN_TIMEOUT,
            retry_policy=RECORD_RETRY,
        )

    @workflow.run
    async def run(self, req: IngestionRequest) -> IngestionResult:
        run_key = req.run_key or workflow.info().workflow_id
        s = req.state
        self._progress = IngestionProgress(phase="reading", counts=s.counts, total=s.total, pages=s.pages)
        if not s.started:
            s.started = True
            s.now = workflow.now()
            await self._record(req, run_key, "running")
        pages_this_run = 0
        try:
            while True:
                page = await workflow.execute_activity_method(
                    ArielActivities.ingest_page,
                    IngestPageInput(
                        run_key=run_key,
                        adapter=req.adapter,
                        source=req.source,
                        cursor=s.cursor,
                        page_size=req.page_size,
                        id_prefix=req.id_prefix,
                        now=s.now,
                        since=req.since,
                        until=req.until or s.now,
                        with_total=s.pages == 0,
                    ),
                    start_to_close_timeout=INGEST_PAGE_TIMEOUT,
                    heartbeat_timeout=INGEST_PAGE_HEARTBEAT,
                    retry_policy=INGEST_RETRY,
                    summary=f"page {s.pages + 1} of {req.source}",
                )
                s.counts = s.counts + page.counts
                s.bad_records = (s.bad_records + page.bad_records)[:MAX_BAD_RECORDS]
                s.pages += 1
                s.total = page.total if page.total is not None else s.total
                s.cursor = page.next_cursor
                self._progress = IngestionProgress(phase="reading", counts=s.counts, total=s.total, pages=s.pages)
                if page.next_cursor is None:
                    break
                pages_this_run += 1
                if pages_this_run >= req.pages_per_run or workflow.info().is_continue_as_new_suggested():
                    await self._record(req, run_key, "running")
                    workflow.continue_as_new(req.model_copy(update={"run_key": run_key, "state": s}))
        except ActivityError as exc:
            self._progress.phase = "failed"
            await self._record(req, run_key, "failed", error=str(exc.cause or exc))
            raise

        notices: list[str] = []
        embedded = summarized = 0
        if req.enhance:
            for kind, method in (("embedding", ArielActivities.embed), ("summarizing", ArielActivities.summarize)):
                self._progress.phase = kind
                for _ in range(ENHANCE_MAX_STEPS):
                    r: EnhanceResult = await workflow.execute_activity_method(
                        method,
                        EnhanceInput(),
                        start_to_close_timeout=ENHANCE_TIMEOUT,
                        heartbeat_timeout=ENHANCE_HEARTBEAT,
                        retry_policy=ENHANCE_RETRY,
                    )
                    if kind == "embedding":
                        embedded += r.processed
                        self._progress.embedded = embedded
                    else:
                        summarized += r.processed
                        self._progress.summarized = summarized
                    if r.notice:
                        notices.append(f"{r.kind}: {r.notice}")
                    if r.index_failed:
                        notices.append(
                            f"{r.kind}: the search index refused {r.index_failed} writes; they stay pending "
                            "(the worker's log names each document and why)"
                        )
                    # indexed: a step that only pushed pending documents to OpenSearch made progress too (an
                    # older history's results lack it, read as 0: the same decision on replay)
                    if r.remaining == 0 or r.processed + r.failed + r.indexed == 0:
                        break
        self._progress.phase = "done"
        await self._record(req, run_key, "completed")
        return IngestionResult(
            run_key=run_key,
            counts=s.counts,
            bad_records=s.bad_records,
            pages=s.pages,
            embedded=embedded,
            summarized=summarized,
            notices=notices,
        )


ARIEL_WORKFLOWS: list[type] = [LogbookIngestionWorkflow]
