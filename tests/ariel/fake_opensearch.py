"""A scripted OpenSearch HTTP endpoint for tests at the HTTP boundary: a real FastAPI app under uvicorn on a
loopback port, driven through the real ``opensearchpy.AsyncOpenSearch`` client.

Every request is recorded (method, path, query, JSON or NDJSON body); a test's ``handler`` answers it with
OpenSearch's documented response bodies (the builders below), or returns None for the default answer.
The bodies follow the OpenSearch documentation and sources: the error envelope
``{"error": {"root_cause": [...], "type", "reason", ...}, "status"}`` (``OpenSearchException.generateFailureXContent``,
``BytesRestResponse``), ``index_not_found_exception`` (``IndexNotFoundException``, 404),
``document_missing_exception`` (``DocumentMissingException``, 404 per bulk item), 429 bulk items
(``es_rejected_execution_exception``, ``EsRejectedExecutionException``), and the 400 a composable template
with overlapping patterns at the same priority gets (``MetadataIndexTemplateService.addIndexTemplateV2``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request, Response

from tests.ariel.conftest import serve


@dataclass
class Call:
    """One request the fake received. ``body`` is the parsed JSON, or for NDJSON (``_bulk``) a list of lines."""

    method: str
    path: str
    params: dict[str, str]
    body: Any

    def bulk_pairs(self) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
        """``_bulk`` body as (action line, source line or None for delete) pairs."""
        lines: list[dict[str, Any]] = list(self.body or [])
        out: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
        i = 0
        while i < len(lines):
            action = lines[i]
            op = next(iter(action))
            if op == "delete":
                out.append((action, None))
                i += 1
            else:
                out.append((action, lines[i + 1]))
                i += 2
        return out


Answer = tuple[int, Any] | None
Handler = Callable[[Call], Answer]


@dataclass
class FakeOpenSearch:
    url: str
    calls: list[Call] = field(default_factory=list)
    handler: Handler = lambda call: None

    def client(self, **kw: Any) -> Any:
        from opensearchpy import AsyncOpenSearch

        return AsyncOpenSearch(hosts=[self.url], **kw)

    def paths(self, method: str | None = None) -> list[str]:
        return [c.path for c in self.calls if method is None or c.method == method]


def error(status: int, type_: str, reason: str, **extra: Any) -> tuple[int, dict[str, Any]]:
    """OpenSearch's REST error envelope."""
    cause = {"type": type_, "reason": reason, **extra}
    return status, {"error": {"root_cause": [cause], **cause}, "status": status}


def index_not_found(index: str) -> tuple[int, dict[str, Any]]:
    """404 for a search, mapping or count on an index or alias that does not exist."""
    return error(
        404,
        "index_not_found_exception",
        f"no such index [{index}]",
        index=index,
        **{"resource.type": "index_or_alias", "resource.id": index, "index_uuid": "_na_"},
    )


def template_overlap(name: str, pattern: str, other: str, other_pattern: str, priority: int = 100) -> tuple[int, Any]:
    """400 for ``PUT _index_template/<name>`` whose patterns overlap another template's at the same priority."""
    return error(
        400,
        "illegal_argument_exception",
        f"index template [{name}] has index patterns [{pattern}] matching patterns from existing templates "
        f"[{other}] with patterns ({other} => [{other_pattern}]) that have the same priority [{priority}], "
        "multiple index templates may not match during index creation, please use a different priority",
    )


def bulk_item(op: str, index: str, id_: str, status: int = 200, err: dict[str, Any] | None = None) -> dict[str, Any]:
    """One ``items[]`` entry of a ``_bulk`` response."""
    item: dict[str, Any] = {"_index": index, "_id": id_, "status": status}
    if err is None:
        item.update({"_version": 1, "result": "updated", "_shards": {"total": 1, "successful": 1, "failed": 0}})
    else:
        item["error"] = err
    return {op: item}


def rejected(index: str) -> dict[str, Any]:
    """The ``error`` of a bulk item refused with 429 (write thread pool queue full)."""
    return {
        "type": "es_rejected_execution_exception",
        "reason": f"rejected execution of coordinating operation [shard_detail=[{index}][0][P]]",
    }


def document_missing(index: str, id_: str) -> dict[str, Any]:
    """The ``error`` of a bulk ``update`` (without upsert) on a document that does not exist (status 404)."""
    return {
        "type": "document_missing_exception",
        "reason": f"[{id_}]: document missing",
        "index": index,
        "shard": "0",
        "index_uuid": "aAsFqTI0Tc2W0LCWgPNrOA",
    }


def bulk_response(items: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    """A ``_bulk`` answer: HTTP 200 with per-item statuses (``errors`` true when any item failed)."""
    errors = any("error" in next(iter(i.values())) for i in items)
    return 200, {"took": 3, "errors": errors, "items": items}


def _default(call: Call) -> tuple[int, Any]:
    if call.path.endswith("/_bulk") or call.path == "/_bulk":
        items = []
        for action, _src in call.bulk_pairs():
            op, meta = next(iter(action.items()))
            items.append(bulk_item(op, meta.get("_index", ""), meta.get("_id", "")))
        return bulk_response(items)
    if call.path.endswith("/_search"):
        return 200, {"took": 1, "timed_out": False, "hits": {"total": {"value": 0, "relation": "eq"}, "hits": []}}
    return 200, {"acknowledged": True}


@asynccontextmanager
async def fake_opensearch() -> AsyncIterator[FakeOpenSearch]:
    """Start the fake on a free loopback port; yields it (set ``.handler`` to script answers)."""
    app = FastAPI()
    fake = FakeOpenSearch(url="")

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE", "HEAD"])
    async def any_request(path: str, request: Request) -> Response:
        raw = await request.body()
        body: Any = None
        if raw:
            text = raw.decode()
            try:
                body = json.loads(text)
            except json.JSONDecodeError:
                body = [json.loads(line) for line in text.splitlines() if line.strip()]
        call = Call(request.method, "/" + path, dict(request.query_params), body)
        fake.calls.append(call)
        status, doc = fake.handler(call) or _default(call)
        if request.method == "HEAD":
            return Response(status_code=status)
        return Response(json.dumps(doc), status_code=status, media_type="application/json")

    async with serve(app) as url:
        fake.url = url
        yield fake
