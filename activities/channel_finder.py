"""The channel-finder activity: a thin adapter from Temporal to ``tern.channel_finder.finder``.

One :class:`~tern.channel_finder.finder.ChannelFinder` per worker (the bundled channel database is loaded once, at
the worker's start or first use). Bad queries and an unloadable limits database are non-retryable failures.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from tern.channel_finder.finder import ChannelFinder
from tern.config import TernSettings
from tern.control.limits import LimitsDatabaseError
from tern.models import ChannelFindResponse
from tern.models.activity_io import ChannelFindInput


class ChannelActivities:
    """The ``find_channels`` activity, bound to one worker's settings and PostgreSQL pool.

    Args:
        settings: the worker's settings (``channels_load_bundled``, ``limits_path``, ``embedding_*``, ``rrf_k``).
        pool: the worker's open asyncpg pool.
    """

    def __init__(self, settings: TernSettings, pool: asyncpg.Pool) -> None:
        self.finder = ChannelFinder(settings, pool)

    def all(self) -> list[Callable[..., Any]]:
        """The activity callables to register on a worker."""
        return [self.find_channels]

    @activity.defn(name="find_channels")
    async def find_channels(self, inp: ChannelFindInput) -> ChannelFindResponse:
        """Find channels by description; semantic parts degrade to keyword search with a notice.

        Raises ``ApplicationError`` (non-retryable) ``BadChannelQuery`` for a query the finder refuses and
        ``InvalidLimits`` when the bundled database cannot be built from the limits database.
        """
        try:
            return await self.finder.find(inp.query, inp.mode, inp.limit)
        except LimitsDatabaseError as exc:
            raise ApplicationError(str(exc), type="InvalidLimits", non_retryable=True) from exc
        except ValueError as exc:
            raise ApplicationError(str(exc), type="BadChannelQuery", non_retryable=True) from exc
