"""Tracing: the OpenTelemetry SDK and its OTLP exporter for a Tern process, and the Temporal tracing interceptor.

:func:`worker.connection.connect` calls :func:`configure_tracing` and adds :func:`tracing_interceptor` to every
client, so the CLI, the client API and the worker (which inherits its client's interceptors) all propagate the
trace context through Temporal headers: one trace runs from ``tern demo`` starting the workflow, through the
workflow, its child workflows and activities, to the Channel Access write and its readback
(:mod:`tern.tracing` adds the spans of Tern's own operations).

Export: OTLP over HTTP/protobuf to ``TERN_WORKER__OTLP_ENDPOINT``, else the standard ``OTEL_EXPORTER_OTLP_ENDPOINT``
(the base URL; ``/v1/traces`` is appended, as the OpenTelemetry specification's "OTLP exporter" section does
for the signal-less variable). With neither set no SDK is installed and spans cost the API's no-op.
"""

from __future__ import annotations

import functools
import os
import sys
from urllib.parse import urlparse

from opentelemetry import trace
from temporalio.contrib.opentelemetry import TracingInterceptor

from tern.config import TernSettings

SERVICE_NAME = "tern"


class TelemetryConfigError(ValueError):
    """The tracing configuration is unusable; the message names the setting."""


def otlp_endpoint(settings: TernSettings) -> tuple[str, str] | None:
    """``(base URL, setting name)`` of the configured OTLP endpoint, or None. Raises :class:`TelemetryConfigError`
    naming the setting for a URL that is not ``http(s)://host[:port][/path]``."""
    for name, value in (
        ("TERN_WORKER__OTLP_ENDPOINT", settings.worker.otlp_endpoint),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")),
    ):
        if value:
            url = urlparse(value)
            try:
                url.port  # noqa: B018 - raises ValueError for a port out of range or not a number
            except ValueError as exc:
                raise TelemetryConfigError(f"{name}={value!r} is not a usable OTLP URL: {exc}") from exc
            if url.scheme not in ("http", "https") or not url.hostname:
                raise TelemetryConfigError(
                    f"{name}={value!r} is not a usable OTLP URL: expected http(s)://host:port (OTLP/HTTP, e.g. "
                    "http://collector:4318)"
                )
            return value.rstrip("/"), name
    return None


def configure_tracing(settings: TernSettings) -> bool:
    """Install the SDK tracer provider with a batching OTLP/HTTP exporter when an endpoint is configured and no
    SDK provider is installed yet (once per process); returns whether an SDK provider is in place. Raises
    :class:`TelemetryConfigError` for a bad endpoint URL."""
    endpoint = otlp_endpoint(settings)
    sdk = sys.modules.get("opentelemetry.sdk.trace")  # an SDK provider implies the SDK is imported already
    if sdk is not None and isinstance(trace.get_tracer_provider(), sdk.TracerProvider):
        return True
    if endpoint is None:
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE_NAME}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint[0]}/v1/traces")))
    trace.set_tracer_provider(provider)
    return True


def flush_tracing(timeout_s: float = 5.0) -> None:
    """Export the spans still buffered (call before ``os._exit``, which skips the SDK's exit hook)."""
    provider = trace.get_tracer_provider()
    flush = getattr(provider, "force_flush", None)
    if flush is not None:
        flush(int(timeout_s * 1000))


@functools.cache
def tracing_interceptor() -> TracingInterceptor:
    """The process's Temporal tracing interceptor (client and worker), on the global tracer provider."""
    return TracingInterceptor()
