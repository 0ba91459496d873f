"""OpenSearch request bodies and response parsing, checked against the shapes the OpenSearch documentation
gives (Search API with highlight, k-NN query with filter, Bulk helpers' action format, Aliases API,
Create index API). No server is needed; the contract suite runs them against one when
TERN_ARIEL__OPENSEARCH_URL is set."""

from __future__ import annotations

from datetime import UTC, datetime

from tern.ariel.backends import opensearch as osb
from tern.ariel.models import LogbookEntry
from tern.ariel.query import SearchFilters

# Shaped like the "Search API" response example of the OpenSearch documentation, with highlight.
SEARCH_RESPONSE = {
    "took": 4,
    "timed_out": False,
    "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
    "hits": {
        "total": {"value": 2, "relation": "eq"},
        "max_score": 3.1,
        "hits": [
            {
                "_index": "tern-ariel-1",
                "_id": "J20002",
                "_score": 3.1,
                "_source": {
                    "entry_id": "J20002",
                    "title": "Klystron fault in South Linac",
                    "author": "operator2",
                    "timestamp": "2024-01-01T10:30:00+00:00",
                    "raw_text": "Klystron SL-5A faulted at 10:15.",
                },
                "highlight": {
                    "title": ["**Klystron** fault in South Linac"],
                    "raw_text": ["**Klystron** SL-5A faulted at 10:15."],
                },
            },
            {
                "_index": "tern-ariel-1",
                "_id": "E001",
                "_score": 1.2,
                "_source": {
                    "entry_id": "E001",
                    "title": "RF Cavity Trip in Sector 3",
                    "author": "oper_smith",
                    "timestamp": "2024-01-01T00:00:00Z",
                    "raw_text": "At 14:23, RF cavity 3A-2 tripped",
                },
            },
        ],
    },
}


def test_index_body_has_bm25_text_and_knn_vector() -> None:
    body = osb.index_body({"all-MiniLM-L6-v2": 384}, replicas=2)
    assert body["settings"]["index"] == {"knn": True, "number_of_shards": 1, "number_of_replicas": 2}
    props = body["mappings"]["properties"]
    assert props["title"] == {"type": "text", "analyzer": "english"}
    assert props["timestamp"]["type"] == "date" and props["entry_id"]["type"] == "keyword"
    vec = props[osb.vector_field("all-MiniLM-L6-v2")]
    assert vec == {
        "type": "knn_vector",
        "dimension": 384,
        "method": {"name": "hnsw", "space_type": "cosinesimil", "engine": "lucene"},
    }


def test_keyword_body_boosts_title_filters_and_highlights() -> None:
    f = SearchFilters(author="smith", since=datetime(2024, 1, 1, tzinfo=UTC), tags=["rf"], source_system="als")
    body = osb.keyword_body('"beam loss" or vacuum -bellows', f, 7, exclude=["E1"])
    q = body["query"]["bool"]
    sqs = q["must"][0]["simple_query_string"]
    assert sqs["query"] == '("beam loss") | (vacuum -bellows)' and sqs["default_operator"] == "and"
    assert sqs["flags"] == "OR|NOT|PHRASE|PRECEDENCE|WHITESPACE"  # no PREFIX (*), FUZZY (~), AND (+)
    assert sqs["fields"][0] == "title^3" and "raw_text" in sqs["fields"]
    assert {"wildcard": {"author": {"value": "*smith*", "case_insensitive": True}}} in q["filter"]
    assert {"range": {"timestamp": {"gte": "2024-01-01T00:00:00+00:00"}}} in q["filter"]
    assert {"terms": {"tags.raw": ["rf"]}} in q["filter"] and {"term": {"source_system": "als"}} in q["filter"]
    assert q["must_not"] == [{"ids": {"values": ["E1"]}}]
    assert body["size"] == 7 and body["highlight"]["pre_tags"] == ["**"]


def test_simple_query_keeps_postgres_precedence_and_plain_characters() -> None:
    # websearch_to_tsquery: 'a or b -c' is a | (b & !c); Lucene's parser would read (a | b) & !c
    assert osb.simple_query("a or b -c") == "(a) | (b -c)"
    assert osb.simple_query("a OR b or") == "(a) | (b)"
    assert osb.simple_query("rf trip") == "rf trip"
    assert osb.simple_query('"beam (loss)" x|y \\z') == '"beam  loss" x y z'
    assert osb.simple_query("klystron* +rf fault~2") == "klystron* +rf fault~2"  # plain text without the flags
    assert osb.simple_query(" or ") == ""


def test_knn_body_puts_filters_inside_the_knn_clause() -> None:
    body = osb.knn_body([0.1, 0.2], "m", SearchFilters(logbook="CEBAF Operations"), 5)
    knn = body["query"]["knn"][osb.vector_field("m")]
    assert knn["vector"] == [0.1, 0.2] and knn["k"] == 5
    assert knn["method_parameters"] == {"ef_search": 100}  # not k: a queue of 5 candidates loses recall
    assert osb.knn_body([0.1], "m", None, 80)["query"]["knn"][osb.vector_field("m")]["method_parameters"] == {
        "ef_search": 160
    }
    assert osb.knn_body([0.1], "m", None, 5, ef_search=400)["query"]["knn"][osb.vector_field("m")][
        "method_parameters"
    ] == {"ef_search": 400}
    assert knn["filter"] == {"bool": {"filter": [{"term": {"logbook": "CEBAF Operations"}}, osb.HAS_TEXT]}}
    # without filters only HAS_TEXT: a vector whose entry's text is not indexed yet is no (blank) hit
    assert osb.knn_body([0.1], "m", None, 5)["query"]["knn"][osb.vector_field("m")]["filter"] == {
        "bool": {"filter": [{"exists": {"field": "entry_id"}}]}
    }


def test_bulk_actions_and_alias_swap() -> None:
    e = LogbookEntry(entry_id="A1", source_system="als", timestamp=datetime(2024, 1, 1, tzinfo=UTC), title="t")
    [a] = osb.bulk_entry_actions("tern-ariel-2", [e])
    assert a["_op_type"] == "update" and a["_id"] == "A1" and a["doc_as_upsert"] is True
    assert a["doc"]["timestamp"] == "2024-01-01T00:00:00+00:00"
    [v] = osb.bulk_vector_actions("tern-ariel-2", "m", ["A1"], [[1, 0]])
    assert v["doc"] == {osb.vector_field("m"): [1.0, 0.0]}
    assert osb.alias_swap_actions("tern-ariel", ["tern-ariel-1"], "tern-ariel-2") == {
        "actions": [
            {"remove": {"index": "tern-ariel-1", "alias": "tern-ariel"}},
            {"add": {"index": "tern-ariel-2", "alias": "tern-ariel"}},
        ]
    }


def test_parse_hits_with_and_without_highlights() -> None:
    hits = osb.parse_hits(SEARCH_RESPONSE)
    assert [h.entry_id for h in hits] == ["J20002", "E001"] and hits[0].score == 3.1
    assert hits[0].highlights == ["**Klystron** fault in South Linac", "**Klystron** SL-5A faulted at 10:15."]
    assert hits[0].timestamp == datetime(2024, 1, 1, 10, 30, tzinfo=UTC)
    assert hits[1].highlights == [] and hits[1].snippet.startswith("At 14:23")
    # cosinesimil scores are (1 + cos) / 2: 0.9 means cosine 0.8
    knn = {"hits": {"hits": [{"_id": "x", "_score": 0.9, "_source": {"entry_id": "x", "title": "t"}}]}}
    assert abs(osb.parse_hits(knn, cosine=True)[0].score - 0.8) < 1e-9
    over = {"hits": {"hits": [{"_id": "x", "_score": 1.0000001, "_source": {"entry_id": "x"}}]}}
    assert osb.parse_hits(over, cosine=True)[0].score == 1.0  # clamped to [-1, 1]
    assert osb.parse_hits({"hits": {"total": {"value": 0}, "hits": []}}) == []
