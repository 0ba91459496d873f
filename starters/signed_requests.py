"""Signed HTTP requests to Tern's API: the one check every signed route uses (approval decisions,
``POST /approvals/{request_id}/decision``; webhook triggers, ``POST /triggers/{name}``).

HMAC-SHA256 headers of :mod:`tern.chat.signing` (version ``v2``: timestamp, method, request target and body are
signed), per-key secrets ``TERN_CHAT__WEBHOOK_SECRETS``, replay window ``TERN_CHAT__WEBHOOK_WINDOW_S``, body at most
``TERN_CHAT__WEBHOOK_MAX_BODY_BYTES`` (read as a stream and refused as soon as it passes the limit, so a chunked body
without ``Content-Length`` is never read whole), and each signature single use (table ``webhook_signatures``,
:func:`tern.chat.store.use_signature`).

What is audited: a request whose signature verified and that is then refused (replayed signature, key not
mapped or not allowed, unknown request, refused by the workflow) is audited by its route, since a key holder
(or someone who captured its signature) made it. A request that is unsigned, badly signed, signed by an unknown
key, outside the window or too large is *not* audited: it proves nothing about anyone, and writing a row for each
would let anyone on the network grow the audit table without limit. Those are counted per reason
(:attr:`UnsignedCounter.counts`, also in the log) and logged, at most :data:`UNSIGNED_LOG_PER_MINUTE` lines a
minute (the rest only counted, the next line saying how many were not logged), so a flood costs neither the
database nor the disk. They are not rate-limited: refusing one costs a HMAC at most, and a limit shared by
all senders would let a flood lock out the real bots.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

import asyncpg
from fastapi import Request

from tern.chat import store
from tern.chat.signing import SignatureError, Verified, verify
from tern.config import TernSettings
from tern.triggers.ratelimit import RateLimiter

log = logging.getLogger(__name__)

UNSIGNED_LOG_PER_MINUTE = 30
"""Most log lines a minute for refused unsigned or badly signed requests (all are counted)."""


class Refused(Exception):
    """A webhook request refused before its content is acted on: HTTP ``status`` and the ``reason`` sent back.

    ``verified`` is the :class:`~tern.chat.signing.Verified` signature when it checked out (the refusal is then
    audited by the route), None when the request was unsigned, badly signed or too large (counted, not audited).
    """

    def __init__(self, status: int, reason: str, verified: Verified | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.verified = verified


class UnsignedCounter:
    """Counts refused requests that carry no valid signature, by ``route`` and reason class, and logs them at a
    bounded rate (see the module docstring for why they are not audited). ``clock``: monotonic seconds."""

    def __init__(self, per_minute: int = UNSIGNED_LOG_PER_MINUTE, clock: Callable[[], float] = time.monotonic) -> None:
        self.counts: Counter[str] = Counter()
        self._limit = RateLimiter(per_minute)
        self._clock = clock
        self._suppressed = 0

    def refused(self, route: str, status: int, reason: str) -> None:
        """Count one refusal (``status`` 401 or 413) on ``route`` and log it unless over the log rate."""
        self.counts[f"{route} {status}"] += 1
        if not self._limit.allow(self._clock()):
            self._suppressed += 1
            return
        more = f" ({self._suppressed} more not logged)" if self._suppressed else ""
        self._suppressed = 0
        log.warning("webhook request without a valid signature refused: %s %d %s%s", route, status, reason, more)


def request_target(request: Request) -> str:
    """The request target as it arrived on the request line: the raw (percent-encoded) path, plus ``?query``."""
    raw = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string") or b""
    return raw.decode("latin-1") + (f"?{query.decode('latin-1')}" if query else "")


async def read_limited(request: Request, limit: int) -> bytes:
    """The body of ``request``, at most ``limit`` bytes. Raises :class:`Refused` 413 when ``Content-Length``
    declares more, or as soon as the streamed body passes the limit (the rest is never read)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise Refused(413, f"body larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise Refused(413, f"body larger than {limit} bytes")
    return bytes(body)


async def signed_body(
    request: Request, settings: TernSettings, secrets: dict[str, str], pool: asyncpg.Pool
) -> tuple[bytes, Verified]:
    """The body of a signed webhook request and its verified signature (:func:`tern.chat.signing.verify` over
    the request's method and target, window ``chat.webhook_window_s``), the signature spent in ``pool``'s
    ``webhook_signatures`` so it is used once.

    Raises :class:`Refused`: 413 for a body over ``chat.webhook_max_body_bytes`` (declared or streamed), 401 when
    unsigned, unknown key, outside the window, a ``v1`` signature or badly signed (``verified`` None); 409 when
    the signature was used before (a replay; ``verified`` set). Shared by every signed route."""
    body = await read_limited(request, settings.chat.webhook_max_body_bytes)
    target = request_target(request)
    window = settings.chat.webhook_window_s
    try:
        verified = verify(secrets, request.headers, body, method=request.method, target=target, window_s=window)
    except SignatureError as exc:
        raise Refused(401, str(exc)) from exc
    async with pool.acquire() as conn:
        fresh = await store.use_signature(
            conn, verified.digest, verified.key_id, f"{request.method} {target}"[:500], verified.timestamp + window
        )
    if not fresh:
        raise Refused(409, "signature already used (a replay): sign each request anew", verified)
    return body, verified
