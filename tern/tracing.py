"""Spans of Tern's own operations through the OpenTelemetry API (no SDK here): Channel Access reads and writes,
LLM calls, sandbox executions, ARIEL searches. Without a configured tracer provider they cost next to nothing
(the API's no-op tracer); the worker installs the SDK and the exporter (:mod:`worker.telemetry`).

Span and attribute names: ``ca.read`` / ``ca.write`` (``ca.channel``, ``ca.value``, ``ca.verification``,
``ca.verified``, ``ca.readback``), ``llm.chat`` (``llm.model``, ``llm.role``, ``llm.tokens.*``),
``sandbox.execute`` (``sandbox.image``, ``sandbox.outcome``, ``sandbox.duration_s``), ``ariel.search``
(``ariel.mode``, ``ariel.mode_used``, ``ariel.hits``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.trace import Span

__all__ = ["Span", "span"]

_tracer = trace.get_tracer("tern")
Attribute = str | bool | int | float


@contextmanager
def span(name: str, attributes: Mapping[str, Attribute | None] | None = None) -> Iterator[Span]:
    """A span named ``name`` as the current span for the block, with ``attributes`` (None values dropped). An
    exception leaving the block is recorded on the span (status ERROR) and re-raised."""
    attrs = {k: v for k, v in (attributes or {}).items() if v is not None}
    with _tracer.start_as_current_span(name, attributes=attrs) as current:
        yield current
