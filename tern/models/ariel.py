"""ARIEL ingestion messages: the pydantic types that cross the workflow/activity/starter boundary.

Kept small: counts, cursors and at most ``MAX_BAD_RECORDS`` bad-record notes travel through history; entries
themselves never do (activities read and write them in PostgreSQL).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

MAX_BAD_RECORDS = 50  # bad-record notes kept in workflow state and in ingestion_runs


class BadRecordInfo(BaseModel):
    """A record an adapter could not turn into an entry: its 0-based ``position`` in the source and why."""

    position: int
    reason: str


class UpsertCounts(BaseModel):
    """What an idempotent upsert did: entries inserted, changed, found identical, and records rejected."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0

    def __add__(self, other: UpsertCounts) -> UpsertCounts:
        return UpsertCounts(
            added=self.added + other.added,
            updated=self.updated + other.updated,
            unchanged=self.unchanged + other.unchanged,
            failed=self.failed + other.failed,
        )

    @property
    def seen(self) -> int:
        return self.added + self.updated + self.unchanged + self.failed


class PageResult(BaseModel):
    """What one page did: counts, the bad records, where the next page starts (None: source exhausted) and,
    when asked for and known, the number of records in the source."""

    counts: UpsertCounts
    bad_records: list[BadRecordInfo] = []
    next_cursor: str | None = None
    total: int | None = None
    index_failed: int = 0
    """Entries a separate search index (OpenSearch) refused; they stay pending and are pushed again later."""


class EnhanceResult(BaseModel):
    """One enhancement step: entries processed now, failures, how many are still pending (enhancement, and with
    a separate search index also what it has not acknowledged), and why nothing was done when enhancement is
    not configured."""

    kind: str
    processed: int = 0
    failed: int = 0
    remaining: int = 0
    notice: str = ""
    indexed: int = 0
    """Documents and vectors a separate search index (OpenSearch) acknowledged in this step."""
    index_failed: int = 0
    """Documents and vectors it refused; they stay pending (``remaining`` counts them) for the next step."""


class IngestionState(BaseModel):
    """Progress carried across continue-as-new."""

    cursor: str | None = None
    counts: UpsertCounts = UpsertCounts()
    bad_records: list[BadRecordInfo] = []
    pages: int = 0
    total: int | None = None
    now: datetime | None = None  # fixed at the first run: the demo format's reference time, HTTP 'until'
    started: bool = False


class IngestionRequest(BaseModel):
    """Start ``LogbookIngestionWorkflow``: ingest ``source`` with ``adapter``, then enhance.

    ``since``/``until`` bound the ALS HTTP adapter (UTC; ``since`` defaults to one window before the newest
    stored ALS entry, or 7 days back; ``until`` to the workflow's start time). ``page_size`` records per
    activity; after ``pages_per_run`` pages the workflow continues as new. ``state`` is internal.
    """

    adapter: str
    source: str
    id_prefix: str = ""
    page_size: int = Field(500, ge=1, le=10_000)
    pages_per_run: int = Field(40, ge=1)
    since: datetime | None = None
    until: datetime | None = None
    enhance: bool = True
    run_key: str = ""
    state: IngestionState = IngestionState()


class IngestPageInput(BaseModel):
    run_key: str
    adapter: str
    source: str
    cursor: str | None = None
    page_size: int = 500
    id_prefix: str = ""
    now: datetime | None = None
    since: datetime | None = None
    until: datetime | None = None
    with_total: bool = False


class EnhanceInput(BaseModel):
    """``batch_size`` entries per LLM or embedding call; ``max_batches`` per activity (it heartbeats)."""

    batch_size: int = Field(64, ge=1)
    max_batches: int = Field(50, ge=1)


RunStatusName = Literal["running", "completed", "failed"]


class IngestionRun(BaseModel):
    """One row of ``ingestion_runs``: a source ingested by one (possibly continued-as-new) workflow; also the
    ``ariel_record_run`` activity's argument, which creates or updates the row.

    ``counts`` are the totals so far, ``cursor`` where reading stopped, ``bad_records`` at most
    ``MAX_BAD_RECORDS`` notes. ``started_at``/``finished_at`` (UTC) are set by the database, never by the caller.
    """

    run_key: str
    adapter: str
    source: str
    status: RunStatusName = "running"
    counts: UpsertCounts = UpsertCounts()
    cursor: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str = ""
    bad_records: list[BadRecordInfo] = []


class IngestionProgress(BaseModel):
    """Answer of the workflow's ``progress`` query (and the CLI's progress bar)."""

    phase: str = "starting"  # starting | reading | embedding | summarizing | done | failed
    counts: UpsertCounts = UpsertCounts()
    total: int | None = None
    pages: int = 0
    embedded: int = 0
    summarized: int = 0


class IngestionResult(BaseModel):
    run_key: str
    counts: UpsertCounts
    bad_records: list[BadRecordInfo] = []
    pages: int = 0
    embedded: int = 0
    summarized: int = 0
    notices: list[str] = []
