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

Write and search behaviour of the default answers (``Cluster``), each as OpenSearch documents it:

* a bulk action on a missing index auto-creates it with dynamic mappings and no settings
  (``action.auto_create_index``, default true: Create index API and Bulk API documentation); with
  ``require_alias=true`` (Bulk API query parameter: "all actions target an index alias rather than an index")
  an action whose ``_index`` is not an alias fails per item with 404 ``index_not_found_exception``
  ("[require_alias] request flag is [true] and [x] is not an alias", ``TransportBulkAction``); an action on an
  alias writes to its one index;
* an index whose mappings say ``"dynamic": "strict"`` refuses a document with an unmapped field, per bulk
  item with 400 ``strict_dynamic_mapping_exception`` (Mappings documentation, "dynamic": strict "throws an
  exception"; ``StrictDynamicMappingException``);
* a request body over ``max_content_length`` (``http.max_content_length``, default 100mb: Network settings
  documentation) gets 413 for the whole request, with the body Amazon OpenSearch Service sends
  (``{"Message": "Request size exceeded N bytes"}``);
* searches and counts evaluate only ``exists`` filter clauses (Exists query), ``ids`` in ``must_not``, and a
  ``knn`` clause's need for its vector field (k-NN search returns only documents with the field); every other
  clause matches all documents, hits are in insertion order with score 1.0;
* a highlighted search over a text field longer than ``index.highlight.max_analyzed_offset`` (default
  1,000,000) fails with 400 unless the highlight sets ``max_analyzer_offset`` (Highlight query matches
  documentation; OpenSearch 2.2 or later), the error the unified highlighter raises.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import AsyncIterator, Awaitable, Callable
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
    headers: dict[str, str] = field(default_factory=dict)
    peer: int = 0  # the client's TCP port: one per connection
    size: int = 0  # bytes of the request body as sent

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
Handler = Callable[[Call], Answer | Awaitable[Answer]]


@dataclass
class FakeOpenSearch:
    url: str
    calls: list[Call] = field(default_factory=list)
    handler: Handler = lambda call: None
    cluster: Cluster = field(default_factory=lambda: Cluster())
    max_content_length: int = 100 * 1024 * 1024  # http.max_content_length (default 100mb)

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


@dataclass
class Cluster:
    """The little state the default answers keep: indices (aliases, settings, documents) and index templates.
    Enough for the calls the backend makes; anything else is acknowledged."""

    indices: dict[str, dict[str, Any]] = field(default_factory=dict)
    templates: dict[str, dict[str, Any]] = field(default_factory=dict)

    def resolve(self, names: str) -> list[str]:
        """Concrete indices named by a comma-separated list of index names, aliases and ``*`` patterns."""
        import fnmatch

        out: list[str] = []
        for n in names.split(","):
            for i, meta in self.indices.items():
                if (fnmatch.fnmatchcase(i, n) or n in meta["aliases"]) and i not in out:
                    out.append(i)
        return out

    def answer(self, call: Call) -> tuple[int, Any]:
        parts = [p for p in call.path.split("/") if p]
        m = call.method
        if parts and parts[0] == "_index_template" and m == "PUT":
            self.templates[parts[1]] = call.body
            return 200, {"acknowledged": True}
        if parts and parts[0] == "_index_template" and m == "DELETE":
            self.templates.pop(parts[1], None)
            return 200, {"acknowledged": True}
        if parts and parts[0] == "_alias":
            # RestGetAliasesAction: the aliases found, and 404 naming the missing ones when any is missing
            import fnmatch

            wanted = parts[1].split(",")

            def hit(a: str) -> bool:
                return any(fnmatch.fnmatchcase(a, w) for w in wanted)

            found: dict[str, Any] = {
                i: {"aliases": {a: {} for a in sorted(meta["aliases"]) if hit(a)}}
                for i, meta in self.indices.items()
                if any(hit(a) for a in meta["aliases"])
            }
            have = {a for v in found.values() for a in v["aliases"]}
            missing = [a for a in wanted if "*" not in a and a not in have]  # wildcards are never "missing"
            if missing:
                what = f"alias [{missing[0]}]" if len(missing) == 1 else f"aliases [{','.join(missing)}]"
                return 404, {"error": f"{what} missing", "status": 404, **found}
            return 200, found
        if parts == ["_aliases"] and m == "POST":
            for action in call.body["actions"]:
                ((op, spec),) = action.items()
                if spec["index"] not in self.indices:
                    return index_not_found(spec["index"])
                aliases = self.indices[spec["index"]]["aliases"]
                aliases.add(spec["alias"]) if op == "add" else aliases.discard(spec["alias"])
            return 200, {"acknowledged": True}
        if parts and parts[-1] == "_bulk":
            require_alias = call.params.get("require_alias") == "true"
            return bulk_response(
                [self.bulk_item(action, src, require_alias=require_alias) for action, src in call.bulk_pairs()]
            )
        if len(parts) == 1 and m == "PUT":
            if parts[0] in self.indices:
                return error(
                    400,
                    "resource_already_exists_exception",
                    f"index [{parts[0]}/aAsFqTI0Tc2W0LCWgPNrOA] already exists",
                    index=parts[0],
                )
            body = call.body or {}
            self.indices[parts[0]] = {
                "aliases": set((body.get("aliases") or {}).keys()),
                "settings": body.get("settings", {}),
                "mappings": body.get("mappings", {}),
                "docs": {},
            }
            return 200, {"acknowledged": True, "shards_acknowledged": True, "index": parts[0]}
        if len(parts) == 1 and m == "HEAD":  # Index exists API: 200 or 404, no body
            return (200, None) if self.resolve(parts[0]) else (404, None)
        if len(parts) == 1 and m == "DELETE":
            gone = self.resolve(parts[0])
            if not gone and "*" not in parts[0] and call.params.get("ignore_unavailable") != "true":
                return index_not_found(parts[0])
            for i in gone:
                del self.indices[i]
            return 200, {"acknowledged": True}
        if parts and parts[-1] in ("_search", "_count", "_mapping") and m in ("GET", "POST") and parts[0][0] != "_":
            if not self.resolve(parts[0]):
                return index_not_found(parts[0])
        if len(parts) == 2 and parts[-1] == "_mapping" and m == "GET":
            return 200, {i: {"mappings": self.indices[i]["mappings"]} for i in self.resolve(parts[0])}
        if len(parts) == 2 and parts[-1] == "_mapping" and m == "PUT":
            for i in self.resolve(parts[0]):
                props = self.indices[i]["mappings"].setdefault("properties", {})
                props.update((call.body or {}).get("properties", {}))
            return 200, {"acknowledged": True}
        if parts and parts[-1] == "_count":
            query = (call.body or {}).get("query", {})
            return 200, {"count": len(self.matching(parts[0], query)), "_shards": {"total": 1, "successful": 1}}
        if parts and parts[-1] == "_search":
            return self.search(parts[0] if len(parts) == 2 else "*", call.body or {})
        if parts and parts[-1] == "_settings" and m == "PUT":
            for i in self.resolve(parts[0]):
                self.indices[i]["settings"].setdefault("index", {}).update((call.body or {}).get("index", call.body))
        return 200, {"acknowledged": True}

    def matching(self, names: str, query: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
        """(index, id, document) of the documents in ``names`` that ``query`` matches, as far as the fake
        evaluates queries (see the module docstring)."""
        needed: list[str] = []  # fields that must exist
        excluded: set[str] = set()

        def filters(clauses: Any) -> None:
            for c in clauses if isinstance(clauses, list) else [clauses]:
                if "exists" in c:
                    needed.append(c["exists"]["field"])
                elif "bool" in c:
                    filters(c["bool"].get("filter", []))

        if "bool" in query:
            filters(query["bool"].get("filter", []))
            for c in query["bool"].get("must_not", []):
                excluded.update(c.get("ids", {}).get("values", []))
        for field_, knn in query.get("knn", {}).items():
            needed.append(field_)
            filters(knn.get("filter", []))
        return [
            (i, id_, doc)
            for i in self.resolve(names)
            for id_, doc in self.indices[i]["docs"].items()
            if id_ not in excluded and all(doc.get(f) not in (None, [], "") for f in needed)
        ]

    def search(self, names: str, body: dict[str, Any]) -> tuple[int, Any]:
        """A search's answer: matching documents (``matching``), ``_source`` filtered to the listed fields;
        the highlighter's 400 for a text over ``index.highlight.max_analyzed_offset``."""
        found = self.matching(names, body.get("query", {}))[: body.get("size", 10)]
        highlight = body.get("highlight")
        for index, id_, doc in found:
            if not highlight:
                break
            index_settings = self.indices[index]["settings"].get("index", {})
            limit = int(index_settings.get("highlight.max_analyzed_offset", 1_000_000))
            for name, opts in highlight.get("fields", {}).items():
                text = doc.get(name)
                capped = "max_analyzer_offset" in highlight or "max_analyzer_offset" in (opts or {})
                if isinstance(text, str) and len(text) > limit and not capped:
                    reason = (
                        f"The length of [{name}] field of [{id_}] doc of [{index}] index has exceeded [{limit}] - "
                        "maximum allowed to be analyzed for highlighting. This maximum can be set by changing the "
                        "[index.highlight.max_analyzed_offset] index level setting. For large texts, indexing with "
                        "offsets or term vectors is recommended!"
                    )
                    cause = {"type": "illegal_argument_exception", "reason": reason}
                    return 400, {
                        "error": {
                            "root_cause": [cause],
                            "type": "search_phase_execution_exception",
                            "reason": "all shards failed",
                            "phase": "query",
                            "grouped": True,
                            "failed_shards": [{"shard": 0, "index": index, "reason": cause}],
                            "caused_by": cause,
                        },
                        "status": 400,
                    }
        wanted = body.get("_source")
        hits = [
            {
                "_index": index,
                "_id": id_,
                "_score": 1.0,
                "_source": {k: v for k, v in doc.items() if not isinstance(wanted, list) or k in wanted},
            }
            for index, id_, doc in found
        ]
        total = {"value": len(hits), "relation": "eq"}
        return 200, {"took": 1, "timed_out": False, "hits": {"total": total, "max_score": 1.0, "hits": hits}}

    def write_index(self, name: str, op: str, id_: str, require_alias: bool) -> str | dict[str, Any]:
        """The concrete index a bulk action on ``name`` writes to, or the item's failure: an alias's one index;
        a missing index auto-created (dynamic mappings, no settings, no alias); with ``require_alias`` anything
        but an alias fails with 404 ``index_not_found_exception``."""
        holders = [i for i, meta in self.indices.items() if name in meta["aliases"]]
        if len(holders) > 1:
            reason = (
                f"no write index is defined for alias [{name}]. The write index may be explicitly disabled using "
                "is_write_index=false or the alias points to multiple indices without one being designated as a "
                "write index"
            )
            return bulk_item(op, name, id_, 400, {"type": "illegal_argument_exception", "reason": reason})
        if holders:
            return holders[0]
        if require_alias:
            err = index_not_found(name)[1]["error"]
            err.pop("root_cause")
            err["reason"] = f"[require_alias] request flag is [true] and [{name}] is not an alias"
            return bulk_item(op, name, id_, 404, err)
        if name not in self.indices:  # action.auto_create_index
            self.indices[name] = {"aliases": set(), "settings": {}, "mappings": {}, "docs": {}}
        return name

    def bulk_item(
        self, action: dict[str, Any], src: dict[str, Any] | None, *, require_alias: bool = False
    ) -> dict[str, Any]:
        ((op, meta),) = action.items()
        id_ = meta.get("_id", "")
        index = self.write_index(meta.get("_index", ""), op, id_, require_alias)
        if isinstance(index, dict):
            return index
        docs = self.indices[index]["docs"]
        mappings = self.indices[index]["mappings"]
        fields = (src or {}).get("doc", src or {}) if op != "delete" else {}
        unmapped = [f for f in fields if f not in mappings.get("properties", {})]
        if mappings.get("dynamic") == "strict" and unmapped:
            reason = f"mapping set to strict, dynamic introduction of [{unmapped[0]}] within [_doc] is not allowed"
            return bulk_item(op, index, id_, 400, {"type": "strict_dynamic_mapping_exception", "reason": reason})
        if op == "update":
            assert src is not None
            if id_ not in docs and not src.get("doc_as_upsert"):
                return bulk_item(op, index, id_, 404, document_missing(index, id_))
            docs.setdefault(id_, {}).update(src["doc"])
        elif op in ("index", "create") and src is not None:
            docs[id_] = dict(src)
        elif op == "delete":
            docs.pop(id_, None)
        return bulk_item(op, index, id_)


@asynccontextmanager
async def fake_opensearch(**tls: Any) -> AsyncIterator[FakeOpenSearch]:
    """Start the fake on a free loopback port; yields it (set ``.handler`` to script answers). ``tls``: uvicorn's
    ``ssl_*`` options, for an HTTPS endpoint."""
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
        call = Call(
            request.method,
            "/" + path,
            dict(request.query_params),
            body,
            dict(request.headers),
            request.client.port if request.client else 0,
            len(raw),
        )
        fake.calls.append(call)
        if len(raw) > fake.max_content_length:  # refused before any handler sees it, as by the HTTP layer
            too_large = {"Message": f"Request size exceeded {fake.max_content_length} bytes"}
            return Response(json.dumps(too_large), status_code=413, media_type="application/json")
        answer = fake.handler(call)
        if inspect.isawaitable(answer):  # a handler may hold a request (to interleave with the test)
            answer = await answer
        status, doc = answer or fake.cluster.answer(call)
        if request.method == "HEAD":
            return Response(status_code=status)
        return Response(json.dumps(doc), status_code=status, media_type="application/json")

    async with serve(app, **tls) as url:
        fake.url = url
        yield fake
