"""Signed webhooks: HMAC-SHA256 over the timestamp, the method, the path and the body; per-key secrets; a replay
window; each signature single use (the receiver's job: :func:`signature_digest` names a signature to spend).

Headers (inbound decisions and triggers, outbound notifications alike)::

    X-Tern-Key-Id:    the key id (names the secret; the identity map's ``[webhook]`` table names the approver)
    X-Tern-Timestamp: Unix time of signing, whole seconds
    X-Tern-Signature: v2=<hex HMAC-SHA256(secret, "v2:" + timestamp + ":" + METHOD + ":" + target + ":" + body)>

``METHOD`` is the upper-case HTTP method (``POST``); ``target`` is the request target as sent on the request
line: the path, percent-encoded as sent, plus ``?`` and the query when there is one (``/approvals/r-1/decision``,
``/triggers/ticket``, or the receiver's own path for a notification). Binding the method and the path means a
signature made for one request id or one trigger cannot be posted to another; without it a captured "approve"
for request A approved any request B inside the window. The receiver also refuses a signature it has seen before
(Tern keeps the SHA-256 of each accepted signature until it leaves the window: table ``webhook_signatures``), so
even the same request cannot be replayed.

The scheme follows Slack's request signing ("Verifying requests from Slack": ``v0:timestamp:body``, a 5-minute
window) with Tern's own version tag; signatures are compared in constant time (:func:`hmac.compare_digest`).
Version ``v1`` (``v1:<ts>:<body>``, no method or path) is refused: it is named in the error so a sender still on
it learns why.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

KEY_HEADER = "X-Tern-Key-Id"
TIMESTAMP_HEADER = "X-Tern-Timestamp"
SIGNATURE_HEADER = "X-Tern-Signature"
VERSION = "v2"
DEFAULT_WINDOW_S = 300.0


class SignatureError(ValueError):
    """The request is not validly signed; the message is the reason given to the sender (no secret in it)."""


def target_of(url: str) -> str:
    """The signed request target of ``url``: its path (``/`` when empty) plus ``?query`` when it has one, as
    httpx and most HTTP clients put it on the request line (percent-encoding kept as written)."""
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _check_part(name: str, value: str) -> None:
    if not value or any(c in value for c in "\r\n"):
        raise ValueError(f"signing: {name} must be non-empty and on one line, got {value[:64]!r}")


def signature(secret: str, timestamp: int, method: str, target: str, body: bytes) -> str:
    """``v2=<hex>``: HMAC-SHA256 with ``secret`` over ``v2:<timestamp>:<METHOD>:<target>:<body>``.

    Args:
        secret: the shared secret (text, UTF-8 encoded for the MAC).
        timestamp: Unix seconds of signing.
        method: HTTP method, any case (upper-cased); target: the request target (:func:`target_of`).
        body: the exact body bytes sent.

    Raises ``ValueError`` for an empty method or target, or one with a line break."""
    _check_part("method", method)
    _check_part("target", target)
    message = f"{VERSION}:{timestamp}:{method.upper()}:{target}:".encode() + body
    return f"{VERSION}=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signed_headers(
    key_id: str, secret: str, body: bytes, *, method: str = "POST", target: str, now: float | None = None
) -> dict[str, str]:
    """The three headers for sending ``body`` to ``method target`` signed with key ``key_id`` at ``now`` (Unix
    seconds; default now). ``target`` is the path (and query) the request goes to: :func:`target_of` of the URL."""
    ts = int(time.time() if now is None else now)
    return {
        KEY_HEADER: key_id,
        TIMESTAMP_HEADER: str(ts),
        SIGNATURE_HEADER: signature(secret, ts, method, target, body),
    }


@dataclass(frozen=True)
class Verified:
    """A request whose signature checked out: the ``key_id`` that signed it, the signing ``timestamp`` (Unix s)
    and ``digest``, the SHA-256 (hex) of the signature header, which names this signature for single use."""

    key_id: str
    timestamp: int
    digest: str


def signature_digest(signature_header: str) -> str:
    """SHA-256 (hex) of a signature header value: what a receiver stores to refuse the same signature twice."""
    return hashlib.sha256(signature_header.encode()).hexdigest()


def verify(
    secrets: Mapping[str, str],
    headers: Mapping[str, str],
    body: bytes,
    *,
    method: str,
    target: str,
    now: float | None = None,
    window_s: float = DEFAULT_WINDOW_S,
) -> Verified:
    """Check the signature headers of a ``method target`` request with ``body``.

    Args:
        secrets: key id -> shared secret.
        headers: the request headers (case-insensitive mapping, e.g. Starlette's ``Headers``).
        method, target: the HTTP method and the request target the request arrived on (path, ``?query``).
        now: Unix time, seconds (default now); window_s: accepted clock difference either way, seconds.

    Returns :class:`Verified` (the caller spends ``digest`` so the signature is used once).

    Raises :class:`SignatureError`: a header missing, an unknown key id, a timestamp that is not an integer or
    lies outside the window (a replay, or a wrong clock), a ``v1`` signature (no longer accepted), a signature
    that does not match (wrong secret, or made for another body, method or path).
    """
    key_id, ts_text, sig = (headers.get(h) for h in (KEY_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER))
    if not key_id or not ts_text or not sig:
        raise SignatureError(f"unsigned request: {KEY_HEADER}, {TIMESTAMP_HEADER} and {SIGNATURE_HEADER} are required")
    if not sig.startswith(f"{VERSION}="):
        version = sig.split("=", 1)[0][:8]
        raise SignatureError(
            f"signature version {version!r} is not accepted: sign {VERSION} over timestamp, method, path and body"
        )
    secret = secrets.get(key_id)
    if secret is None:
        raise SignatureError(f"unknown key id {key_id[:64]!r}")
    try:
        ts = int(ts_text)
    except ValueError:
        raise SignatureError(f"{TIMESTAMP_HEADER} must be Unix seconds") from None
    now = time.time() if now is None else now
    if abs(now - ts) > window_s:
        raise SignatureError(f"timestamp outside the {window_s:g} s window (replayed, or the sender's clock is off)")
    if not hmac.compare_digest(sig.encode(), signature(secret, ts, method, target, body).encode()):
        raise SignatureError("signature does not match (wrong secret, or signed for another body, method or path)")
    return Verified(key_id=key_id, timestamp=ts, digest=signature_digest(sig))
