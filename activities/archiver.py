"""Activity of ``archiver_read`` steps: archived history through :func:`tern.archiver.read.read_archived`.

A bad range or binning is non-retryable (``BadArchiverRequest``), and so is an archiver that refused the request
or answered in another format; an archiver that did not answer after the client's own retries is retried by
Temporal (``ArchiverUnavailable``) within the step's timeout.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from tern.archiver.binning import BinningError
from tern.archiver.client import ArchiverError, ArchiverUnavailable
from tern.archiver.read import read_archived
from tern.config import TernSettings
from tern.models.archiver import ArchiverReadInput, ArchiverReadOutput
from tern.models.timerange import TimeRangeError


class ArchiverActivities:
    """Activities bound to one worker's settings (archiver URL, time zone, limits) and PostgreSQL pool."""

    def __init__(self, settings: TernSettings, pool: asyncpg.Pool) -> None:
        self.settings = settings
        self.pool = pool

    def all(self) -> list[Callable[..., Any]]:
        """The activity callables to register on a worker."""
        return [self.read_archiver]

    @activity.defn(name="read_archiver")
    async def read_archiver(self, inp: ArchiverReadInput) -> ArchiverReadOutput:
        """Read, store as an artifact, summarise (see module docstring for the errors)."""
        try:
            return await read_archived(self.settings, self.pool, inp)
        except (TimeRangeError, BinningError) as exc:
            raise ApplicationError(str(exc), type="BadArchiverRequest", non_retryable=True) from exc
        except ArchiverUnavailable as exc:
            raise ApplicationError(str(exc), type="ArchiverUnavailable") from exc
        except ArchiverError as exc:  # refused (HTTP 4xx) or not the Appliance format: retrying cannot help
            raise ApplicationError(str(exc), type=type(exc).__name__, non_retryable=True) from exc
