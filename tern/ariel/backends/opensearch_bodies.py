"""OpenSearch request bodies and response parsing for the ARIEL backend, as pure functions: index settings and
mappings, documents and bulk actions, keyword, fuzzy, browse and k-NN queries, alias swaps, search hits and
error types. Shapes follow the OpenSearch documentation (Create index API, Bulk API, Search API,
``simple_query_string``, k-NN query, Aliases API); ``tests/ariel/test_opensearch_unit.py`` checks them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from tern.ariel.models import LogbookEntry
from tern.ariel.query import SearchFilters
from tern.models import LogbookHit

TEXT_FIELDS = ["title^3", "raw_text", "tags^1.5", "keywords^1.5", "summary"]
MAX_ANALYZER_OFFSET = 1_000_000
"""Characters of a field the highlighter analyses (``max_analyzer_offset``, OpenSearch 2.2 or later): a longer
``raw_text`` is highlighted in its first million characters instead of failing the whole search with
``illegal_argument_exception`` (the index's ``index.highlight.max_analyzed_offset``, default 1,000,000, still
applies when it is lower; OpenSearch "Highlight query matches" documentation)."""
HIGHLIGHT = {
    "max_analyzer_offset": MAX_ANALYZER_OFFSET,
    "pre_tags": ["**"],
    "post_tags": ["**"],
    "fields": {
        "title": {"number_of_fragments": 0},
        "raw_text": {"fragment_size": 150, "number_of_fragments": 2},
    },
}
SOURCE_FIELDS = ["entry_id", "title", "author", "timestamp", "raw_text"]
RETRY_ON_CONFLICT = 3  # an entry's text and its vectors are partial updates of one document
HAS_TEXT: dict[str, Any] = {"exists": {"field": "entry_id"}}
"""Filter clause for documents whose text is indexed: a vector pushed before its entry's text makes a document
with only the vector field, which browse and k-NN search would otherwise return as a blank hit (no title,
author or timestamp). ``entry_id`` is set by ``entry_document`` only."""


def float32_values(vector: Sequence[float]) -> list[float]:
    """``vector`` at float32 precision, each value the shortest decimal that reads back as the same float32
    (numpy's ``str`` of a ``float32``): what a ``knn_vector`` stores anyway (32-bit floats), in about 12
    characters a value instead of a double's 20, so bulk requests of large vectors stay small."""
    import numpy as np

    return [float(x) for x in np.asarray(vector, dtype=np.float32).astype(str)]


def vector_field(model: str) -> str:
    """The ``knn_vector`` field holding ``model``'s embeddings (``emb_<slug>_<hash>``)."""
    slug = re.sub(r"[^a-z0-9]+", "_", model.lower()).strip("_")[:30]
    return f"emb_{slug}_{hashlib.sha1(model.encode()).hexdigest()[:8]}"


def vector_mapping(dim: int) -> dict[str, Any]:
    """A ``knn_vector`` field: HNSW on the Lucene engine with cosine similarity (supports filtered k-NN)."""
    return {
        "type": "knn_vector",
        "dimension": dim,
        "method": {"name": "hnsw", "space_type": "cosinesimil", "engine": "lucene"},
    }


def index_body(vectors: dict[str, int] | None = None, replicas: int = 0) -> dict[str, Any]:
    """Settings and mappings of a concrete index, sent in its create request: k-NN enabled, one shard,
    ``replicas`` replica shards, English-analysed text fields (BM25 is OpenSearch's default similarity), keyword
    fields for filters, and one ``knn_vector`` per embedding model (``vectors``: model -> dimension).
    ``dynamic: strict``: a document with a field not in the mapping (a vector whose field was never put) is
    refused per item (``strict_dynamic_mapping_exception``) instead of stored unsearchable.

    No index template: Tern creates every index itself, so a template would only add a cluster-wide object
    whose ``<alias>-*`` pattern overlaps another alias's (``tern-ariel-*`` and ``tern-ariel-test-*``), which
    OpenSearch refuses at equal priority (``MetadataIndexTemplateService``: "multiple index templates may not
    match during index creation"). Settings in a create request win over any template that matches.
    """
    props: dict[str, Any] = {
        "entry_id": {"type": "keyword"},
        "source_system": {"type": "keyword"},
        "timestamp": {"type": "date"},
        "author": {"type": "keyword", "fields": {"text": {"type": "text"}}},
        "title": {"type": "text", "analyzer": "english"},
        "raw_text": {"type": "text", "analyzer": "english"},
        "summary": {"type": "text", "analyzer": "english"},
        "keywords": {"type": "text", "analyzer": "english", "fields": {"raw": {"type": "keyword"}}},
        "tags": {"type": "text", "analyzer": "english", "fields": {"raw": {"type": "keyword"}}},
        "categories": {"type": "keyword"},
        "logbook": {"type": "keyword"},
    }
    for model, dim in (vectors or {}).items():
        props[vector_field(model)] = vector_mapping(dim)
    return {
        "settings": {"index": {"knn": True, "number_of_shards": 1, "number_of_replicas": replicas}},
        "mappings": {"dynamic": "strict", "properties": props, "_meta": {"created_by": "tern.ariel"}},
    }


def entry_document(e: LogbookEntry) -> dict[str, Any]:
    return {
        "entry_id": e.entry_id,
        "source_system": e.source_system,
        "timestamp": e.timestamp.isoformat(),
        "author": e.author,
        "title": e.title,
        "raw_text": e.raw_text,
        "summary": e.summary,
        "keywords": e.keywords,
        "tags": e.tags,
        "categories": e.categories,
        "logbook": e.logbook,
    }


def bulk_entry_actions(index: str, entries: Sequence[LogbookEntry]) -> list[dict[str, Any]]:
    """Bulk ``update`` actions with ``doc_as_upsert`` (helpers format): text fields are replaced, embedding
    fields already in the document are kept; ``retry_on_conflict`` because a vector update may race."""
    return [
        {
            "_op_type": "update",
            "_index": index,
            "_id": e.entry_id,
            "doc": entry_document(e),
            "doc_as_upsert": True,
            "retry_on_conflict": RETRY_ON_CONFLICT,
        }
        for e in entries
    ]


def bulk_vector_actions(
    index: str, model: str, entry_ids: Sequence[str], vectors: Sequence[Sequence[float]]
) -> list[dict[str, Any]]:
    """Bulk ``update`` actions setting one model's vector, as upserts: a document whose text is not indexed yet
    gets the vector now and its text later (a plain update would fail with ``document_missing_exception``);
    such a document has no text fields until then, and searches skip it (``HAS_TEXT``). Values are sent at
    float32 precision (``float32_values``)."""
    field = vector_field(model)
    return [
        {
            "_op_type": "update",
            "_index": index,
            "_id": i,
            "doc": {field: float32_values(v)},
            "doc_as_upsert": True,
            "retry_on_conflict": RETRY_ON_CONFLICT,
        }
        for i, v in zip(entry_ids, vectors, strict=True)
    ]


def filter_clauses(f: SearchFilters | None) -> list[dict[str, Any]]:
    """Bool ``filter`` clauses (no scoring) for the search filters."""
    if f is None:
        return []
    out: list[dict[str, Any]] = []
    if f.author:
        out.append({"wildcard": {"author": {"value": f"*{f.author}*", "case_insensitive": True}}})
    rng: dict[str, str] = {}
    if f.since:
        rng["gte"] = f.since.isoformat()
    if f.until:
        rng["lt"] = f.until.isoformat()
    if rng:
        out.append({"range": {"timestamp": rng}})
    if f.tags:
        out.append({"terms": {"tags.raw": list(f.tags)}})
    if f.source_system:
        out.append({"term": {"source_system": f.source_system}})
    if f.logbook:
        out.append({"term": {"logbook": f.logbook}})
    return out


_TOKEN = re.compile(r'"[^"]*"|[^\s"]+')
_NOT_OPERATORS = re.compile(r'[()|\\"]')  # punctuation websearch_to_tsquery ignores but simple_query_string reads
SQS_FLAGS = "OR|NOT|PHRASE|PRECEDENCE|WHITESPACE"
"""``simple_query_string`` operators Tern's web-search syntax uses. Without AND, PREFIX, FUZZY, NEAR, SLOP and
ESCAPE a ``+``, ``*`` or ``~`` in operator text is an ordinary character (dropped by the analyzer), as in
PostgreSQL's ``websearch_to_tsquery``, instead of a must, prefix or fuzzy operator."""


def simple_query(text: str) -> str:
    """Web-search syntax to ``simple_query_string`` syntax with PostgreSQL's precedence.

    ``websearch_to_tsquery`` reads ``a or b -c`` as ``a | (b & !c)``: ``or`` binds loosest. Lucene's
    ``SimpleQueryParser`` applies operators left to right (``(a | b) & !c``), so each ``or``-separated group is
    put in parentheses: ``(a) | (b -c)``. Quoted phrases are kept; parentheses, ``|``, backslashes and stray
    quotes (which ``websearch_to_tsquery`` ignores) become spaces."""
    groups: list[list[str]] = [[]]
    for tok in _TOKEN.findall(text):
        if tok.lower() == "or":
            groups.append([])
        elif tok.startswith('"') and tok.endswith('"') and len(tok) > 1:
            inner = _NOT_OPERATORS.sub(" ", tok[1:-1]).strip()
            if inner:
                groups[-1].append(f'"{inner}"')
        else:
            groups[-1] += _NOT_OPERATORS.sub(" ", tok).split()
    parts = [" ".join(g) for g in groups if g]
    if len(parts) <= 1:
        return parts[0] if parts else ""
    return " | ".join(f"({p})" for p in parts)


def keyword_body(
    text: str, filters: SearchFilters | None, limit: int, *, operator: str = "and", exclude: Sequence[str] = ()
) -> dict[str, Any]:
    """A BM25 ``simple_query_string`` search over the text fields (title boosted 3x) with highlights.
    ``operator`` is ``and`` (every term) or ``or`` (any term); ``exclude`` drops already-found ids."""
    bool_q: dict[str, Any] = {
        "must": [
            {
                "simple_query_string": {
                    "query": simple_query(text),
                    "fields": TEXT_FIELDS,
                    "default_operator": operator,
                    "flags": SQS_FLAGS,
                }
            }
        ],
        "filter": filter_clauses(filters),
    }
    if exclude:
        bool_q["must_not"] = [{"ids": {"values": list(exclude)}}]
    return {"size": limit, "query": {"bool": bool_q}, "_source": SOURCE_FIELDS, "highlight": HIGHLIGHT}


def fuzzy_body(text: str, filters: SearchFilters | None, limit: int) -> dict[str, Any]:
    """The typo-tolerant fallback: ``multi_match`` with ``fuzziness: AUTO``."""
    return {
        "size": limit,
        "query": {
            "bool": {
                "must": [{"multi_match": {"query": text, "fields": TEXT_FIELDS, "fuzziness": "AUTO"}}],
                "filter": filter_clauses(filters),
            }
        },
        "_source": SOURCE_FIELDS,
        "highlight": HIGHLIGHT,
    }


def browse_body(filters: SearchFilters | None, limit: int) -> dict[str, Any]:
    """The newest documents matching the filters (an empty query); documents without text are skipped
    (``HAS_TEXT``)."""
    return {
        "size": limit,
        "query": {"bool": {"filter": [*filter_clauses(filters), HAS_TEXT]}},
        "sort": [{"timestamp": "desc"}],
        "_source": SOURCE_FIELDS,
    }


def default_ef_search(limit: int) -> int:
    """The HNSW candidate queue for a search of ``limit`` hits: ``max(100, 2 * limit)`` (the PostgreSQL
    backend's ``hnsw.ef_search`` is at least 40; a queue of only ``k`` candidates loses recall)."""
    return max(100, 2 * limit)


def knn_body(
    vector: Sequence[float], model: str, filters: SearchFilters | None, limit: int, ef_search: int | None = None
) -> dict[str, Any]:
    """A ``knn`` query on the model's vector field, with the filters applied during the search (Lucene
    engine efficient filtering) and ``method_parameters.ef_search`` (default ``default_ef_search(limit)``):
    without it the HNSW queue is ``k`` candidates. ``method_parameters`` needs OpenSearch 2.16 or later
    (k-NN query documentation, "method_parameters"). ``ignore_unmapped`` (k-NN 2.11 or later): a model whose
    field is not in the mapping yet matches nothing instead of failing the search. The filter always holds
    ``HAS_TEXT``, so a vector whose entry's text is not indexed yet is never a (blank) hit."""
    knn: dict[str, Any] = {
        "vector": [float(x) for x in vector],
        "k": limit,
        "method_parameters": {"ef_search": max(limit, ef_search or default_ef_search(limit))},
        "ignore_unmapped": True,
    }
    knn["filter"] = {"bool": {"filter": [*filter_clauses(filters), HAS_TEXT]}}
    return {"size": limit, "query": {"knn": {vector_field(model): knn}}, "_source": SOURCE_FIELDS}


def alias_swap_actions(alias: str, old_indices: Sequence[str], new_index: str) -> dict[str, Any]:
    """One atomic ``_aliases`` body moving ``alias`` from ``old_indices`` to ``new_index``."""
    actions: list[dict[str, Any]] = [{"remove": {"index": i, "alias": alias}} for i in old_indices]
    actions.append({"add": {"index": new_index, "alias": alias}})
    return {"actions": actions}


def error_type(exc: Any) -> str:
    """The ``error.type`` of an opensearch-py ``TransportError`` (``index_not_found_exception``...). The client
    puts the parsed body in ``exc.info``, or with ``AsyncHttpConnection`` (which does not pass the content type
    on) leaves the raw JSON text in ``exc.error``; both are read."""
    info = exc.info
    if not isinstance(info, dict):
        try:
            info = json.loads(exc.error)
        except (TypeError, ValueError):
            return str(exc.error)
    err = info.get("error") if isinstance(info, dict) else None
    return str(err.get("type", "")) if isinstance(err, dict) else str(exc.error)


def parse_hits(response: dict[str, Any], *, cosine: bool = False) -> list[LogbookHit]:
    """Search API response (``hits.hits[]`` with ``_id``, ``_score``, ``_source``, ``highlight``) to hits."""
    out: list[LogbookHit] = []
    for h in response.get("hits", {}).get("hits", []):
        src = h.get("_source", {})
        hl = h.get("highlight", {})
        score = float(h.get("_score") or 0.0)
        if cosine:  # clamped: rounding can put (1 + cos) / 2 a hair outside [0, 1]
            score = min(1.0, max(-1.0, 2.0 * score - 1.0))
        text_hl = hl.get("raw_text", [])
        ts = src.get("timestamp")
        out.append(
            LogbookHit(
                entry_id=src.get("entry_id") or h["_id"],
                title=src.get("title", ""),
                author=src.get("author", ""),
                timestamp=datetime.fromisoformat(ts.replace("Z", "+00:00")) if ts else None,
                score=score,
                snippet=" ... ".join(text_hl) if text_hl else (src.get("raw_text") or "")[:200],
                highlights=[*hl.get("title", []), *text_hl],
            )
        )
    return out
