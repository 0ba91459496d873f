"""The OpenSearch backend at the HTTP boundary: the real ``opensearchpy.AsyncOpenSearch`` client against a
scripted endpoint (``tests.ariel.fake_opensearch``) answering with OpenSearch's documented responses. Each
test here failed on the backend as first landed (issue 15) or before the fixes of issue 27."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import logging
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from tern.ariel import store
from tern.ariel.adapters import AdapterOptions
from tern.ariel.api import create_app
from tern.ariel.backends import SearchIndexMissing
from tern.ariel.backends.opensearch import OpenSearchBackend, entry_document, vector_field
from tern.ariel.backends.opensearch_client import client_options, close_shared_clients, shared_client_count
from tern.ariel.embeddings import HashingTestEmbedder
from tern.ariel.ingest import embed_pending, ingest_source, summarize_pending
from tern.ariel.service import search
from tests.ariel.conftest import DATA, NOW, ariel_settings
from tests.ariel.fake_opensearch import (
    Call,
    FakeOpenSearch,
    bulk_item,
    bulk_response,
    fake_opensearch,
    index_not_found,
    rejected,
    template_overlap,
)
from tests.ariel.test_cli_api import cli
from tests.ariel.test_search_contract import FakeLLM
from tests.ariel.tls_files import make_tls_files

ALIAS = "tern-ariel"
EMB = HashingTestEmbedder(dim=32, model="test-hashing-32")


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenSearch]:
    async with fake_opensearch() as f:
        yield f


@pytest.fixture
async def backend(fake: FakeOpenSearch) -> AsyncIterator[OpenSearchBackend]:
    b = OpenSearchBackend(fake.client(), ALIAS)
    yield b
    await b.close()


# --- defect 2: search before the first ingestion -------------------------------------------------------------


async def test_search_before_first_ingestion_answers_no_hits_with_a_notice(
    fake: FakeOpenSearch, backend: OpenSearchBackend, pool: asyncpg.Pool
) -> None:
    def no_index(call: Call):
        if call.path.startswith(f"/{ALIAS}"):
            return index_not_found(ALIAS)
        return None

    fake.handler = no_index
    emb = HashingTestEmbedder(dim=32, model="m")
    settings = ariel_settings(ariel={"backend": "opensearch", "opensearch_url": fake.url})
    app = create_app(settings, pool=pool, service_kwargs={"backend": backend, "embedder": emb, "llm": None})
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ariel") as api:
            for mode in ("keyword", "semantic", "hybrid", "rag"):
                r = await api.get("/search", params={"q": "rf trip", "mode": mode})
                assert r.status_code == 200, r.text
                body = r.json()
                assert body["hits"] == [] and "does not exist yet" in body["notice"], (mode, body)
    assert f"/{ALIAS}/_search" in fake.paths("POST")


# --- defect 3: vectors lost for good -----------------------------------------------------------------------


async def test_vectors_stay_pending_until_the_index_acknowledges_them(fake: FakeOpenSearch, pool: asyncpg.Pool) -> None:
    """429 items are retried with backoff; a refused vector is reported and stays pending in PostgreSQL (pushed
    by the next step); vectors of entries whose text is not indexed yet are upserts, not
    ``document_missing_exception``."""
    backend = OpenSearchBackend(fake.client(), ALIAS, bulk_retries=3, bulk_backoff_s=0.01)
    # the entries reach PostgreSQL but not the index (as after a failed push): the vectors come first
    await ingest_source(pool, "jlab", str(DATA / "jlab_sample_entries.json"), AdapterOptions(now=NOW))
    field = vector_field(EMB.model)
    state = {"rejected": 0, "refuse": True}

    def flaky(call: Call):
        if not call.path.endswith("/_bulk"):
            return None
        items = []
        for action, src in call.bulk_pairs():
            ((op, meta),) = action.items()
            is_vector = src is not None and field in src.get("doc", {})
            if is_vector and meta["_id"] == "J20003" and state["refuse"]:
                err = {"type": "mapper_parsing_exception", "reason": f"failed to parse field [{field}]"}
                items.append(bulk_item(op, meta["_index"], meta["_id"], 400, err))
            elif is_vector and state["rejected"] < 3:
                state["rejected"] += 1
                items.append(bulk_item(op, meta["_index"], meta["_id"], 429, rejected(meta["_index"])))
            else:
                items.append(fake.cluster.bulk_item(action, src))
        return bulk_response(items)

    fake.handler = flaky
    try:
        r = await embed_pending(pool, EMB, batch_size=50, backend=backend)
        assert r.processed == 7 and r.index_failed >= 1 and r.remaining == 1  # J20003, refused (each try counts)
        assert r.indexed == 6 + 7  # six vectors, then the seven documents still pending
        [index] = fake.cluster.indices
        docs = fake.cluster.indices[index]["docs"]
        assert sorted(i for i, d in docs.items() if field in d) == [f"J2000{i}" for i in range(1, 8) if i != 3]
        assert all(d.get("title") for d in docs.values()) and len(docs) == 7
        assert state["rejected"] == 3  # and the three were sent again
        async with pool.acquire() as conn:
            table = await store.embedding_table(conn, EMB.model)
            assert table and [i for i, _, _ in await store.pending_index_vectors(conn, table, 10)] == ["J20003"]
            assert (await store.status(conn)).index_pending == 1  # tern ariel status and GET /status say so

        state["refuse"] = False  # the next step (e.g. the activity's retry) pushes what is still pending
        r = await embed_pending(pool, EMB, batch_size=50, backend=backend)
        assert (r.processed, r.indexed, r.index_failed, r.remaining) == (0, 1, 0, 0)
        assert field in docs["J20003"]
    finally:
        await backend.close()


# --- defect 1: template clash ------------------------------------------------------------------------------


async def test_indexing_needs_no_index_template_so_overlapping_ones_cannot_refuse_it(
    fake: FakeOpenSearch, pool: asyncpg.Pool
) -> None:
    """A cluster where a test alias left its template: every ``PUT _index_template`` is refused with the 400
    OpenSearch gives overlapping patterns at one priority. Ingestion and a rebuild still work: each index is
    created with its settings and mappings in the create request, and nothing is put per batch."""

    def refuse_templates(call: Call):
        if call.path.startswith("/_index_template/"):
            name = call.path.rsplit("/", 1)[1]
            return template_overlap(
                name, f"{ALIAS}-*", "tern-ariel-test-1a2b3c4d-template", "tern-ariel-test-1a2b3c4d-*"
            )
        return None

    fake.handler = refuse_templates
    backend = OpenSearchBackend(fake.client(), ALIAS, replicas=0)
    try:
        await ingest_source(
            pool, "jlab", str(DATA / "jlab_sample_entries.json"), AdapterOptions(now=NOW), page_size=3, backend=backend
        )
        await embed_pending(pool, EMB, batch_size=3, backend=backend)
        [index] = fake.cluster.indices
        assert index == f"{ALIAS}-1" and fake.cluster.indices[index]["aliases"] == {ALIAS}
        settings = fake.cluster.indices[index]["settings"]["index"]
        assert settings["knn"] is True and settings["number_of_replicas"] == 0
        assert fake.cluster.indices[index]["mappings"]["properties"]["title"]["analyzer"] == "english"
        assert len(fake.cluster.indices[index]["docs"]) == 7
        assert not [c for c in fake.calls if c.path.startswith("/_index_template")]
        # one create for all of it (three pages, three vector batches), not one per batch
        assert [c.path for c in fake.calls if c.method == "PUT" and c.path == f"/{index}"] == [f"/{index}"]
        mapping_puts = [c for c in fake.calls if c.path.endswith("/_mapping")]
        assert len(mapping_puts) == 1  # the vector field's mapping, once per backend and index
        new = (await backend.reindex_from(pool)).index
        assert list(fake.cluster.indices) == [new] and len(fake.cluster.indices[new]["docs"]) == 7
        assert vector_field(EMB.model) in fake.cluster.indices[new]["mappings"]["properties"]
    finally:
        await backend.close()


# --- defect 5: client lifecycle and security --------------------------------------------------------------


async def test_searches_share_one_client_and_the_api_closes_it(fake: FakeOpenSearch, pool: asyncpg.Pool) -> None:
    """The agent's activity calls ``service.search`` once per question: every call reuses the process's client
    (one kept-alive connection), and the API's shutdown closes it."""
    settings = ariel_settings(ariel={"backend": "opensearch", "opensearch_url": fake.url})
    for _ in range(5):
        r = await search(pool, settings, "rf trip", embedder=None, llm=None)
        assert "does not exist yet" in r.notice  # the fake's cluster is empty
    peers = {c.peer for c in fake.calls}
    assert len(fake.calls) >= 5 and len(peers) == 1, peers
    assert shared_client_count() == 1
    app = create_app(settings, pool=pool, service_kwargs={"embedder": None, "llm": None})
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ariel") as api:
            assert (await api.get("/search", params={"q": "rf"})).status_code == 200
    assert shared_client_count() == 0
    assert {c.peer for c in fake.calls} == peers  # the API took the same client
    await search(pool, settings, "rf trip", embedder=None, llm=None)
    assert fake.calls[-1].peer not in peers  # it had been closed: a new client, a new connection
    await close_shared_clients()


async def test_basic_auth_and_tls_options_reach_the_client(
    fake: FakeOpenSearch, caplog: pytest.LogCaptureFixture, tmp_path
) -> None:
    settings = ariel_settings(
        ariel={
            "backend": "opensearch",
            "opensearch_url": fake.url,
            "opensearch_username": "tern",
            "opensearch_password": "s3cret",
        }
    )
    backend = OpenSearchBackend.from_settings(settings)
    try:
        await backend.keyword("rf")
    except SearchIndexMissing:
        pass
    [call] = [c for c in fake.calls if c.path.endswith("/_search")]
    assert call.headers["authorization"] == "Basic " + base64.b64encode(b"tern:s3cret").decode()
    await close_shared_clients()

    ca, cert, key = (tmp_path / n for n in ("ca.pem", "cert.pem", "key.pem"))
    for f in (ca, cert, key):
        f.write_text("-")
    insecure = ariel_settings(
        ariel={
            "backend": "opensearch",
            "opensearch_url": "https://search.example:9200",
            "opensearch_ca_certs": ca,
            "opensearch_client_cert": cert,
            "opensearch_client_key": key,
            "opensearch_verify_certs": False,
        }
    )
    with caplog.at_level(logging.WARNING, logger="tern.ariel.backends.opensearch_client"):
        opts = client_options(insecure)
    assert (opts["ca_certs"], opts["client_cert"], opts["client_key"]) == (str(ca), str(cert), str(key))
    assert opts["verify_certs"] is False and "verification is OFF" in caplog.text
    assert opts["connection_class"].__name__ == "AsyncHttpConnection"  # the one that calls a SigV4 signer
    with pytest.raises(ValueError, match="exclude each other"):
        ariel_settings(
            ariel={"opensearch_username": "u", "opensearch_password": "p", "opensearch_aws_region": "eu-west-1"}
        )


async def test_aws_sigv4_without_boto3_names_what_it_needs() -> None:
    """SigV4 uses opensearch-py's ``AWSV4SignerAsyncAuth``, which signs with botocore: without boto3 the setting
    is refused with the install command instead of failing on the first request."""
    if importlib.util.find_spec("boto3") is not None:
        pytest.skip("boto3 is installed: test_aws_sigv4_signs_each_request covers SigV4")
    settings = ariel_settings(
        ariel={"opensearch_url": "https://search.example:443", "opensearch_aws_region": "eu-west-1"}
    )
    with pytest.raises(ValueError, match="needs boto3"):
        client_options(settings)


async def test_aws_sigv4_signs_each_request(fake: FakeOpenSearch, monkeypatch: pytest.MonkeyPatch) -> None:
    """With boto3 (extra ``aws``) every request carries an AWS Signature Version 4 for the region and service,
    credentials from boto3's default chain (here the environment)."""
    if importlib.util.find_spec("boto3") is None:
        pytest.skip("AWS SigV4 needs boto3 (pip install -e '.[aws]'); not installed here")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    settings = ariel_settings(
        ariel={"backend": "opensearch", "opensearch_url": fake.url, "opensearch_aws_region": "eu-west-1"}
    )
    try:
        await OpenSearchBackend.from_settings(settings).ensure_index()
    finally:
        await close_shared_clients()
    assert fake.calls
    for call in fake.calls:
        auth = call.headers["authorization"]
        assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/") and "/eu-west-1/es/aws4_request" in auth
        assert "Signature=" in auth and "x-amz-date" in call.headers


# --- defect 4: summaries and keywords reach OpenSearch; re-ingestion keeps them; tern ariel reindex ----------


async def _documents_of_record(pool: asyncpg.Pool) -> dict[str, dict]:
    async with pool.acquire() as conn:
        return {e.entry_id: entry_document(e) for e in await store.iter_entry_batches(conn, 1000)}


async def test_documents_carry_enhancement_and_survive_reingestion(
    fake: FakeOpenSearch, pool: asyncpg.Pool, tmp_path
) -> None:
    backend = OpenSearchBackend(fake.client(), ALIAS)
    src = DATA / "jlab_sample_entries.json"
    try:
        await ingest_source(pool, "jlab", str(src), AdapterOptions(now=NOW), backend=backend)
        llm = FakeLLM('{"keywords": ["klystron", "linac"], "summary": "A klystron faulted."}')
        r = await summarize_pending(pool, llm, batch_size=50, backend=backend)
        assert (r.processed, r.indexed, r.remaining) == (7, 7, 0)
        [index] = fake.cluster.indices
        docs = fake.cluster.indices[index]["docs"]
        assert all(
            d["summary"] == "A klystron faulted." and d["keywords"] == ["klystron", "linac"] for d in docs.values()
        )
        # the source changes one title: PostgreSQL keeps the (now stale) summary and keywords, so must the index
        records = json.loads(src.read_text())
        records[1]["title"] = "Klystron SL-5A fault in South Linac"
        changed = tmp_path / "jlab.json"
        changed.write_text(json.dumps(records))
        before = len([c for c in fake.calls if c.path == "/_bulk"])
        await ingest_source(pool, "jlab", str(changed), AdapterOptions(now=NOW), backend=backend)
        bulks = [c for c in fake.calls if c.path == "/_bulk"][before:]
        assert [a["update"]["_id"] for c in bulks for a, _ in c.bulk_pairs()] == ["J20002"]  # only what changed
        assert docs["J20002"]["title"] == "Klystron SL-5A fault in South Linac"
        assert docs["J20002"]["summary"] == "A klystron faulted."
        assert docs == await _documents_of_record(pool)  # the same documents PostgreSQL searches
    finally:
        await backend.close()


async def test_reindex_command_rebuilds_from_the_store_of_record(
    fake: FakeOpenSearch, pool: asyncpg.Pool, pg_dsn: str
) -> None:
    await ingest_source(pool, "jlab", str(DATA / "jlab_sample_entries.json"), AdapterOptions(now=NOW))
    await embed_pending(pool, EMB, batch_size=50)
    fake.cluster.indices[f"{ALIAS}-1"] = {"aliases": {ALIAS}, "settings": {}, "mappings": {}, "docs": {"stale": {}}}
    killed = {"aliases": {f"{ALIAS}-building"}, "settings": {}, "mappings": {}, "docs": {}}
    fake.cluster.indices[f"{ALIAS}-1700000000000"] = killed  # left by a rebuild that was killed
    env = {
        "TERN_DATABASE__URL": pg_dsn,
        "TERN_ARIEL__BACKEND": "opensearch",
        "TERN_ARIEL__OPENSEARCH_URL": fake.url,
        "TERN_ARIEL__OPENSEARCH_INDEX": ALIAS,
    }
    code, out, err = await cli("reindex", "--json", env=env)
    assert code == 0, err
    result = json.loads(out)
    assert result["entries"] == 7 and result["vectors"] == {EMB.model: 7} and result["replaced"] == [f"{ALIAS}-1"]
    assert list(fake.cluster.indices) == [result["index"]] and fake.cluster.indices[result["index"]]["aliases"] == {
        ALIAS
    }
    docs = fake.cluster.indices[result["index"]]["docs"]
    assert {i: {k: v for k, v in d.items() if k != vector_field(EMB.model)} for i, d in docs.items()} == (
        await _documents_of_record(pool)
    )
    async with pool.acquire() as conn:
        assert await store.count_pending_index_entries(conn) == 0
    code, out, err = await cli("status", env=env)
    assert code == 0 and "OpenSearch: 0 documents or vectors not yet acknowledged" in out, out + err
    code, out, err = await cli("reindex", env={**env, "TERN_ARIEL__BACKEND": "postgres"})
    assert code == 2 and "needs none" in err


# --- defect 6: vector recall (the HNSW candidate queue) -------------------------------------------------------


@pytest.mark.parametrize(("ef_setting", "limit", "sent"), [(None, 5, 100), (None, 90, 180), (500, 5, 500)])
async def test_semantic_search_sends_ef_search(fake: FakeOpenSearch, ef_setting, limit: int, sent: int) -> None:
    field = vector_field(EMB.model)
    mapping = {f"{ALIAS}-1": {"mappings": {"properties": {field: {"type": "knn_vector", "dimension": 32}}}}}

    def cluster_with_vectors(call: Call):
        if call.path == f"/{ALIAS}/_mapping":
            return 200, mapping
        if call.path == f"/{ALIAS}/_count":
            return 200, {"count": 7, "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0}}
        if call.path == f"/{ALIAS}/_search":
            return 200, {"took": 1, "timed_out": False, "hits": {"total": {"value": 0, "relation": "eq"}, "hits": []}}
        return None

    fake.handler = cluster_with_vectors
    settings = ariel_settings(
        ariel={"backend": "opensearch", "opensearch_url": fake.url, "opensearch_ef_search": ef_setting}
    )
    backend = OpenSearchBackend.from_settings(settings)
    try:
        assert await backend.semantic([0.1] * 32, EMB.model, limit=limit) == []
    finally:
        await close_shared_clients()
    [call] = [c for c in fake.calls if c.path.endswith("/_search")]
    knn = call.body["query"]["knn"][field]
    assert knn["k"] == limit and knn["method_parameters"] == {"ef_search": sent}


# --- defect 7: races ------------------------------------------------------------------------------------------


async def test_two_first_ingestions_create_one_index(fake: FakeOpenSearch) -> None:
    a, b = OpenSearchBackend(fake.client(), ALIAS), OpenSearchBackend(fake.client(), ALIAS)
    try:
        got = await asyncio.gather(a.ensure_index(), b.ensure_index(), a.ensure_index(), b.ensure_index())
    finally:
        await a.close()
        await b.close()
    assert set(got) == {f"{ALIAS}-1"} and list(fake.cluster.indices) == [f"{ALIAS}-1"]


async def test_writes_during_a_rebuild_reach_the_new_index(fake: FakeOpenSearch, pool: asyncpg.Pool) -> None:
    """An ingestion that runs while ``reindex_from`` builds writes to the old and the new index, so the swap
    loses nothing; the new index is built without refreshes (``refresh_interval: -1``) and refreshed once."""
    rebuilder = OpenSearchBackend(fake.client(), ALIAS)
    writer = OpenSearchBackend(fake.client(), ALIAS)
    at_gate, gate = asyncio.Event(), asyncio.Event()

    async def hold_before_the_swap(call: Call):
        if call.method == "PUT" and call.path.endswith("/_settings"):  # copy done, refresh_interval reset next
            at_gate.set()
            await gate.wait()
        return None

    try:
        await ingest_source(
            pool, "jlab", str(DATA / "jlab_sample_entries.json"), AdapterOptions(now=NOW), backend=writer
        )
        [old] = fake.cluster.indices
        fake.handler = hold_before_the_swap
        rebuild = asyncio.create_task(rebuilder.reindex_from(pool))
        await asyncio.wait_for(at_gate.wait(), 30)
        [new] = [i for i in fake.cluster.indices if i != old]
        assert fake.cluster.indices[new]["settings"]["index"]["refresh_interval"] == "-1"
        assert fake.cluster.indices[new]["aliases"] == {f"{ALIAS}-building"}
        await ingest_source(
            pool, "ornl", str(DATA / "ornl_sample_entries.json"), AdapterOptions(now=NOW), backend=writer
        )
        gate.set()
        result = await asyncio.wait_for(rebuild, 30)
    finally:
        gate.set()
        await rebuilder.close()
        await writer.close()
    assert result.index == new and result.replaced == [old] and list(fake.cluster.indices) == [new]
    assert fake.cluster.indices[new]["aliases"] == {ALIAS}
    assert fake.cluster.indices[new]["settings"]["index"]["refresh_interval"] is None
    assert len([c for c in fake.calls if c.path == f"/{new}/_refresh"]) == 1
    assert len(fake.cluster.indices[new]["docs"]) == 7 + 6 and await _documents_of_record(pool) == {
        i: d for i, d in fake.cluster.indices[new]["docs"].items()
    }


# --- defect 8: replicas from the settings --------------------------------------------------------------------


async def test_replicas_come_from_the_settings(fake: FakeOpenSearch) -> None:
    settings = ariel_settings(ariel={"backend": "opensearch", "opensearch_url": fake.url, "opensearch_replicas": 2})
    try:
        index = await OpenSearchBackend.from_settings(settings).ensure_index()
    finally:
        await close_shared_clients()
    assert fake.cluster.indices[index]["settings"]["index"]["number_of_replicas"] == 2
    assert ariel_settings().ariel.opensearch_replicas == 0  # a single node stays green by default


async def test_tls_with_the_ca_bundle_and_a_client_certificate(tmp_path) -> None:
    """An HTTPS endpoint that requires a client certificate: the settings' CA bundle and client certificate
    get through; without them the connection is refused (verification on by default)."""
    import ssl

    from opensearchpy import ConnectionError as OSConnectionError

    files = make_tls_files(tmp_path)
    tls = {
        "ssl_certfile": str(files.server_cert),
        "ssl_keyfile": str(files.server_key),
        "ssl_ca_certs": str(files.ca),
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
    }
    async with fake_opensearch(**tls) as fake:
        assert fake.url.startswith("https://")
        base = {"backend": "opensearch", "opensearch_url": fake.url, "opensearch_timeout_s": 5}
        good = ariel_settings(
            ariel={
                **base,
                "opensearch_ca_certs": files.ca,
                "opensearch_client_cert": files.client_cert,
                "opensearch_client_key": files.client_key,
            }
        )
        try:
            assert await OpenSearchBackend.from_settings(good).ensure_index() == f"{ALIAS}-1"
        finally:
            await close_shared_clients()
        for bad in (ariel_settings(ariel=base), ariel_settings(ariel={**base, "opensearch_ca_certs": files.ca})):
            # no CA: the server is not trusted; CA but no client certificate: the server refuses the handshake
            client = OpenSearchBackend.from_settings(bad)
            try:
                with pytest.raises(OSConnectionError):
                    await client.client.info()
            finally:
                await close_shared_clients()
    assert [c.path for c in fake.calls if c.method == "PUT"] == [f"/{ALIAS}-1"]


# --- issue 27: edge cases a review against the 2.19 and 3.x documentation found -------------------------------


async def _entries(pool: asyncpg.Pool) -> list:
    await ingest_source(pool, "jlab", str(DATA / "jlab_sample_entries.json"), AdapterOptions(now=NOW))
    async with pool.acquire() as conn:
        return await store.iter_entry_batches(conn, 1000)


async def test_a_write_racing_a_rebuild_cleanup_does_not_recreate_the_deleted_index(
    fake: FakeOpenSearch, backend: OpenSearchBackend, pool: asyncpg.Pool
) -> None:
    """Issue 27, 1: a rebuild's index is deleted (its cleanup after an error) between a writer's alias lookup
    and its bulk request. Writes go through the aliases with ``require_alias=true``, so the items for the
    deleted index fail (the entries stay pending) instead of auto-creating it with dynamic mappings."""
    entries = await _entries(pool)
    old, new = f"{ALIAS}-1", f"{ALIAS}-1700000000000"
    fake.cluster.indices[old] = {"aliases": {ALIAS}, "settings": {}, "mappings": {}, "docs": {}}
    fake.cluster.indices[new] = {"aliases": {f"{ALIAS}-building"}, "settings": {}, "mappings": {}, "docs": {}}

    def rebuild_cleans_up_first(call: Call):
        if call.path == "/_bulk" and new in fake.cluster.indices:
            del fake.cluster.indices[new]  # the failed rebuild's DELETE lands before this bulk
        return None

    fake.handler = rebuild_cleans_up_first
    report = await backend.index_entries(entries)
    assert list(fake.cluster.indices) == [old], "the deleted index came back"
    assert report.indexed == [] and sorted(report.failed) == sorted(e.entry_id for e in entries)
    assert all("index_not_found_exception" in why for why in report.failed.values())
    assert len(fake.cluster.indices[old]["docs"]) == len(entries)  # the live index took them
    [bulk] = [c for c in fake.calls if c.path == "/_bulk"]
    assert bulk.params.get("require_alias") == "true"
    assert {a["update"]["_index"] for a, _ in bulk.bulk_pairs()} == {ALIAS, f"{ALIAS}-building"}

    fake.handler = lambda call: None  # the next push goes to the alias alone and succeeds
    report = await backend.index_entries(entries)
    assert not report.failed and list(fake.cluster.indices) == [old]


async def test_bulk_requests_stay_under_a_10_mib_content_limit(
    fake: FakeOpenSearch, backend: OpenSearchBackend
) -> None:
    """Issue 27, 2: a cluster that refuses bodies over 10 MiB with 413 (Amazon OpenSearch Service on small
    instances) and 400 vectors of 1,536 dimensions: the vectors go at float32 precision in requests of at most
    ``BULK_MAX_BYTES`` (5 MiB), and all are acknowledged."""
    import random

    import numpy as np

    fake.max_content_length = 10 * 1024 * 1024
    rng = random.Random(27)
    ids = [f"E{i:04d}" for i in range(400)]
    vectors = [[rng.gauss(0.0, 0.03) for _ in range(1536)] for _ in ids]
    report = await backend.index_embeddings("text-embedding-3-small", ids, vectors)
    assert not report.failed and sorted(report.indexed) == ids
    bulks = [c for c in fake.calls if c.path == "/_bulk"]
    assert len(bulks) > 1 and all(0 < c.size <= 8 * 1024 * 1024 for c in bulks), [c.size for c in bulks]
    field = vector_field("text-embedding-3-small")
    [docs] = [meta["docs"] for meta in fake.cluster.indices.values()]
    assert docs["E0007"][field] == [float(x) for x in np.asarray(vectors[7], dtype=np.float32).astype(str)]
    assert np.allclose(docs["E0007"][field], vectors[7], rtol=1e-6, atol=1e-9)


async def test_a_vector_indexed_before_its_text_is_not_a_blank_hit(
    fake: FakeOpenSearch, backend: OpenSearchBackend, pool: asyncpg.Pool
) -> None:
    """Issue 27, 3: a vector upserted before its entry's text makes a document with only the vector; k-NN
    search and browse skip it (``HAS_TEXT``) until the text arrives."""
    entries = await _entries(pool)
    assert not (await backend.index_entries(entries)).failed
    ids = [e.entry_id for e in entries] + ["J29999"]  # J29999's text is not indexed yet
    vectors = await EMB.embed([e.title for e in entries] + ["RF trip"])
    assert not (await backend.index_embeddings(EMB.model, ids, vectors)).failed
    hits = await backend.semantic(vectors[0], EMB.model, limit=50, min_similarity=-1.0)
    assert hits is not None and sorted(h.entry_id for h in hits) == sorted(e.entry_id for e in entries)
    assert all(h.title and h.author and h.timestamp for h in hits)
    browsed = await backend.keyword("", limit=50)
    assert sorted(h.entry_id for h in browsed) == sorted(e.entry_id for e in entries)
    assert all(h.title and h.timestamp for h in browsed)


async def test_a_very_long_entry_does_not_fail_the_search(
    fake: FakeOpenSearch, backend: OpenSearchBackend, pool: asyncpg.Pool
) -> None:
    """Issue 27, 4: an entry whose ``raw_text`` is over ``index.highlight.max_analyzed_offset`` (1,000,000
    characters) is highlighted in its first million characters (``max_analyzer_offset``) instead of failing
    the search with 400."""
    [first, *_] = await _entries(pool)
    long_entry = first.model_copy(update={"raw_text": "beam loss monitor reading. " * 40_000})
    assert len(long_entry.raw_text) > 1_000_000
    assert not (await backend.index_entries([long_entry])).failed
    hits = await backend.keyword("beam loss")
    assert [h.entry_id for h in hits] == [first.entry_id]
    [search_call, *_] = [c for c in fake.calls if c.path.endswith("/_search")]
    assert search_call.body["highlight"]["max_analyzer_offset"] == 1_000_000


async def test_serverless_aoss_is_refused_with_the_reason() -> None:
    """Issue 27, 5: OpenSearch Serverless vector collections do not take Tern's ``_id``-keyed upserts (nor
    its index settings), so ``aoss`` is refused when the client is built instead of failing on every write."""
    settings = ariel_settings(
        ariel={
            "opensearch_url": "https://abc.eu-west-1.aoss.amazonaws.com",
            "opensearch_aws_region": "eu-west-1",
            "opensearch_aws_service": "aoss",
        }
    )
    with pytest.raises(ValueError, match=r"Serverless.*not supported"):
        client_options(settings)


CREDENTIAL_PROCESS = """
import json, pathlib, sys, time
started, gate = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
started.touch()
deadline = time.monotonic() + 20  # the gate opens only while the test's event loop runs
while not gate.exists() and time.monotonic() < deadline:
    time.sleep(0.05)
key = "AKIDLOOPRAN" if gate.exists() else "AKIDLOOPBLOCKED"
print(json.dumps({"Version": 1, "AccessKeyId": key, "SecretAccessKey": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}))
"""


@pytest.mark.parametrize("first_call", ["ensure_index", "keyword"])
async def test_aws_credentials_are_resolved_off_the_event_loop(
    fake: FakeOpenSearch, monkeypatch: pytest.MonkeyPatch, tmp_path, first_call: str
) -> None:
    """Issue 27, 5: boto3's credential chain can block (instance metadata, a credential process); it runs in a
    worker thread, so the event loop goes on meanwhile. Here a real ``credential_process`` waits until a
    coroutine on the test's loop opens a gate: on the loop, it would wait in vain and hand out the other key."""
    import sys

    if importlib.util.find_spec("boto3") is None:
        pytest.skip("AWS SigV4 needs boto3 (pip install -e '.[aws]'); not installed here")
    script, started, gate = tmp_path / "creds.py", tmp_path / "started", tmp_path / "gate"
    script.write_text(CREDENTIAL_PROCESS)
    config = tmp_path / "aws-config"
    config.write_text(f"[default]\ncredential_process = {sys.executable} {script} {started} {gate}\n")
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    settings = ariel_settings(
        ariel={"backend": "opensearch", "opensearch_url": fake.url, "opensearch_aws_region": "eu-west-1"}
    )

    async def open_the_gate() -> None:
        while not started.exists():  # noqa: ASYNC110 - another process creates it: no Event to await
            await asyncio.sleep(0.02)
        gate.touch()

    opener = asyncio.create_task(open_the_gate())
    try:
        backend = OpenSearchBackend.from_settings(settings)
        if first_call == "keyword":  # a search is the first request of an agent's activity
            with pytest.raises(SearchIndexMissing):
                await backend.keyword("rf trip")
        else:
            await backend.ensure_index()
        await asyncio.wait_for(opener, 30)
    finally:
        opener.cancel()
        await close_shared_clients()
    assert fake.calls
    assert all("Credential=AKIDLOOPRAN/" in c.headers["authorization"] for c in fake.calls)


async def test_a_semantic_search_with_hits_is_one_request(
    fake: FakeOpenSearch, backend: OpenSearchBackend, pool: asyncpg.Pool
) -> None:
    """Issue 27, 5: the k-NN query carries ``ignore_unmapped`` (k-NN 2.11 or later: an unmapped vector field
    matches nothing instead of failing), so a search that finds hits is one request; only an empty answer costs
    a count, which tells "no document carries this model's vector" (None) from "nothing matched" ([])."""
    entries = await _entries(pool)
    await backend.index_entries(entries)
    vectors = await EMB.embed([e.title for e in entries])
    await backend.index_embeddings(EMB.model, [e.entry_id for e in entries], vectors)
    before = len(fake.calls)
    hits = await backend.semantic(vectors[0], EMB.model, limit=3, min_similarity=-1.0)
    assert hits and len(hits) == 3
    assert [c.path for c in fake.calls[before:]] == [f"/{ALIAS}/_search"]
    [call] = fake.calls[before:]
    assert call.body["query"]["knn"][vector_field(EMB.model)]["ignore_unmapped"] is True
    before = len(fake.calls)
    assert await backend.semantic(vectors[0], "another-model", limit=3) is None  # no vector of that model
    assert [c.path for c in fake.calls[before:]] == [f"/{ALIAS}/_search", f"/{ALIAS}/_count"]


async def test_the_vector_mapping_is_put_once_per_process_and_again_when_the_index_lost_it(
    fake: FakeOpenSearch, pool: asyncpg.Pool
) -> None:
    """Issue 27, 5: every activity makes its own backend; the vector field's mapping is put once per process
    and index, not once per backend. Indices are created with ``dynamic: strict``, so an index that lost the
    field (deleted and made again by hand) refuses the vector (``strict_dynamic_mapping_exception``) instead of
    storing it unsearchable, and the next push puts the mapping again."""
    settings = ariel_settings(ariel={"backend": "opensearch", "opensearch_url": fake.url})
    ids = ["J20001", "J20002"]
    vectors = await EMB.embed(["RF trip", "vacuum leak"])
    field = vector_field(EMB.model)
    try:
        for _ in range(3):  # three activities
            report = await OpenSearchBackend.from_settings(settings).index_embeddings(EMB.model, ids, vectors)
            assert sorted(report.indexed) == ids
        assert len([c for c in fake.calls if c.path.endswith("/_mapping") and c.method == "PUT"]) == 1
        [index] = fake.cluster.indices
        assert fake.cluster.indices[index]["mappings"]["dynamic"] == "strict"

        del fake.cluster.indices[index]  # deleted by hand; the next ingestion makes it again, without the field
        report = await OpenSearchBackend.from_settings(settings).index_embeddings(EMB.model, ids, vectors)
        assert report.indexed == [] and all("strict_dynamic_mapping_exception" in w for w in report.failed.values())
        report = await OpenSearchBackend.from_settings(settings).index_embeddings(EMB.model, ids, vectors)
        assert sorted(report.indexed) == ids and field in fake.cluster.indices[index]["mappings"]["properties"]
        assert all(field in d for d in fake.cluster.indices[index]["docs"].values())
    finally:
        await close_shared_clients()
