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


class BulkEmbedResult(BaseModel):
    """``tern.ariel.ingest.embed_bulk``: entries embedded, the embeddings table, seconds spent embedding and
    storing, and building the HNSW index afterwards."""

    embedded: int
    table: str
    embed_s: float
    index_build_s: float


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


EmbeddingProviderName = Literal["onnx", "sentence-transformers", "openai"]


class ReembedRequest(BaseModel):
    """Start ``LogbookReembedWorkflow``: embed every stored entry with ``provider``/``model`` (the names of
    ``TERN_ARIEL__EMBEDDING_PROVIDER``/``TERN_ARIEL__EMBEDDING_MODEL``; the endpoint URL and key of ``openai`` come
    from the worker's settings). Entries that already have a current vector of that model are skipped, so a run resumes
    where an interrupted one stopped. ``steps_per_run`` activity calls per workflow run before it continues as
    new; ``done`` and ``steps`` carry the totals across continue-as-new."""

    provider: EmbeddingProviderName = "onnx"
    model: str = Field("all-MiniLM-L6-v2", min_length=1, max_length=500)
    batch_size: int = Field(64, ge=1, le=4096)
    max_batches: int = Field(10, ge=1, le=1000)
    steps_per_run: int = Field(50, ge=1)
    done: int = 0
    steps: int = 0


class ReembedInput(BaseModel):
    """The ``ariel_reembed`` activity: up to ``max_batches`` batches of ``batch_size`` entries with this model."""

    provider: EmbeddingProviderName
    model: str
    batch_size: int = Field(64, ge=1)
    max_batches: int = Field(10, ge=1)


class ReembedStep(BaseModel):
    """One ``ariel_reembed`` call: the name vectors are stored under, entries embedded now, entries still
    without a vector of that model, and all entries."""

    stored_as: str
    processed: int = 0
    remaining: int = 0
    total: int = 0


class ReembedProgress(BaseModel):
    """Answer of the re-embed workflow's ``progress`` query (the CLI's progress bar)."""

    phase: str = "starting"  # starting | embedding | done
    stored_as: str = ""
    done: int = 0
    remaining: int | None = None
    total: int | None = None


class ReembedResult(BaseModel):
    """Where the re-embedding ended: every entry has a vector of ``stored_as`` when ``remaining`` is 0."""

    provider: str
    model: str
    stored_as: str
    embedded: int
    remaining: int
    total: int
