"""Signed webhooks: HMAC-SHA256 over the timestamp and the body, per-key secrets, a replay window.

Headers (inbound decisions and outbound notifications alike)::

    X-Tern-Key-Id:    the key id (names the secret; the identity map's ``[webhook]`` table names the approver)
    X-Tern-Timestamp: Unix time of signing, whole seconds
    X-Tern-Signature: v1=<hex HMAC-SHA256(secret, "v1:" + timestamp + ":" + body)>

The scheme follows Slack's request signing ("Verifying requests from Slack": ``v0:timestamp:body``, a 5-minute
window) with Tern's own version tag; signatures are compared in constant time (:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

KEY_HEADER = "X-Tern-Key-Id"
TIMESTAMP_HEADER = "X-Tern-Timestamp"
SIGNATURE_HEADER = "X-Tern-Signature"
VERSION = "v1"
DEFAULT_WINDOW_S = 300.0


class SignatureError(ValueError):
    """The request is not validly signed; the message is the reason given to the sender (no secret in it)."""


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """``v1=<hex>``: HMAC-SHA256 with ``secret`` over ``v1:<timestamp>:<body>``."""
    mac = hmac.new(secret.encode(), f"{VERSION}:{timestamp}:".encode() + body, hashlib.sha256)
    return f"{VERSION}={mac.hexdigest()}"


def signed_headers(key_id: str, secret: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """The three headers for sending ``body`` signed with key ``key_id`` at ``now`` (Unix seconds; default now)."""
    ts = int(time.time() if now is None else now)
    return {KEY_HEADER: key_id, TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: signature(secret, ts, body)}


def verify(
    secrets: Mapping[str, str],
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
    window_s: float = DEFAULT_WINDOW_S,
) -> str:
    """Check the signature headers of ``body``; returns the key id.

    Args:
        secrets: key id -> shared secret.
        headers: the request headers (case-insensitive mapping, e.g. Starlette's ``Headers``).
        now: Unix time, seconds (default now); window_s: accepted clock difference either way, seconds.

    Raises :class:`SignatureError`: a header missing, an unknown key id, a timestamp that is not an integer or
    lies outside the window (a replay, or a wrong clock), a signature that does not match.
    """
    key_id, ts_text, sig = (headers.get(h) for h in (KEY_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER))
    if not key_id or not ts_text or not sig:
        raise SignatureError(f"unsigned request: {KEY_HEADER}, {TIMESTAMP_HEADER} and {SIGNATURE_HEADER} are required")
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
    if not hmac.compare_digest(sig.encode(), signature(secret, ts, body).encode()):
        raise SignatureError("signature does not match")
    return key_id
