"""Logbook write-back: drafting the entry of a ``logbook_publish`` step and publishing it once, after approval.

``draft_entry`` checks everything that can be checked before a human is asked (the target can publish, every
attachment is an artifact of the run) and returns the ``LogbookDraft`` the approver sees. ``publish_entry``
publishes an approved draft exactly once per run and step, recorded in ``logbook_publications`` (migration 340):

- ``embedded`` (the ARIEL store): the entry (id from run and step, :func:`embedded_entry_id`) is upserted into
  ``ariel_entries`` in the same transaction as its publication row, so it is found by ``tern ariel search`` at
  once; its embedding is stored afterwards when an embedder is available (a retry stores it again; an entry
  without one is still found by keyword and is embedded by the next ``ariel_embed``), and a separate search index
  (OpenSearch) is fed as ingestion feeds it. Attachments are linked as ``artifact:<id>`` (``tern artifact ID``).
- a facility logbook (an adapter with ``publish``, e.g. ``elog``): the row is claimed before sending and completed
  with the server's id. A claim without an id (a worker died or lost the answer after sending) is never sent again
  automatically: ``PublishOutcomeUnknown`` says to check the logbook.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg

from tern.ariel import store
from tern.ariel.adapters import AdapterError, SourceUnavailable, get_adapter
from tern.ariel.adapters.base import (
    OutgoingFile,
    PublishedRef,
    Publisher,
    PublishNotSupported,
    PublishOutcomeUnknown,
    PublishRejected,
    PublishTarget,
)
from tern.ariel.backends.base import SearchBackend
from tern.ariel.embeddings import EmbeddingError, EmbeddingProvider
from tern.ariel.indexing import push_entries, push_vectors
from tern.ariel.models import Attachment, LogbookEntry
from tern.ariel.store import DimensionMismatch
from tern.config_sections import LogbookSettings
from tern.models.logbook import EMBEDDED_TARGET, MAX_ENTRY_TEXT_CHARS, DraftAttachment, LogbookDraft, LogbookPublication
from tern.sandbox.artifacts import load_artifact

log = logging.getLogger(__name__)
SOURCE_SYSTEM = "tern"  # source_system and logbook of entries Tern publishes to the embedded logbook
ARTIFACT_URL = "artifact:"  # Attachment.url prefix of an attached artifact


class DraftInvalid(ValueError):
    """The step's entry cannot be drafted (unknown or foreign attachment artifact, text too long): nothing is asked
    or published; the message says what to fix."""


def embedded_entry_id(workflow_id: str, step_id: str) -> str:
    """``tern-<24 hex>``: the embedded logbook's id of the entry of ``step_id`` in run ``workflow_id`` (the same for
    every attempt, so a retried publish upserts one row)."""
    return "tern-" + hashlib.sha256(f"{workflow_id}\0{step_id}".encode()).hexdigest()[:24]


def publisher(target: str) -> Publisher | None:
    """The adapter's publish method for ``target`` (None for the embedded logbook).

    Raises ``AdapterError`` for an unknown adapter and ``PublishNotSupported`` for one that cannot publish.
    """
    if target == EMBEDDED_TARGET:
        return None
    adapter = get_adapter(target)
    if adapter.publish is None:
        raise PublishNotSupported(
            f"publishing not supported by adapter {target!r} (logbook.publish_target); use 'embedded' or an "
            "adapter that can publish: elog, jlab"
        )
    return adapter.publish


def publish_target(settings: LogbookSettings) -> PublishTarget:
    """The facility logbook the settings name (``publish_url``, ``publish_logbook``, credentials, timeout)."""
    password = settings.publish_password.get_secret_value() if settings.publish_password else None
    return PublishTarget(
        url=settings.publish_url or "",
        logbook=settings.publish_logbook,
        username=settings.publish_username,
        password=password,
        client_cert=settings.publish_client_cert,
        timeout_s=settings.publish_timeout_s,
    )


async def draft_entry(
    db: asyncpg.Pool,
    *,
    target: str,
    workflow_id: str,
    step_id: str,
    author: str,
    title: str,
    text: str,
    tags: Sequence[str],
    sections: Sequence[str],
    attachments: Sequence[str],
) -> LogbookDraft:
    """The entry as the approver will see it: ``text``, then ``sections`` (summaries of earlier steps), then a line
    naming the run; ``attachments`` (artifact ids, duplicates dropped) checked to be artifacts of ``workflow_id``.

    Raises ``PublishNotSupported`` / ``AdapterError`` (the target cannot publish) and ``DraftInvalid`` (an unknown
    or foreign artifact, a text beyond ``MAX_ENTRY_TEXT_CHARS``).
    """
    publisher(target)
    body = "\n\n".join(p for p in [text.strip(), *sections, f"Tern run {workflow_id}, step {step_id}."] if p)
    if len(body) > MAX_ENTRY_TEXT_CHARS:
        raise DraftInvalid(
            f"the entry's text would be {len(body)} characters, more than {MAX_ENTRY_TEXT_CHARS}: shorten 'text' "
            "or name fewer 'inputs'"
        )
    files: list[DraftAttachment] = []
    for ref in dict.fromkeys(attachments):
        row = await db.fetchrow("SELECT run_id, name, media_type, size_bytes FROM artifacts WHERE id = $1", ref)
        if row is None:
            raise DraftInvalid(f"unknown attachment artifact {ref!r}: no artifact has that id")
        if row["run_id"] != workflow_id:
            raise DraftInvalid(f"attachment artifact {ref!r} is not an artifact of run {workflow_id}")
        files.append(
            DraftAttachment(
                artifact_id=ref, name=row["name"], media_type=row["media_type"], size_bytes=row["size_bytes"]
            )
        )
    return LogbookDraft(
        workflow_id=workflow_id,
        step_id=step_id,
        target=target,
        entry_id=embedded_entry_id(workflow_id, step_id) if target == EMBEDDED_TARGET else "",
        author=author,
        title=title,
        text=body,
        tags=list(dict.fromkeys(tags)),
        attachments=files,
    )


def embedded_entry(draft: LogbookDraft, *, approver: str, request_id: str, now: datetime) -> LogbookEntry:
    """The ARIEL entry of an approved draft: source system and logbook ``tern``, the run's id in its metadata, its
    attachments as ``artifact:<id>``."""
    return LogbookEntry(
        entry_id=draft.entry_id or embedded_entry_id(draft.workflow_id, draft.step_id),
        source_system=SOURCE_SYSTEM,
        timestamp=now,
        author=draft.author,
        title=draft.title,
        raw_text=draft.text,
        tags=draft.tags,
        logbook=SOURCE_SYSTEM,
        attachments=[
            Attachment(url=ARTIFACT_URL + a.artifact_id, type=a.media_type, filename=a.name) for a in draft.attachments
        ],
        metadata={
            "workflow_id": draft.workflow_id,
            "step_id": draft.step_id,
            "approved_by": approver,
            "request_id": request_id,
        },
    )


_CLAIM = """
INSERT INTO logbook_publications (workflow_id, step_id, target, title, attachments, approved_by, request_id)
VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (workflow_id, step_id) DO NOTHING RETURNING 1
"""
_DONE = """
UPDATE logbook_publications SET entry_id = $3, url = $4, published_at = $5 WHERE workflow_id = $1 AND step_id = $2
"""


def _publication(row: asyncpg.Record, *, duplicate: bool) -> LogbookPublication:
    return LogbookPublication(
        target=row["target"],
        entry_id=row["entry_id"],
        url=row["url"],
        title=row["title"],
        attachments=list(row["attachments"]),
        approved_by=row["approved_by"],
        published_at=row["published_at"],
        duplicate=duplicate,
    )


async def _claim(conn: store.Conn, draft: LogbookDraft, approver: str, request_id: str) -> asyncpg.Record | None:
    """Claim the run and step's publication; the existing row when an earlier attempt claimed it (None: ours)."""
    ids = [a.artifact_id for a in draft.attachments]
    args = (draft.workflow_id, draft.step_id, draft.target, draft.title, ids, approver, request_id)
    if await conn.fetchval(_CLAIM, *args):
        return None
    return await conn.fetchrow(
        "SELECT * FROM logbook_publications WHERE workflow_id = $1 AND step_id = $2", draft.workflow_id, draft.step_id
    )


async def publish_entry(
    pool: asyncpg.Pool,
    draft: LogbookDraft,
    *,
    approver: str,
    request_id: str,
    target: PublishTarget | None = None,
    embedder: EmbeddingProvider | None = None,
    backend: SearchBackend | None = None,
    now: datetime | None = None,
) -> LogbookPublication:
    """Publish the approved ``draft`` once (``LogbookPublication.duplicate`` when an earlier attempt did).

    Args:
        pool: the storage of record (publication rows, artifacts, the embedded logbook).
        draft: from :func:`draft_entry`; ``draft.target`` says where.
        approver, request_id: who approved it, through which approval request (recorded with the row).
        target: the facility logbook (``publish_target(settings.logbook)``); unused for ``embedded``.
        embedder: embeds the embedded entry (None: keyword search only until the next ``ariel_embed``).
        backend: a separate search index to feed (OpenSearch), or None.
        now: the publication time (default: the current time, UTC).

    Raises ``PublishNotSupported`` / ``AdapterError`` (the target cannot publish), ``PublishRejected`` (the facility
    logbook refused: nothing published, the claim released), ``SourceUnavailable`` (not reached: claim released,
    a retry may publish) and ``PublishOutcomeUnknown`` (sent without an answer now or by an earlier attempt).
    """
    now = now or datetime.now(UTC)
    send = publisher(draft.target)
    if send is None:
        return await _publish_embedded(pool, draft, approver, request_id, embedder, backend, now)
    async with pool.acquire() as conn:
        existing = await _claim(conn, draft, approver, request_id)
    if existing is not None:
        if existing["published_at"] is not None:
            return _publication(existing, duplicate=True)
        raise PublishOutcomeUnknown(
            f"an earlier attempt sent the entry {draft.title!r} of run {draft.workflow_id} step {draft.step_id} to "
            f"{draft.target} at {existing['claimed_at']:%Y-%m-%d %H:%M:%S} UTC without a confirmed id; it is not "
            "sent again: check the logbook"
        )
    try:
        files = [await _file(pool, a) for a in draft.attachments]
        ref: PublishedRef = await send(draft, files, target or PublishTarget(url=""))
    except (PublishRejected, SourceUnavailable, AdapterError, DraftInvalid):
        await pool.execute(
            "DELETE FROM logbook_publications WHERE workflow_id = $1 AND step_id = $2 AND published_at IS NULL",
            draft.workflow_id,
            draft.step_id,
        )
        raise
    await pool.execute(_DONE, draft.workflow_id, draft.step_id, ref.entry_id, ref.url, now)
    ids = [a.artifact_id for a in draft.attachments]
    return LogbookPublication(
        target=draft.target,
        entry_id=ref.entry_id,
        url=ref.url,
        title=draft.title,
        attachments=ids,
        approved_by=approver,
        published_at=now,
    )


async def _file(pool: asyncpg.Pool, a: DraftAttachment) -> OutgoingFile:
    art = await load_artifact(pool, a.artifact_id)
    if art is None:
        raise DraftInvalid(f"attachment artifact {a.artifact_id!r} is gone")
    return OutgoingFile(name=art.name or a.artifact_id, media_type=art.media_type, content=art.content)


async def _publish_embedded(
    pool: asyncpg.Pool,
    draft: LogbookDraft,
    approver: str,
    request_id: str,
    embedder: EmbeddingProvider | None,
    backend: SearchBackend | None,
    now: datetime,
) -> LogbookPublication:
    entry = embedded_entry(draft, approver=approver, request_id=request_id, now=now)
    async with pool.acquire() as conn:
        async with conn.transaction():
            existing = await _claim(conn, draft, approver, request_id)
            if existing is None:
                await store.upsert_entries(conn, [entry])
                await conn.execute(_DONE, draft.workflow_id, draft.step_id, entry.entry_id, "", now)
        row = await conn.fetchrow(
            "SELECT * FROM logbook_publications WHERE workflow_id = $1 AND step_id = $2",
            draft.workflow_id,
            draft.step_id,
        )
        assert row is not None
        await _embed_and_index(conn, row["entry_id"], embedder, backend)
    return _publication(row, duplicate=existing is not None)


async def _embed_and_index(
    conn: store.Conn, entry_id: str, embedder: EmbeddingProvider | None, backend: SearchBackend | None
) -> None:
    """Store the entry's vector (when an embedder is given) and push both to a separate index; a failure is logged:
    the entry is in the storage of record, and ``ariel_embed`` picks up what is missing."""
    stored = await store.get_entry(conn, entry_id)
    if stored is None:
        return
    table = None
    if embedder is not None:
        try:
            table = await store.embedding_table(conn, embedder.model, embedder.dim)
            assert table is not None
            vectors = await embedder.embed([stored.embedding_text()])
            await store.store_embeddings(conn, table, [stored], vectors)
        except (EmbeddingError, DimensionMismatch) as exc:
            log.warning("logbook entry %s: not embedded now (%s); the next ariel_embed embeds it", entry_id, exc)
            table = None
    if backend is not None and backend.separate_index:
        try:
            await push_entries(conn, backend, 1, [entry_id])
            if table is not None and embedder is not None:
                await push_vectors(conn, backend, embedder.model, table, 10)
        except Exception as exc:  # the index is a copy: what it missed stays pending for the next step
            log.warning("logbook entry %s: not indexed now (%s); it stays pending", entry_id, exc)
