"""The one component through which a worker does Channel Access: a bounded thread pool attached to the
process's CA context, and an async facade for activities (``await client.read_value(...)``).

pyepics calls block, and libca requires each calling thread to be attached to the process's client context
(see :mod:`tern.control.ca_context`). Running them on arbitrary ``asyncio.to_thread`` pool threads let the
first concurrent calls race libca's initialisation (``ECA_ISATTACHED``, then a SIGSEGV in libca's timer
queue). Here the threads are owned: a :class:`concurrent.futures.ThreadPoolExecutor` whose threads join the
initial context once, when created (pyepics' documented pattern for threads, as ``epics.ca.CAThread`` does),
with at most ``max_concurrency`` operations in flight (``TernSettings.ca_max_concurrency``); further calls
wait in the pool's queue.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar, Unpack

from tern import tracing
from tern.control import channel_access
from tern.control.ca_context import CAContextError, attach_thread, configure_environment
from tern.control.channel_io import WriteOptions
from tern.models import ChannelReading, Verification, WriteRecord

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")


def _attach_on_start() -> None:
    """Thread-pool initializer: join the CA context. A failure is logged, not raised (a raising initializer
    breaks the whole pool); each call attaches again and raises :class:`CAContextError` to its caller."""
    try:
        attach_thread()
    except CAContextError as exc:
        log.error("Channel Access thread could not attach: %s", exc)


def _attached(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    attach_thread()  # a thread-local flag check once the initializer has run
    return fn(*args, **kwargs)


class ChannelAccessClient:
    """Async Channel Access for one process (a worker owns one, through ``AgentActivities``).

    Args:
        max_concurrency: most operations in flight at once (pool threads), >= 1.
        environment: ``EPICS_CA_*`` variables to apply before libca starts (``TernSettings.ca_environment()``),
            or None to use the process environment as it is. Raises ``CAContextError`` when libca already
            runs with other values.
    """

    def __init__(self, max_concurrency: int = 8, environment: Mapping[str, str] | None = None) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if environment is not None:
            configure_environment(environment)
        self.max_concurrency = max_concurrency
        self._pool = ThreadPoolExecutor(
            max_workers=max_concurrency, thread_name_prefix="tern-ca", initializer=_attach_on_start
        )

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run the blocking ``fn(*args, **kwargs)`` on a CA thread and return its result (or raise its error)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(_attached, fn, *args, **kwargs))

    async def read_value(self, name: str, timeout_s: float = 2.0) -> float:
        """See :func:`tern.control.channel_access.read_value` (seconds; raises ``ChannelAccessError``). Span
        ``ca.read``."""
        with tracing.span("ca.read", {"ca.channel": name}) as span:
            value = await self.call(channel_access.read_value, name, timeout_s)
            span.set_attribute("ca.value", value)
            return value

    async def read_channels(self, names: list[str], timeout_s: float = 2.0) -> list[ChannelReading]:
        """See :func:`tern.control.channel_access.read_channels` (seconds; unreachable channels carry ``error``).
        Span ``ca.read`` with the channel names and how many did not answer."""
        with tracing.span("ca.read", {"ca.channels": ",".join(names)}) as span:
            readings = await self.call(channel_access.read_channels, names, timeout_s)
            span.set_attribute("ca.errors", sum(1 for r in readings if r.error))
            return readings

    async def write_channel(
        self, name: str, value: float, verification: Verification, **kwargs: Unpack[WriteOptions]
    ) -> WriteRecord:
        """See :func:`tern.control.channel_access.write_channel` (same keyword arguments and errors). Span ``ca.write``
        with the channel, value, verification level, and the outcome (verified, readback)."""
        attrs: dict[str, str | float] = {"ca.channel": name, "ca.value": value, "ca.verification": verification.level}
        with tracing.span("ca.write", attrs) as span:
            record = await self.call(channel_access.write_channel, name, value, verification, **kwargs)
            span.set_attribute("ca.verified", bool(record.verified))
            if record.readback is not None:
                span.set_attribute("ca.readback", record.readback)
            return record

    def close(self, wait: bool = True) -> None:
        """Stop the pool (after the operations in flight when ``wait``); later calls raise ``RuntimeError``."""
        self._pool.shutdown(wait=wait, cancel_futures=True)
