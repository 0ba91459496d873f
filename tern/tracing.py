"""Spans of Tern's own operations through the OpenTelemetry API (no SDK here): Channel Access reads and writes,
LLM calls, sandbox executions, ARIEL searches. Without a configured tracer provider they cost next to nothing
(the API's no-op tracer); the worker installs the SDK and the exporter (:mod:`worker.telemetry`).

Span and attribute names: ``ca.read`` / ``ca.write`` (``ca.channel``, ``ca.value``, ``ca.verification``,
``ca.verified``, ``ca.readback``), ``llm.chat`` (``llm.model``, ``llm.role``, ``llm.tokens.*``),
``sandbox.execute`` (``sandbox.image``, ``sandbox.outcome``, ``sandbox.duration_s``), ``ariel.search``
(``ariel.mode``, ``ariel.mode_used``, ``ariel.hits``), ``db.query`` (``db.system``, ``db.statement`` without its
arguments, ``db.elapsed_s``; every query of a pool made by :func:`tern.db.create_pool`, through asyncpg's query
logger, ended when the query was and started ``elapsed`` before: the OpenTelemetry asyncpg instrumentation package
is not on this project's package index).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span

__all__ = ["Span", "query_span", "span"]

_tracer = trace.get_tracer("tern")
Attribute = str | bool | int | float


@contextmanager
def span(name: str, attributes: Mapping[str, Attribute | None] | None = None) -> Iterator[Span]:
    """A span named ``name`` as the current span for the block, with ``attributes`` (None values dropped). An
    exception leaving the block is recorded on the span (status ERROR) and re-raised."""
    attrs = {k: v for k, v in (attributes or {}).items() if v is not None}
    with _tracer.start_as_current_span(name, attributes=attrs) as current:
        yield current


STATEMENT_CHARS = 500  # of a query's text kept on its span (never its arguments: they may hold operator data)


def query_span(record: Any) -> None:
    """An asyncpg query logger (``Connection.add_query_logger``): one ``db.query`` span per finished query, a child
    of the span current where the query ran, timed from ``record.elapsed`` (seconds). ``record`` is asyncpg's
    ``LoggedQuery`` (``query``, ``elapsed``, ``exception``)."""
    end = time.time_ns()
    start = end - int(float(record.elapsed or 0.0) * 1e9)
    attrs: dict[str, Attribute] = {
        "db.system": "postgresql",
        "db.statement": " ".join(str(record.query).split())[:STATEMENT_CHARS],
        "db.elapsed_s": float(record.elapsed or 0.0),
    }
    current = _tracer.start_span("db.query", attributes=attrs, start_time=start)
    if record.exception is not None:
        current.record_exception(record.exception)
        current.set_status(trace.Status(trace.StatusCode.ERROR, str(record.exception)[:200]))
    current.end(end_time=end)
