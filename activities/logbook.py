"""Activities of ``logbook_publish`` steps: draft the entry (before the approval) and publish it (after), through
:mod:`tern.ariel.publish`.

Non-retryable (retrying cannot help, nothing was published): ``PublishNotSupported`` (the target adapter cannot
publish), ``LogbookDraftInvalid`` (unknown or foreign attachment, text too long, unknown adapter),
``PublishRejected`` (the facility logbook refused) and ``PublishOutcomeUnknown`` (sent without an answer: never
sent twice). Retryable: ``SourceUnavailable`` (the facility logbook could not be reached) and database errors; a
retried publish publishes once (``logbook_publications``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from tern.ariel.adapters import AdapterError, SourceUnavailable
from tern.ariel.adapters.base import PublishNotSupported, PublishOutcomeUnknown, PublishRejected
from tern.ariel.backends.base import SearchBackend
from tern.ariel.embeddings import EmbeddingError, EmbeddingProvider
from tern.ariel.providers import CONFIGURED, Providers
from tern.ariel.publish import DraftInvalid, draft_entry, publish_entry, publish_target
from tern.ariel.service import make_backend
from tern.config import TernSettings
from tern.models.activity_io import LogbookDraftInput, LogbookPublishInput
from tern.models.logbook import LogbookDraft, LogbookPublication
from tern.planning import REGISTRY

log = logging.getLogger(__name__)


class LogbookActivities:
    """Activities bound to one worker's settings (``logbook`` section, embedding provider) and pool.

    Args:
        settings: the worker's settings.
        pool: asyncpg pool on the storage of record.
        embedder: an embedding provider, None for none, or ``CONFIGURED`` (the settings' provider).
        backend: the ARIEL search backend (default from ``settings.ariel.backend``).
    """

    def __init__(
        self,
        settings: TernSettings,
        pool: asyncpg.Pool,
        embedder: EmbeddingProvider | None = CONFIGURED,
        backend: SearchBackend | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self._providers = Providers(settings, embedder=embedder, llm=None)
        self._backend = backend or make_backend(settings, pool)

    def all(self) -> list[Callable[..., Any]]:
        """The activity callables to register on a worker."""
        return [self.draft_logbook_entry, self.publish_logbook_entry]

    @activity.defn(name="draft_logbook_entry")
    async def draft_logbook_entry(self, inp: LogbookDraftInput) -> LogbookDraft:
        """The entry to show the approver: text, summaries of ``inp.inputs``, run id, checked attachments."""
        try:
            return await draft_entry(
                self.pool,
                target=self.settings.logbook.publish_target,
                workflow_id=inp.workflow_id,
                step_id=inp.step_id,
                author=inp.user,
                title=inp.title,
                text=inp.text,
                tags=inp.tags,
                sections=[REGISTRY.summarise(r) for r in inp.inputs],
                attachments=inp.attachments,
            )
        except PublishNotSupported as exc:
            raise ApplicationError(str(exc), type="PublishNotSupported", non_retryable=True) from exc
        except (DraftInvalid, AdapterError) as exc:
            raise ApplicationError(str(exc), type="LogbookDraftInvalid", non_retryable=True) from exc

    @activity.defn(name="publish_logbook_entry")
    async def publish_logbook_entry(self, inp: LogbookPublishInput) -> LogbookPublication:
        """Publish the approved draft once (a retry returns the earlier publication, ``duplicate`` set)."""
        embedder = None
        if inp.draft.target == "embedded":
            try:
                embedder = await self._providers.embedder()
            except EmbeddingError as exc:
                log.warning("logbook publish: embeddings unavailable, keyword only for now: %s", exc)
        try:
            return await publish_entry(
                self.pool,
                inp.draft,
                approver=inp.approver,
                request_id=inp.request_id,
                target=publish_target(self.settings.logbook),
                embedder=embedder,
                backend=self._backend,
            )
        except PublishNotSupported as exc:
            raise ApplicationError(str(exc), type="PublishNotSupported", non_retryable=True) from exc
        except PublishRejected as exc:
            raise ApplicationError(str(exc), type="PublishRejected", non_retryable=True) from exc
        except PublishOutcomeUnknown as exc:
            raise ApplicationError(str(exc), type="PublishOutcomeUnknown", non_retryable=True) from exc
        except SourceUnavailable as exc:
            raise ApplicationError(str(exc), type="SourceUnavailable") from exc
        except (DraftInvalid, AdapterError) as exc:
            raise ApplicationError(str(exc), type="LogbookDraftInvalid", non_retryable=True) from exc
