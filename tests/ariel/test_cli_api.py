"""The `tern ariel` CLI (as a real subprocess) and the HTTP API (httpx ASGI transport), on real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import asyncpg
import httpx
import pytest

from tern.ariel.api import create_app
from tern.ariel.embeddings import HashingTestEmbedder
from tern.ariel.ingest import embed_pending
from tests.ariel.conftest import DATA, SAMPLE_ENTRIES, ariel_settings

ROOT = Path(__file__).resolve().parents[2]


async def cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "starters.ariel_cli",
        *args,
        cwd=ROOT,
        env={
            **os.environ,
            "TERN_CONFIG": "/nonexistent.toml",
            "TERN_ARIEL__EMBEDDING_PROVIDER": "none",
            "TERN_LLM__PROVIDER": "none",
            "TERN_ARIEL__BACKEND": "postgres",
            "COLUMNS": "200",
            **env,
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.mark.temporal
async def test_cli_ingests_through_the_workflow_then_searches(worker_env, temporal_env, pg_dsn: str) -> None:
    _client, settings, _pool = worker_env
    env = {
        "TERN_DATABASE__URL": pg_dsn,
        "TERN_TEMPORAL__TASK_QUEUE": settings.temporal.task_queue,
        "TERN_TEMPORAL__ADDRESS": temporal_env.client.service_client.config.target_host,
    }
    code, out, err = await cli("ingest", str(DATA / "jlab_sample_entries.json"), "--adapter", "jlab", "--json", env=env)
    assert code == 0, err
    result = json.loads(out)
    assert result["counts"]["added"] == 7 and result["run_key"].startswith("ariel-ingest-jlab-")
    code, out, err = await cli("ingest", str(DATA / "demo_logbook.json"), "-a", "demo", env=env)
    assert code == 0, err
    assert "28 added" in out and "ingesting" not in out  # the progress bar goes to stderr

    code, out, err = await cli("search", "klystron fault", "--json", "--limit", "3", env=env)
    assert code == 0, err
    found = json.loads(out)
    assert (found["mode"], found["mode_used"], found["answer"]) == ("keyword", "keyword", "")
    hits = found["hits"]
    assert hits[0]["entry_id"] == "J20002"
    assert set(hits[0]) >= {"entry_id", "score", "title", "timestamp", "highlights"}
    code, out, err = await cli("search", "vacuum", "--mode", "semantic", env=env)
    assert code == 0 and "Semantic search unavailable" in out and "[#" in out
    code, out, err = await cli("search", "orbit", "--mode", "rag", "--json", env=env)
    rag = json.loads(out)
    assert code == 0 and rag["hits"] and rag["mode_used"] != "rag" and "No LLM is configured" in rag["notice"]
    code, out, err = await cli("status", "--json", env=env)
    assert code == 0 and json.loads(out)["by_source"] == {"demo": 28, "jlab": 7}
    code, out, err = await cli("status", env=env)
    assert code == 0 and "35 entries" in out and "completed" in out
    assert "…" not in out  # a pipe is not a terminal: no cell is cut to fit 80 columns


async def test_cli_direct_ingest_and_bad_input(pg_dsn: str, tmp_path: Path) -> None:
    env = {"TERN_DATABASE__URL": pg_dsn}
    code, out, err = await cli(
        "ingest", str(DATA / "ornl_sample_entries.json"), "-a", "ornl", "--direct", "--json", env=env
    )
    assert code == 0, err
    assert json.loads(out)["counts"]["added"] == 6
    cases = [
        (("ingest", "x.json", "--adapter", "mantis"), "unknown adapter 'mantis'"),
        (("ingest", "x.json", "--adapter", "elog"), "the elog adapter only publishes logbook entries"),
        (("ingest", str(tmp_path / "missing.json"), "-a", "jlab"), "not found"),
        (("ingest", "file.jsonl", "-a", "als-http"), "needs an http(s) URL"),
        (("search", "beam", "--mode", "fuzzy"), "unknown mode 'fuzzy'"),
        (("search", "beam", "--limit", "0"), "--limit must be between 1 and 100"),
        (("search", "beam date:yesterday"), "date: expects a date"),
        (("search", "beam", "--since", "last week"), "--since must be an ISO 8601"),
        (("watch", str(DATA / "ornl_sample_entries.json"), "-a", "ornl", "--every", "5"), "--every must be"),
    ]
    for args, message in cases:
        code, out, err = await cli(*args, env=env)
        assert code == 2, (args, out, err)
        assert message in " ".join(err.split()), (args, err)


@pytest.fixture
async def api(loaded_pool: asyncpg.Pool):
    emb = HashingTestEmbedder()
    await embed_pending(loaded_pool, emb, batch_size=200)
    app = create_app(ariel_settings(), pool=loaded_pool, service_kwargs={"embedder": emb, "llm": None})
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ariel") as client:
            yield client


async def test_http_api(api: httpx.AsyncClient) -> None:
    r = await api.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    assert r.json()["embedding"] | {"provider": None} == {
        "provider": None,
        "loaded": True,
        "model": "test-hashing-64",
        "error": "",
    }
    r = await api.get("/search", params={"q": "klystron", "limit": 3})
    assert r.status_code == 200 and r.json()["hits"][0]["entry_id"] == "J20002"
    for mode in ("semantic", "hybrid", "rag"):
        r = await api.get("/search", params={"q": "septum timing injection", "mode": mode, "limit": 5})
        body = r.json()
        assert r.status_code == 200 and body["mode"] == mode and body["hits"], body
    assert body["mode_used"] == "hybrid" and "No LLM" in body["notice"]
    r = await api.post("/search", json={"query": "beam", "filters": {"author": "oper_smith"}, "limit": 20})
    assert r.status_code == 200 and {h["author"] for h in r.json()["hits"]} == {"oper_smith"}
    r = await api.get("/search", params={"q": "beam", "tag": ["rf"], "limit": 20})
    assert r.status_code == 200 and all(h["entry_id"].startswith("DEMO") for h in r.json()["hits"])
    r = await api.get("/entries/E001")
    assert r.status_code == 200 and r.json()["title"] == "RF Cavity Trip in Sector 3"
    assert (await api.get("/entries/NOPE")).status_code == 404
    r = await api.get("/search", params={"q": "beam date:soon"})
    assert r.status_code == 400 and "date: expects a date" in r.json()["detail"]
    assert (await api.get("/search", params={"q": "beam", "mode": "fuzzy"})).status_code == 422
    r = await api.get("/status")
    assert r.status_code == 200 and r.json()["entries"] == SAMPLE_ENTRIES


async def test_cli_search_goes_through_the_api_when_one_is_configured(loaded_pool: asyncpg.Pool, pg_dsn: str) -> None:
    """With TERN_ARIEL__API_URL the CLI loads no model: the hits come ranked by the API's embedder (a hashing
    embedder the CLI could not have), and the CLI process never imports the embedding runtime. An API that does
    not answer gives a note and the CLI's own search."""
    import uvicorn

    from tern.embedded.net import free_port

    emb = HashingTestEmbedder()
    await embed_pending(loaded_pool, emb, batch_size=200)
    app = create_app(ariel_settings(), pool=loaded_pool, service_kwargs={"embedder": emb, "llm": None})
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:  # noqa: ASYNC110 (uvicorn sets a flag, it has no event)
            await asyncio.sleep(0.05)
        env = {
            "TERN_DATABASE__URL": pg_dsn,
            "TERN_ARIEL__EMBEDDING_PROVIDER": "onnx",
            "TERN_ARIEL__API_URL": f"http://127.0.0.1:{port}",
            "PYTHONPROFILEIMPORTTIME": "1",
        }
        code, out, err = await cli("search", "septum timing injection", "--mode", "hybrid", "--json", env=env)
        assert code == 0, err
        found = json.loads(out)
        assert (found["mode_used"], found["embedding_model"]) == ("hybrid", emb.model) and found["hits"]
        imported = {line.split("|")[-1].strip() for line in err.splitlines() if line.startswith("import time:")}
        assert "starters.ariel_cli" in imported or "tern.config" in imported  # the profile is there
        assert imported & {"onnxruntime", "tokenizers", "tern.ariel.service", "asyncpg"} == set()
        code, out, err = await cli("search", "beam date:soon", "--json", env=env)
        assert code == 2 and "date: expects a date" in err
    finally:
        server.should_exit = True
        await task
    env = {"TERN_DATABASE__URL": pg_dsn, "TERN_ARIEL__API_URL": f"http://127.0.0.1:{port}"}
    code, out, err = await cli("search", "septum timing injection", "--mode", "hybrid", "--json", env=env)
    assert code == 0, err
    assert "does not answer" in err and f"127.0.0.1:{port}" in err
    assert json.loads(out)["mode_used"] == "keyword"  # searched here, without an embedding provider


async def test_health_says_why_the_model_did_not_load(loaded_pool: asyncpg.Pool) -> None:
    """A model that cannot load leaves the API up (searches fall back to keyword), and /health says why."""
    settings = ariel_settings(ariel={"embedding_provider": "onnx", "embedding_model": "no-such-model-v9"})
    app = create_app(settings, pool=loaded_pool, warm=True)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ariel") as client:
            health = (await client.get("/health")).json()
            found = (await client.get("/search", params={"q": "klystron", "mode": "hybrid"})).json()
    assert health["status"] == "ok" and health["embedding"]["loaded"] is False
    assert health["embedding"]["provider"] == "onnx" and "TERN_ARIEL__EMBEDDING_MODEL" in health["embedding"]["error"]
    assert found["mode_used"] == "keyword" and found["hits"] and "TERN_ARIEL__EMBEDDING_MODEL" in found["notice"]


@contextmanager
def running_default_stack(data_dir: Path, dsn: str) -> Iterator[tuple[int, list[str]]]:
    """A stand-in for a stack left running by ``tern up`` (``./dev demo``) in ``data_dir``, serving ``dsn``: the
    PID file and the ARIEL API record a running stack leaves, and a live HTTP server on the recorded port that
    answers every search with an entry no test database holds (``STACK-ONLY``). Yields the port and the list of
    request paths the server received."""
    from tern.embedded.ariel_api import PROCESS_MARKER, running_record, write_record
    from tern.models import LogbookHit, SearchResponse
    from tests.test_embedded_pids import child

    wrong = SearchResponse(
        query="klystron fault", mode="keyword", mode_used="keyword", hits=[LogbookHit(entry_id="STACK-ONLY", title="x")]
    ).model_dump_json()
    received: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(self.path)
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = wrong.encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # bound and listening before the thread starts
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    # a live process that shows what the stack's API process shows (its PID is checked: not a zombie, not a
    # reused PID; tern.embedded.pids)
    try:
        with child(PROCESS_MARKER) as api:  # yielded once exec'd: the marker shows
            (data_dir / "run").mkdir(parents=True, exist_ok=True)
            (data_dir / "run" / "ariel.pid").write_text(str(api.pid))
            write_record(data_dir, pid=api.pid, port=port, dsn=dsn)
            assert running_record(data_dir) is not None  # the stand-in counts as a running stack
            yield port, received
    finally:
        server.shutdown()
        server.server_close()


async def test_a_running_stack_for_another_database_changes_nothing(
    loaded_pool: asyncpg.Pool, pg_dsn: str, tmp_path: Path
) -> None:
    """Issue 28: with a stack left running (PID file, API record, its port answering) the CLI searches the
    database its settings name, and says so in --json, unless the stack serves that same database (the session's
    own isolation from ~/.tern is tests/test_isolation.py's)."""
    stack_dsn = pg_dsn.rsplit("/", 1)[0] + "/tern"  # the demo stack's database on the same server
    with running_default_stack(tmp_path, stack_dsn) as (port, received):
        # the stack's API port is also the configured one, as with the defaults: the old check (PID file and
        # port) would have taken it
        env = {"TERN_DATA_DIR": str(tmp_path), "TERN_DATABASE__URL": pg_dsn, "TERN_ARIEL__API_PORT": str(port)}
        code, out, err = await cli("search", "klystron fault", "--json", "--limit", "3", env=env)
        assert code == 0, err
        found = json.loads(out)
        assert found["hits"][0]["entry_id"] == "J20002" and received == []  # not the stack's STACK-ONLY
        assert found["answered_by"] == "database"
        assert f"127.0.0.1:{port}" in err and "searching here" in err  # the note says why the stack's API was not used

        # the same database as the stack's (spelled with localhost): its API answers, and --json says it did
        same = {**env, "TERN_DATABASE__URL": stack_dsn.replace("127.0.0.1", "localhost")}
        code, out, err = await cli("search", "klystron fault", "--json", env=same)
        assert code == 0, err
        found = json.loads(out)
        assert found["answered_by"] == f"api http://127.0.0.1:{port}"
        assert [h["entry_id"] for h in found["hits"]] == ["STACK-ONLY"] and received == ["/search"]

        # a configured API wins over the stack's, whatever database the stack serves
        code, out, err = await cli(
            "search", "klystron fault", "--json", env={**env, "TERN_ARIEL__API_URL": f"http://127.0.0.1:{port}/"}
        )
        assert code == 0, err
        assert json.loads(out)["answered_by"] == f"api http://127.0.0.1:{port}/" and len(received) == 2
