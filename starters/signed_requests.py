"""Signed HTTP requests to Tern's API: the one check every signed route uses (approval decisions,
``POST /approvals/{request_id}/decision``; webhook triggers, ``POST /triggers/{name}``).

HMAC-SHA256 headers of :mod:`tern.chat.signing`, per-key secrets ``TERN_WEBHOOK_SECRETS``, replay window
``TERN_WEBHOOK_WINDOW_S``, body at most ``TERN_WEBHOOK_MAX_BODY_BYTES``.
"""

from __future__ import annotations

from fastapi import Request

from tern.chat.signing import SignatureError, verify
from tern.config import TernSettings


class Refused(Exception):
    """A webhook request refused before its content is acted on: HTTP ``status`` and the ``reason`` sent back."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


async def signed_body(request: Request, settings: TernSettings, secrets: dict[str, str]) -> tuple[bytes, str]:
    """The body of a signed webhook request and the key id that signed it (:func:`tern.chat.signing.verify`,
    window ``chat.webhook_window_s``). Raises :class:`Refused`: 413 for a body over
    ``chat.webhook_max_body_bytes`` (declared or read), 401 when unsigned, unknown key, outside the window or
    badly signed. Shared by every signed route (approval decisions, ``POST /triggers/{name}``)."""
    limit = settings.chat.webhook_max_body_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise Refused(413, f"body larger than {limit} bytes")
    body = await request.body()
    if len(body) > limit:
        raise Refused(413, f"body larger than {limit} bytes")
    try:
        key_id = verify(secrets, request.headers, body, window_s=settings.chat.webhook_window_s)
    except SignatureError as exc:
        raise Refused(401, str(exc)) from exc
    return body, key_id
