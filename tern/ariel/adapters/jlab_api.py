"""Publishing to the JLab logbook server (``logbooks.jlab.org``): the ``publish`` method of the ``jlab`` adapter.

The protocol, as JLab's own client library sends it (JeffersonLab/jlog, ``LogItem.performHttpPutToServer``,
``LogEntry``): the entry is an XML document ``<Logentry>`` with ``created`` (xs:dateTime), ``Author/username``,
``title``, ``Logbooks/logbook`` (one per logbook), ``body`` (CDATA), ``Tags/tag`` and
``Attachments/Attachment`` (``caption``, ``filename``, ``type``, ``data encoding="base64"``); it is sent with an
HTTP ``PUT`` to ``<SUBMIT_URL>/<yyyy_MM_dd_HHmmss>_<pid>_<hostname>_<random>.xml`` over TLS with the user's client
certificate (PEM, certificate and key: jlog's ``~/.elogcert``). The server answers ``<Response stat="ok">`` with
``<lognumber>``, or another ``stat`` with the reason in ``<msg>``.

:func:`submit_request` and :func:`parse_submit_response` are tested without a server (none runs here; the XML is
not validated against the server's schema here).
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import ssl
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from xml.etree import ElementTree as ET

import httpx

from tern.ariel.adapters.base import (
    AdapterError,
    OutgoingFile,
    PublishedRef,
    PublishRejected,
    PublishTarget,
    send_submit,
)
from tern.models.logbook import LogbookDraft

CDATA_END = "]]>"


def entry_xml(draft: LogbookDraft, files: Sequence[OutgoingFile], books: Sequence[str], *, now: datetime) -> bytes:
    """The ``<Logentry>`` document of ``draft`` for the logbooks ``books``, with ``files`` inline (base64)."""
    root = ET.Element("Logentry")
    ET.SubElement(root, "created").text = now.astimezone(UTC).isoformat(timespec="seconds")
    ET.SubElement(ET.SubElement(root, "Author"), "username").text = draft.author
    ET.SubElement(root, "title").text = draft.title
    logbooks = ET.SubElement(root, "Logbooks")
    for book in books:
        ET.SubElement(logbooks, "logbook").text = book
    ET.SubElement(root, "body")  # filled with a CDATA section below (ElementTree writes none)
    if draft.tags:
        tags = ET.SubElement(root, "Tags")
        for tag in draft.tags:
            ET.SubElement(tags, "tag").text = tag
    if files:
        attachments = ET.SubElement(root, "Attachments")
        for f in files:
            a = ET.SubElement(attachments, "Attachment")
            ET.SubElement(a, "caption").text = ""
            ET.SubElement(a, "filename").text = f.name
            ET.SubElement(a, "type").text = f.media_type
            ET.SubElement(a, "data", encoding="base64").text = base64.b64encode(f.content).decode()
    xml = ET.tostring(root, encoding="unicode", xml_declaration=False)
    body = "<![CDATA[" + draft.text.replace(CDATA_END, "]]]]><![CDATA[>") + "]]>"
    # every "<" of a text is escaped, so the first literal "<body />" is the element
    return ('<?xml version="1.0" encoding="UTF-8"?>' + xml.replace("<body />", f"<body>{body}</body>", 1)).encode()


def submit_filename(draft: LogbookDraft, now: datetime) -> str:
    """``<yyyy_MM_dd_HHmmss>_<pid>_<hostname>_<n>.xml``, the name the server expects; ``n`` (0-9999) is derived from
    the run and step instead of drawn at random."""
    n = int(hashlib.sha256(f"{draft.workflow_id}\0{draft.step_id}".encode()).hexdigest(), 16) % 10_000
    host = socket.gethostname().split(".")[0] or "unknown"
    return f"{now.astimezone(UTC):%Y_%m_%d_%H%M%S}_{os.getpid()}_{host}_{n}.xml"


def submit_request(
    draft: LogbookDraft, files: Sequence[OutgoingFile], target: PublishTarget, *, now: datetime | None = None
) -> httpx.Request:
    """The ``PUT`` that submits ``draft`` to the JLab logbook server at ``target.url`` (jlog's SUBMIT_URL), into the
    logbooks ``target.logbook`` names (comma-separated). Raises ``AdapterError`` when it names none."""
    books = [b.strip() for b in target.logbook.split(",") if b.strip()]
    if not books:
        raise AdapterError("the JLab logbook needs the logbook name(s): set publish_logbook, e.g. 'ELOG'")
    now = now or datetime.now(UTC)
    url = target.url.rstrip("/") + "/" + submit_filename(draft, now)
    body = entry_xml(draft, files, books, now=now)
    return httpx.Request("PUT", url, content=body, headers={"Content-Type": "application/xml; charset=UTF-8"})


def parse_submit_response(response: httpx.Response) -> PublishedRef:
    """The log number the server assigned, from its ``<Response>``.

    Raises ``PublishRejected`` for an HTTP error, an answer that is not a ``<Response>``, or a ``stat`` other than
    ``ok`` (quoting ``<msg>``).
    """
    if response.status_code >= 400:
        raise PublishRejected(
            f"the JLab logbook refused the entry (HTTP {response.status_code}): {response.text[:300].strip()}"
        )
    try:
        doc = ET.fromstring(response.content)
    except ET.ParseError as exc:
        raise PublishRejected(f"the JLab logbook answered something that is not XML: {exc}") from exc
    status, msg = doc.get("stat", ""), (doc.findtext("msg") or "").strip()
    if doc.tag != "Response" or not status:
        raise PublishRejected("the JLab logbook's answer is not a <Response stat=...>")
    if status != "ok":
        raise PublishRejected(f"the JLab logbook refused the entry: {msg or status}")
    number = (doc.findtext("lognumber") or "").strip()
    if not number.isdigit():
        raise PublishRejected(f"the JLab logbook's answer holds no log number ({msg or 'no message'})")
    return PublishedRef(entry_id=number)


def client_tls(cert: Path | None) -> ssl.SSLContext | bool:
    """TLS for the submit: the system's CA bundle and, when given, the client certificate (PEM with its key).

    Raises ``AdapterError`` naming the file when it cannot be read as a certificate with its key (nothing sent).
    """
    if cert is None:
        return True
    ctx = ssl.create_default_context()
    try:
        ctx.load_cert_chain(str(cert))
    except (OSError, ssl.SSLError) as exc:
        raise AdapterError(
            f"the JLab client certificate {cert} (publish_client_cert) cannot be loaded: {exc}; it must be a PEM "
            "file holding the certificate and its key"
        ) from exc
    return ctx


async def publish(draft: LogbookDraft, files: Sequence[OutgoingFile], target: PublishTarget) -> PublishedRef:
    """Submit ``draft`` with ``files`` to the JLab logbook server (``Adapter.publish`` of ``jlab``).

    Raises ``PublishRejected`` (refused: nothing stored), ``SourceUnavailable`` (not reached) or
    ``PublishOutcomeUnknown`` (sent, no answer).
    """
    request = submit_request(draft, files, target)
    tls = client_tls(target.client_cert)  # before anything is sent
    response = await send_submit(request, target, "the JLab logbook server", verify=tls)
    return parse_submit_response(response)
