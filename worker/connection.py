"""The one Temporal client factory: every Tern process that talks to Temporal (worker, CLI, client API, ARIEL
commands, embedded stack, chat bridges) connects through :func:`connect`, so connection options (address,
namespace, TLS, API key, data converter, tracing interceptor) are defined once.

Where the connection comes from (highest first), as the Temporal SDKs and CLI read it (``temporalio.envconfig``):
the standard environment variables ``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE``, ``TEMPORAL_API_KEY``,
``TEMPORAL_TLS`` and ``TEMPORAL_TLS_*`` (``SERVER_CA_CERT_PATH``, ``CLIENT_CERT_PATH``, ``CLIENT_KEY_PATH``,
``SERVER_NAME``, and ``*_DATA`` variants), then the profile ``TEMPORAL_PROFILE`` (default ``default``) of the
TOML file ``TEMPORAL_CONFIG_FILE`` (default ``~/.config/temporalio/temporal.toml``), then Tern's own settings
``TERN_TEMPORAL__ADDRESS`` / ``TERN_TEMPORAL__NAMESPACE`` as defaults. An API key turns TLS on (Temporal Cloud).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from temporalio.client import Client, Interceptor
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfigProfile
from temporalio.runtime import Runtime

from tern.config import TernSettings
from worker.telemetry import configure_tracing, tracing_interceptor

# (profile TLS field, the environment variable and the profile key that set it) for error messages
_TLS_FILES = (
    ("server_root_ca_cert", "TEMPORAL_TLS_SERVER_CA_CERT_PATH", "tls.server_ca_cert_path"),
    ("client_cert", "TEMPORAL_TLS_CLIENT_CERT_PATH", "tls.client_cert_path"),
    ("client_private_key", "TEMPORAL_TLS_CLIENT_KEY_PATH", "tls.client_key_path"),
)


class TemporalUnreachable(RuntimeError):
    """Temporal could not be reached; the message names the address and how to start or point at it."""


class TemporalConfigError(TemporalUnreachable):
    """The connection settings are unusable (unknown profile, unreadable certificate or key file); the message
    names the setting. A subclass of :class:`TemporalUnreachable`, so callers that report one report both."""


def connect_options(settings: TernSettings, environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Keyword arguments for ``Client.connect`` (``target_host``, ``namespace``, ``tls``, ``api_key``,
    ``rpc_metadata``) from the environment and profile (``temporalio.envconfig``) over Tern's settings (see the
    module docstring). ``environ`` replaces ``os.environ`` (tests). Raises :class:`TemporalConfigError` naming
    the setting for an unknown profile or a certificate or key file that cannot be read."""
    env = dict(os.environ if environ is None else environ)
    profile_name = env.get("TEMPORAL_PROFILE")
    try:
        profile = ClientConfigProfile.load(profile_name, override_env_vars=env)
    except Exception as exc:  # the SDK's config loader raises RuntimeError/ValueError with its own text
        where = f"TEMPORAL_PROFILE={profile_name!r}" if profile_name else "the Temporal client configuration"
        file = env.get("TEMPORAL_CONFIG_FILE", "~/.config/temporalio/temporal.toml")
        raise TemporalConfigError(f"cannot load {where} (file {file}; TEMPORAL_CONFIG_FILE): {exc}") from exc
    if profile.tls is not None and profile.tls.disabled is not True:
        for field, var, key in _TLS_FILES:
            source = getattr(profile.tls, field)
            if isinstance(source, Path) and not os.access(source, os.R_OK):
                raise TemporalConfigError(
                    f"cannot read {source} ({var}, or the profile's {key}): "
                    f"{'no such file' if not source.exists() else 'permission denied'}"
                )
    try:
        options: dict[str, Any] = dict(profile.to_client_connect_config())
    except OSError as exc:
        raise TemporalConfigError(f"cannot read a TLS file of the Temporal connection (TEMPORAL_TLS_*): {exc}") from exc
    options.setdefault("target_host", settings.temporal.address)
    options.setdefault("namespace", settings.temporal.namespace)
    return options


async def connect(
    settings: TernSettings, *, runtime: Runtime | None = None, interceptors: Sequence[Interceptor] = ()
) -> Client:
    """A client from :func:`connect_options` with the pydantic data converter and the tracing interceptor
    (tracing configured first, :func:`worker.telemetry.configure_tracing`).

    ``runtime``: the Temporal runtime (the worker's records the SDK's metrics, :mod:`worker.sdk_metrics`);
    default the SDK's. ``interceptors``: further client interceptors; a worker built on the client inherits those
    that are also worker interceptors, as it does the tracing one.

    Raises :class:`TemporalConfigError` naming the setting (unknown profile, unreadable TLS file),
    :class:`TemporalUnreachable` naming the address, and for a TLS connection the CA setting, when the frontend
    does not answer or the handshake fails, :class:`worker.telemetry.TelemetryConfigError` naming the setting for
    a bad OTLP endpoint.
    """
    configure_tracing(settings)
    options = connect_options(settings)
    try:
        return await Client.connect(
            **options,
            data_converter=pydantic_data_converter,
            runtime=runtime,
            interceptors=[tracing_interceptor(), *interceptors],
        )
    except Exception as exc:  # the SDK raises RuntimeError or RPCError depending on the failure
        address = options["target_host"]
        hint = (
            "Check the server's certificate against TEMPORAL_TLS_SERVER_CA_CERT_PATH (or the profile's "
            "tls.server_ca_cert_path), and the client certificate and key (TEMPORAL_TLS_CLIENT_CERT_PATH, "
            "TEMPORAL_TLS_CLIENT_KEY_PATH)."
            if options.get("tls")
            else "Start the embedded stack with `tern up`, or set TERN_TEMPORAL__ADDRESS (or TEMPORAL_ADDRESS)."
        )
        raise TemporalUnreachable(f"cannot reach Temporal at {address}: {exc}. {hint}") from exc
