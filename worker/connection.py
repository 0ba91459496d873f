"""The one Temporal client factory: every Tern process that talks to Temporal (worker, CLI, client API, ARIEL
commands, embedded stack, chat bridges) connects through :func:`connect`, so connection options (namespace,
data converter, TLS and API keys, tracing interceptor) are defined once.
"""

from __future__ import annotations

from collections.abc import Sequence

from temporalio.client import Client, Interceptor
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime

from tern.config import TernSettings
from worker.telemetry import tracing_interceptor


class TemporalUnreachable(RuntimeError):
    """Temporal could not be reached; the message names the address and how to start or point at it."""


async def connect(
    settings: TernSettings, *, runtime: Runtime | None = None, interceptors: Sequence[Interceptor] = ()
) -> Client:
    """A client for ``settings.temporal_address`` / ``temporal_namespace`` with the pydantic data converter and
    the tracing interceptor (tracing configured first, :func:`worker.telemetry.configure_tracing`).

    ``runtime``: the Temporal runtime (the worker's records the SDK's metrics, :mod:`worker.sdk_metrics`);
    default the SDK's. ``interceptors``: client interceptors (the worker's tracing interceptor,
    :mod:`worker.telemetry`); a worker built on the client inherits those that are also worker interceptors.
    Raises :class:`TemporalUnreachable` naming the address and the fix when the frontend does not answer.
    """
    try:
        return await Client.connect(
            settings.temporal_address,
            namespace=settings.temporal_namespace,
            data_converter=pydantic_data_converter,
            runtime=runtime,
            interceptors=[tracing_interceptor(), *interceptors],
        )
    except Exception as exc:  # the SDK raises RuntimeError or RPCError depending on the failure
        raise TemporalUnreachable(
            f"cannot reach Temporal at {settings.temporal_address}: {exc}. Start the embedded stack with "
            "`tern up`, or set TERN_TEMPORAL_ADDRESS."
        ) from exc
