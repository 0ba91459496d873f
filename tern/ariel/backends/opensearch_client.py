"""The OpenSearch client: connection options from the settings (TLS, basic auth, AWS SigV4) and one shared
``opensearchpy.AsyncOpenSearch`` per process and event loop.

Every ``OpenSearchBackend.from_settings`` (one per search in the agent's activity, one per API app, one per
CLI command) takes the shared client, so sockets are pooled and kept alive instead of leaked; whoever ends the
process or the loop calls ``close_shared_clients`` (the ARIEL API's lifespan, the CLI commands).

Options are opensearch-py's (``AsyncOpenSearch`` with ``AsyncHttpConnection``): ``ca_certs``, ``client_cert``,
``client_key``, ``verify_certs``, ``http_auth`` as ``(user, password)`` or an ``AWSV4SignerAsyncAuth``
(opensearch-py's SigV4 signer for the async client, which signs each request with botocore).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any

from tern.config import TernSettings

log = logging.getLogger(__name__)

INSECURE_WARNING = (
    "OpenSearch TLS certificate verification is OFF (TERN_ARIEL__OPENSEARCH_VERIFY_CERTS=false): anyone on the path "
    "to {url} can read and change logbook searches and what is indexed. Use it for tests only; give the "
    "cluster's CA with TERN_ARIEL__OPENSEARCH_CA_CERTS instead."
)

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[Any, ...], Any]] = weakref.WeakKeyDictionary()


AOSS_UNSUPPORTED = (
    "TERN_ARIEL__OPENSEARCH_AWS_SERVICE=aoss (OpenSearch Serverless) is not supported: Serverless vector collections "
    "refuse documents written with a given _id, which Tern's upserts need, and restrict the index settings Tern "
    "sets; use a managed domain (es)"
)


def aws_auth(region: str, service: str) -> Any:
    """An ``AWSV4SignerAsyncAuth`` for ``region`` and ``service`` (``es``; ``aoss``, Serverless, is refused:
    ``AOSS_UNSUPPORTED``) with boto3's default credential chain (environment, shared profile, instance or task
    role).

    Raises ``ValueError`` for ``aoss``, when boto3 is not installed (``pip install 'tern[aws]'``) or finds no
    credentials."""
    if service == "aoss":
        raise ValueError(AOSS_UNSUPPORTED)
    try:
        import boto3
    except ImportError as exc:
        raise ValueError(
            "AWS SigV4 signing (TERN_ARIEL__OPENSEARCH_AWS_REGION) needs boto3: pip install 'tern[aws]'"
        ) from exc
    from opensearchpy import AWSV4SignerAsyncAuth

    credentials = boto3.Session().get_credentials()
    if credentials is None:
        raise ValueError("AWS SigV4 signing: boto3 found no AWS credentials (environment, profile or role)")
    return AWSV4SignerAsyncAuth(credentials, region, service)


def client_options(settings: TernSettings) -> dict[str, Any]:
    """Keyword arguments of ``AsyncOpenSearch`` for the settings' URL, timeout (s), TLS files, verification,
    basic auth or SigV4. Logs ``INSECURE_WARNING`` at WARNING when verification is off.

    Raises ``ValueError`` without ``opensearch_url``, and as ``aws_auth`` (also for ``aoss`` under basic
    auth)."""
    if not settings.ariel.opensearch_url:
        raise ValueError("the opensearch backend needs TERN_ARIEL__OPENSEARCH_URL")
    if settings.ariel.opensearch_aws_service == "aoss":
        raise ValueError(AOSS_UNSUPPORTED)
    from opensearchpy import AsyncHttpConnection

    kw: dict[str, Any] = {
        # AsyncHttpConnection, not AsyncOpenSearch's default AIOHttpConnection: only it calls a callable
        # http_auth (the SigV4 signer) per request (opensearch-py connection/http_async.py)
        "connection_class": AsyncHttpConnection,
        "hosts": [settings.ariel.opensearch_url],
        "timeout": settings.ariel.opensearch_timeout_s,
        "verify_certs": settings.ariel.opensearch_verify_certs,
    }
    if settings.ariel.opensearch_ca_certs:
        kw["ca_certs"] = str(settings.ariel.opensearch_ca_certs)
    if settings.ariel.opensearch_client_cert:
        kw["client_cert"] = str(settings.ariel.opensearch_client_cert)
        if settings.ariel.opensearch_client_key:
            kw["client_key"] = str(settings.ariel.opensearch_client_key)
    if not settings.ariel.opensearch_verify_certs:
        kw["ssl_show_warn"] = False  # replaced by the warning below, which says what to do
        log.warning(INSECURE_WARNING.format(url=settings.ariel.opensearch_url))
    if settings.ariel.opensearch_username and settings.ariel.opensearch_password:
        kw["http_auth"] = (settings.ariel.opensearch_username, settings.ariel.opensearch_password.get_secret_value())
    elif settings.ariel.opensearch_aws_region:
        kw["http_auth"] = aws_auth(settings.ariel.opensearch_aws_region, settings.ariel.opensearch_aws_service)
    return kw


def _key(settings: TernSettings) -> tuple[Any, ...]:
    pw = settings.ariel.opensearch_password.get_secret_value() if settings.ariel.opensearch_password else None
    return (
        settings.ariel.opensearch_url,
        settings.ariel.opensearch_timeout_s,
        settings.ariel.opensearch_verify_certs,
        settings.ariel.opensearch_ca_certs,
        settings.ariel.opensearch_client_cert,
        settings.ariel.opensearch_client_key,
        settings.ariel.opensearch_username,
        pw,
        settings.ariel.opensearch_aws_region,
        settings.ariel.opensearch_aws_service,
    )


def shared_client(settings: TernSettings) -> Any:
    """The process's ``AsyncOpenSearch`` for these connection settings on the running event loop (made on
    first use). Must be called with a running loop (the aiohttp session belongs to it). Raises as
    ``client_options``. Making it here resolves AWS credentials on the loop; the backend makes it first with
    ``prepare_shared_client``, which does not."""
    from opensearchpy import AsyncOpenSearch

    loop = asyncio.get_running_loop()
    per_loop = _clients.setdefault(loop, {})
    key = _key(settings)
    if key not in per_loop:
        per_loop[key] = AsyncOpenSearch(**client_options(settings))
    return per_loop[key]


async def prepare_shared_client(settings: TernSettings) -> Any:
    """``shared_client``, made (when it is not yet) with ``client_options`` run in a worker thread: boto3's
    credential chain (``aws_auth``) may block for seconds (instance metadata, a ``credential_process``), and the
    event loop, which also runs the worker's other activities, goes on meanwhile. Raises as ``client_options``.

    botocore still refreshes expiring temporary credentials while signing a request, on the loop (bounded by
    its metadata timeouts, about once an hour)."""
    from opensearchpy import AsyncOpenSearch

    loop = asyncio.get_running_loop()
    key = _key(settings)
    if key not in _clients.get(loop, {}):
        kw = await asyncio.to_thread(client_options, settings)
        per_loop = _clients.setdefault(loop, {})
        if key not in per_loop:  # another task may have made it while this one waited
            per_loop[key] = AsyncOpenSearch(**kw)
    return _clients[loop][key]


def shared_client_count() -> int:
    """Open shared clients on the running loop (for tests and health output)."""
    return len(_clients.get(asyncio.get_running_loop(), {}))


async def close_shared_clients() -> None:
    """Close every shared client of the running loop (their connection pools); the next use makes new ones."""
    per_loop = _clients.pop(asyncio.get_running_loop(), {})
    for client in per_loop.values():
        await client.close()
