"""PSI ELOG (``elog``): publishing entries to an ELOG server (elogd). Ingestion from ELOG is not implemented.

The submit protocol, as the ELOG manual's command-line client (``elog.c``, Stefan Ritt) and PSI's Python client
(``py_elog``, ``elog/logbook.py``) send it: one ``multipart/form-data`` POST to the logbook's URL
(``https://host[:port]/[subdir/]<logbook>/``) with the form fields ``cmd=Submit``, ``exp=<logbook>``, the
attributes (``Author``, ``Subject``, ``When`` = Unix seconds, ``Encoding`` = ``plain``), ``Text`` (the body),
``unm``/``upwd`` (user name, and the password in ELOG's encoded form: SHA-256 crypt with salt '' and 5000
rounds, without the ``$5$$`` prefix) and each attachment as the file field ``attfile<n>``. elogd answers a stored
entry with a redirect (302) whose ``Location`` ends with the new message id; a ``Location`` containing ``fail``
means bad credentials, "has moved" a moved server; an error page carries ``<td class="errormsg">``; a login
form in the answer (``form name=form1`` or ``type=password``) means the password was not accepted.

:func:`submit_request` builds the request and :func:`parse_submit_response` reads the answer, so both are
tested without a server (``tests/test_logbook_publish.py``); :func:`publish` sends it with httpx.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import unquote, urljoin, urlsplit

import httpx

from tern.ariel.adapters.base import (
    Adapter,
    AdapterError,
    AdapterOptions,
    ItemStream,
    OutgoingFile,
    PublishedRef,
    PublishRejected,
    PublishTarget,
    send_submit,
)
from tern.models.logbook import LogbookDraft

ERRORMSG = re.compile(r'<td[^>]*class="errormsg"[^>]*>(.*?)</td>', re.DOTALL | re.IGNORECASE)
LOGIN_FORM = (b"form name=form1", b"type=password")


def logbook_url(target: PublishTarget) -> tuple[str, str]:
    """``(url ending in '/', logbook name)`` of ``target``; the name is ``target.logbook`` or the URL's last path
    part. Raises ``AdapterError`` when neither names a logbook."""
    url = target.url.rstrip("/") + "/"
    name = target.logbook or unquote(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])
    if not name:
        raise AdapterError(f"ELOG URL {target.url!r} names no logbook: end it with /<logbook>/ or set publish_logbook")
    return url, name


def entry_body(draft: LogbookDraft) -> str:
    """The ``Text`` of the ELOG entry: the draft's text and, when it has tags, a ``Tags:`` line (ELOG attributes
    are configured per logbook, so tags travel in the text)."""
    tags = f"\n\nTags: {', '.join(draft.tags)}" if draft.tags else ""
    return draft.text + tags


def submit_request(
    draft: LogbookDraft, files: Sequence[OutgoingFile], target: PublishTarget, *, now: datetime | None = None
) -> httpx.Request:
    """The multipart POST that submits ``draft`` with ``files`` to the ELOG logbook ``target``.

    ``now`` is the entry's ``When`` (default: the current time). Raises ``AdapterError`` when the target names no
    logbook.
    """
    url, name = logbook_url(target)
    when = int((now or datetime.now(UTC)).timestamp())
    data = {
        "cmd": "Submit",
        "exp": name,
        "Author": draft.author,
        "Subject": draft.title,
        "When": str(when),
        "Encoding": "plain",
    }
    if target.username:
        data["unm"] = target.username
    if target.password:
        data["upwd"] = target.password.removeprefix("$5$$")
    parts: list[tuple[str, tuple[str | None, bytes] | tuple[str, bytes, str]]] = [
        ("Text", (None, entry_body(draft).encode()))  # a part without file name: multipart even without files
    ]
    parts += [(f"attfile{n}", (f.name, f.content, f.media_type)) for n, f in enumerate(files, start=1)]
    return httpx.Request("POST", url, data=data, files=parts)


def parse_submit_response(response: httpx.Response) -> PublishedRef:
    """The message id (and URL) of the entry elogd stored, from its answer to :func:`submit_request`.

    Raises ``PublishRejected`` for every answer that is not a stored entry (error page, bad credentials, login
    form, moved server, no redirect), quoting elogd's error message when it gives one.
    """
    body = response.content
    if response.status_code not in (200, 302):
        found = ERRORMSG.search(body.decode("utf-8", "replace"))
        reason = _text(found.group(1)) if found else ""
        raise PublishRejected(f"ELOG refused the entry (HTTP {response.status_code}): {reason or 'no reason given'}")
    location = response.headers.get("location")
    if location and "has moved" in location:
        raise PublishRejected(f"the ELOG server has moved: {location}")
    if location and "fail" in location:
        raise PublishRejected("ELOG refused the entry: invalid user name or password")
    if any(marker in body for marker in LOGIN_FORM):
        raise PublishRejected("ELOG refused the entry: it asks for a login (missing or invalid user name/password)")
    if not location:
        found = ERRORMSG.search(body.decode("utf-8", "replace"))
        reason = _text(found.group(1)) if found else "no redirect to a message id in its answer"
        raise PublishRejected(f"ELOG did not store the entry: {reason}")
    path = urlsplit(location).path.rstrip("/")
    msg_id = path.rsplit("/", 1)[-1]
    if not msg_id.isdigit() or int(msg_id) < 1:
        raise PublishRejected(f"ELOG answered with a location that holds no message id: {location}")
    try:
        base = str(response.request.url)
    except RuntimeError:  # a response built without its request (a recorded answer)
        base = ""
    return PublishedRef(entry_id=msg_id, url=urljoin(base, path) if base else path)


def _text(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]*>", " ", fragment)).split())


async def publish(draft: LogbookDraft, files: Sequence[OutgoingFile], target: PublishTarget) -> PublishedRef:
    """Submit ``draft`` with ``files`` to the ELOG logbook ``target`` (``Adapter.publish`` of ``elog``).

    Raises ``PublishRejected`` (elogd refused: nothing stored), ``SourceUnavailable`` (the server could not be
    reached: nothing sent) or ``PublishOutcomeUnknown`` (sent, but no answer: the entry may exist).
    """
    response = await send_submit(submit_request(draft, files, target), target, "the ELOG server")
    return parse_submit_response(response)


async def _no_items(source: str, cursor: str | None, opts: AdapterOptions) -> ItemStream:
    raise AdapterError("the elog adapter only publishes entries; ingestion from ELOG is not implemented")
    yield  # an async generator, like every adapter's items


async def _no_total(source: str) -> int | None:
    return None


ADAPTER = Adapter("elog", _no_items, _no_total, publish=publish)
