"""``tern ariel``: ingest logbooks, search them, show status, watch a source on a schedule, serve the HTTP API.

Mounted by the main CLI with ``app.add_typer(ariel_app, name="ariel")``; also runs alone as
``python -m starters.ariel_cli``. The database is ``TernSettings().dsn``; ingestion runs as a
``LogbookIngestionWorkflow`` on the Tern worker (``--direct`` ingests in this process instead).
Bad input exits with status 2 and a message naming what is wrong.
The Temporal client, the ingestion workflow, rich progress bars and tables are imported inside the commands
that use them, so ``tern --help`` does not load them (issue 17).
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from starters.common import console, fail, hard_exit, load_settings
from workflows.queues import long_queue

if TYPE_CHECKING:
    from rich.progress import Progress
    from temporalio.client import Client

    from tern.config import TernSettings
    from tern.models import SearchResponse
    from tern.models.ariel import IngestionProgress, IngestionRequest, IngestionResult, ReembedProgress, ReembedResult

app = typer.Typer(
    help="ARIEL logbook search: ingest, search, status, watch, serve, reembed, reindex.", no_args_is_help=True
)
err = console(stderr=True)
out = console()

# The names registered by tern.ariel.adapters, in its order. Spelled out because importing the registry (every
# adapter, the ARIEL models, httpx) took ~0.2 s of every `tern` start-up for the --adapter help text (issue 17);
# tests/test_cli_startup.py checks that this equals tern.ariel.adapters.adapter_names().
ADAPTERS = ("als", "als-http", "jlab", "ornl", "generic", "demo", "elog")
PUBLISH_ONLY = ("elog",)  # adapters that publish entries (logbook_publish steps) and read none
MODES = ("keyword", "semantic", "hybrid", "rag")


def _parse_time(name: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        fail(f"{name} must be an ISO 8601 date or time, got {value!r}")
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _parse_every(value: str) -> timedelta:
    from tern.models.limits import MAX_WATCH_INTERVAL_S, MIN_WATCH_INTERVAL_S

    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        n, unit = float(value[:-1]), value[-1]
        seconds = n * units[unit]
    except (ValueError, KeyError, IndexError):
        fail(f"--every must be a number with a unit s, m, h or d (e.g. 1h), got {value!r}")
    if not math.isfinite(seconds) or not MIN_WATCH_INTERVAL_S <= seconds <= MAX_WATCH_INTERVAL_S:
        fail(
            f"--every must be between {MIN_WATCH_INTERVAL_S:g} s and {MAX_WATCH_INTERVAL_S / 86400:g} days, "
            f"got {value!r}"
        )
    return timedelta(seconds=seconds)


def _check_source(adapter: str, source: str) -> str:
    if adapter not in ADAPTERS:
        fail(f"unknown adapter {adapter!r}; choose one of: {', '.join(ADAPTERS)}")
    if adapter in PUBLISH_ONLY:
        fail(f"the {adapter} adapter only publishes logbook entries (TERN_LOGBOOK__PUBLISH_TARGET); it cannot ingest")
    if adapter == "als-http":
        if not source.startswith(("http://", "https://")):
            fail(f"the als-http adapter needs an http(s) URL, got {source!r}")
        return source
    path = Path(source).expanduser()
    if not path.is_file():
        fail(f"logbook source not found: {path}")
    return str(path.resolve())


async def _connect(settings: TernSettings) -> Client:
    from worker.connection import TemporalUnreachable, connect

    try:
        return await connect(settings)
    except TemporalUnreachable as exc:
        fail(str(exc), code=1)


async def _pool(settings: TernSettings) -> Any:
    from tern.db import DatabaseError, create_pool

    try:
        return await create_pool(settings.dsn)
    except DatabaseError as exc:
        fail(str(exc), code=1)


def _progress_bar() -> Progress:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )


def _print_ingest(result: IngestionResult, as_json: bool) -> None:
    if as_json:
        print(result.model_dump_json(indent=2))
        return
    c = result.counts
    out.print(
        f"run {result.run_key}: {c.added} added, {c.updated} updated, {c.unchanged} unchanged, "
        f"{c.failed} failed; {result.embedded} embedded, {result.summarized} summarized"
    )
    for b in result.bad_records[:10]:
        out.print(f"  bad record {b.position}: {b.reason}", markup=False, highlight=False)
    for n in result.notices:
        out.print(f"  note: {n}")


async def _ingest_via_workflow(settings: TernSettings, req: IngestionRequest, show: bool) -> IngestionResult:
    import asyncio

    from starters.priorities import background_priority
    from workflows.logbook_ingestion import LogbookIngestionWorkflow

    client = await _connect(settings)
    wf_id = f"ariel-ingest-{req.adapter}-{uuid.uuid4().hex[:8]}"
    handle = await client.start_workflow(
        LogbookIngestionWorkflow.run,
        req,
        id=wf_id,
        task_queue=long_queue(settings.temporal.task_queue),  # its own slots (workflows.queues)
        priority=background_priority(f"ingest:{req.adapter}:{req.source}"),
    )
    if show:
        err.print(f"workflow {wf_id}: {settings.run_url(wf_id)}")
    result_task = asyncio.ensure_future(handle.result())
    with _progress_bar() as bar:
        task = bar.add_task("ingesting", total=None, info="", visible=show)
        while not result_task.done():
            try:
                p: IngestionProgress = await handle.query(LogbookIngestionWorkflow.progress)
                bar.update(
                    task,
                    total=p.total,
                    completed=p.counts.seen,
                    description=p.phase,
                    info=f"+{p.counts.added} ~{p.counts.updated} ={p.counts.unchanged} !{p.counts.failed}"
                    f" emb {p.embedded}",
                )
            except Exception:
                pass
            await asyncio.wait([result_task], timeout=0.3)
    try:
        return result_task.result()
    except Exception as exc:
        cause = getattr(exc, "cause", None)
        fail(f"ingestion failed: {getattr(cause, 'cause', None) or cause or exc}", code=1)


async def _ingest_direct(settings: TernSettings, req: IngestionRequest, show: bool) -> IngestionResult:
    from tern.ariel.adapters import AdapterError, SourceUnavailable
    from tern.ariel.ingest import adapter_options, embed_all, ingest_source
    from tern.ariel.service import configured_embedder, make_backend
    from tern.models.ariel import IngestionResult

    pool = await _pool(settings)
    made = make_backend(settings, pool)
    backend = made if made.separate_index else None  # OpenSearch is fed from PostgreSQL as it goes
    try:
        opts = adapter_options(settings, id_prefix=req.id_prefix, since=req.since, until=req.until)
        with _progress_bar() as bar:
            task = bar.add_task("reading", total=None, info="", visible=show)

            def progress(page: Any, totals: Any) -> None:
                if page.total is not None:
                    bar.update(task, total=page.total)
                bar.update(task, completed=totals.seen, info=f"+{totals.added} ={totals.unchanged} !{totals.failed}")

            try:
                counts, bad = await ingest_source(
                    pool, req.adapter, req.source, opts, req.page_size, backend=backend, progress=progress
                )
            except (AdapterError, SourceUnavailable) as exc:
                bar.live.transient = True  # the error is the one line printed, not a bar stopped at 0
                fail(str(exc), code=2 if isinstance(exc, AdapterError) else 1)
            embedded, notices = 0, []
            if req.enhance:
                emb = await configured_embedder(settings)
                if emb is None:
                    notices.append("embeddings: no embedding provider is configured")
                else:
                    bar.update(task, description="embedding")
                    embedded = await embed_all(pool, emb, backend=backend)
        return IngestionResult(
            run_key="direct", counts=counts, bad_records=bad[:50], embedded=embedded, notices=notices
        )
    finally:
        if backend is not None:
            from tern.ariel.backends.opensearch_client import close_shared_clients

            await close_shared_clients()
        await pool.close()


@app.command()
def ingest(
    source: Annotated[str, typer.Argument(help="A logbook file, or for als-http the service URL.")],
    adapter: Annotated[str, typer.Option("--adapter", "-a", help=f"One of: {', '.join(ADAPTERS)}.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    direct: Annotated[bool, typer.Option("--direct", help="Ingest in this process, without Temporal.")] = False,
    page_size: Annotated[int, typer.Option(min=1, max=10_000, help="Records per page.")] = 500,
    enhance: Annotated[bool, typer.Option("--enhance/--no-enhance", help="Compute embeddings/summaries.")] = True,
    since: Annotated[str | None, typer.Option(help="als-http: start time (ISO 8601, UTC).")] = None,
    until: Annotated[str | None, typer.Option(help="als-http: end time (ISO 8601, UTC).")] = None,
    id_prefix: Annotated[str, typer.Option(help="Prefix for every entry id.")] = "",
) -> None:
    """Ingest a logbook source (through LogbookIngestionWorkflow unless --direct)."""
    import asyncio

    from tern.models.ariel import IngestionRequest

    settings = load_settings()
    req = IngestionRequest(
        adapter=adapter,
        source=_check_source(adapter, source),
        page_size=page_size,
        enhance=enhance,
        since=_parse_time("--since", since),
        until=_parse_time("--until", until),
        id_prefix=id_prefix,
        pages_per_run=settings.ariel.pages_per_run,
    )
    show = not as_json
    if direct:
        _print_ingest(asyncio.run(_ingest_direct(settings, req, show)), as_json)
        return
    try:
        _print_ingest(asyncio.run(_ingest_via_workflow(settings, req, show)), as_json)
    except typer.Exit as exc:
        hard_exit(exc.exit_code)
    hard_exit(0)


PROVIDERS = ("onnx", "sentence-transformers", "openai")  # tern.models.ariel.EmbeddingProviderName


def reembed_workflow_id(provider: str, model: str) -> str:
    """One workflow id per (provider, model): re-running the command while a re-embed runs attaches to it."""
    import re

    slug = re.sub(r"[^a-z0-9]+", "-", model.lower()).strip("-")[:40]
    return f"ariel-reembed-{provider}-{slug}-{hashlib.sha1(model.encode()).hexdigest()[:8]}"


async def _reembed(settings: TernSettings, provider: str, model: str, batch_size: int, show: bool) -> ReembedResult:
    import asyncio

    from temporalio.client import WorkflowFailureError
    from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

    from starters.priorities import background_priority
    from tern.models.ariel import ReembedRequest
    from workflows.logbook_reembed import LogbookReembedWorkflow

    client = await _connect(settings)
    wf_id = reembed_workflow_id(provider, model)
    req = ReembedRequest(provider=provider, model=model, batch_size=batch_size)
    handle = await client.start_workflow(
        LogbookReembedWorkflow.run,
        req,
        id=wf_id,
        task_queue=long_queue(settings.temporal.task_queue),  # its own slots (workflows.queues)
        priority=background_priority(f"reembed:{provider}:{model}"),
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    )
    if show:
        err.print(f"workflow {wf_id}: {settings.run_url(wf_id)}")
    result_task = asyncio.ensure_future(handle.result())
    with _progress_bar() as bar:
        task = bar.add_task("re-embedding", total=None, info="", visible=show)
        while not result_task.done():
            try:
                p: ReembedProgress = await handle.query(LogbookReembedWorkflow.progress)
                done = None if p.total is None or p.remaining is None else p.total - p.remaining
                bar.update(task, total=p.total, completed=done or 0, description=p.phase, info=p.stored_as)
            except Exception:
                pass
            await asyncio.wait([result_task], timeout=0.3)
    try:
        return result_task.result()
    except WorkflowFailureError as exc:
        cause = exc.cause
        fail(f"re-embedding failed: {getattr(cause, 'cause', None) or cause or exc}", code=1)


@app.command()
def reembed(
    model: Annotated[str, typer.Option("--model", help="Model name, as TERN_ARIEL__EMBEDDING_MODEL.")],
    provider: Annotated[
        str, typer.Option("--provider", help=f"One of: {', '.join(PROVIDERS)} (as TERN_ARIEL__EMBEDDING_PROVIDER).")
    ] = "onnx",
    batch_size: Annotated[int, typer.Option(min=1, max=4096, help="Entries per embedding call.")] = 64,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Embed every stored entry with another model (LogbookReembedWorkflow on the worker; resumable: entries
    that already have a vector of the model are skipped). Search uses the configured model's vectors only:
    set TERN_ARIEL__EMBEDDING_PROVIDER and TERN_ARIEL__EMBEDDING_MODEL to the new ones when it is done."""
    import asyncio

    if provider not in PROVIDERS:
        fail(f"unknown provider {provider!r}; choose one of: {', '.join(PROVIDERS)}")
    if not model.strip():
        fail("--model is empty")
    settings = load_settings()
    try:
        result = asyncio.run(_reembed(settings, provider, model.strip(), batch_size, not as_json))
    except typer.Exit as exc:
        hard_exit(exc.exit_code)
    if as_json:
        print(result.model_dump_json(indent=2))
    else:
        out.print(
            f"{result.embedded} entries embedded with {result.provider}/{result.model} (stored as "
            f"{result.stored_as}); {result.total - result.remaining} of {result.total} entries have its vectors",
            markup=False,
            highlight=False,
        )
        if (settings.ariel.embedding_provider, settings.ariel.embedding_model) != (result.provider, result.model):
            out.print(
                f"search uses {settings.ariel.embedding_provider}/{settings.ariel.embedding_model} until you set "
                f"TERN_ARIEL__EMBEDDING_PROVIDER={result.provider} TERN_ARIEL__EMBEDDING_MODEL={result.model}",
                markup=False,
                highlight=False,
            )
    hard_exit(0 if result.remaining == 0 else 1)


def hits_json(resp: SearchResponse) -> list[dict[str, Any]]:
    """The ``--json`` shape: a list of hits with entry_id, score, title, timestamp, highlights."""
    return [
        {
            "entry_id": h.entry_id,
            "score": h.score,
            "title": h.title,
            "timestamp": h.timestamp.isoformat() if h.timestamp else None,
            "highlights": h.highlights,
            "author": h.author,
        }
        for h in resp.hits
    ]


def search_json(resp: SearchResponse, answered_by: str = "database") -> dict[str, Any]:
    """``tern ariel search --json``: ``query``, ``mode`` (asked), ``mode_used`` (what ran), ``notice`` (why they
    differ, or ""), ``answer``, ``citations`` and ``invalid_citations`` (RAG only; citations are entry ids), and
    ``hits`` (see :func:`hits_json`); ``embedding_model``: the model whose vectors ranked the semantic part ("" when
    none did); ``answered_by``: ``"api <url>"`` when an ARIEL API answered, ``"database"`` when this process
    searched the database of its settings."""
    return {
        "query": resp.query,
        "mode": resp.mode,
        "mode_used": resp.mode_used,
        "embedding_model": resp.embedding_model,
        "notice": resp.notice,
        "answer": resp.answer,
        "citations": resp.citations,
        "invalid_citations": resp.invalid_citations,
        "hits": hits_json(resp),
        "answered_by": answered_by,
    }


async def _search_api(url: str, query: str, mode: str, limit: int, filters: Any) -> SearchResponse | None:
    """The search through the ARIEL API at ``url`` (``POST /search``); None, with a note, when it does not
    answer. A 400 (bad query) exits 2 with the API's message; another error status exits 1."""
    import httpx

    from tern.models import SearchResponse

    body = {"query": query, "mode": mode, "limit": limit, "filters": filters.model_dump(mode="json")}
    try:
        async with httpx.AsyncClient(base_url=url.rstrip("/"), timeout=60) as http:
            r = await http.post("/search", json=body)
    except httpx.TransportError as exc:
        err.print(f"note: the ARIEL API at {url} does not answer ({exc!r}); searching here", markup=False)
        return None
    if r.status_code == 400:
        fail(str(r.json().get("detail", r.text)))
    if r.status_code != 200:
        fail(f"the ARIEL API at {url} answered {r.status_code}: {r.text[:500]}", 1)
    return SearchResponse.model_validate(r.json())


def stack_api_url(settings: TernSettings) -> str | None:
    """The embedded stack's ARIEL API (``tern up``'s ``ariel`` component) when it runs for the database these
    settings name, else None. "Runs" means the stack's record (``run/ariel.api.json`` in ``settings.data_dir``,
    :mod:`tern.embedded.ariel_api`) names a live process whose port answers; "for the database" means the
    record's database has the identity of ``settings.dsn`` (user, host, port, name). A stack serving another
    database is not used, with a note on stderr saying so (searching here is then the right answer, not a
    fallback). Cheap: a file, a signal 0 and one loopback connect."""
    from tern.embedded.ariel_api import database_identity, running_record, same_database

    record = running_record(settings.data_dir)
    if record is None:
        return None
    if not same_database(record.database, settings.dsn):
        try:
            mine = database_identity(settings.dsn)
        except ValueError as exc:
            mine = f"this CLI's database (not compared: {exc})"
        err.print(
            f"note: the embedded stack's ARIEL API (127.0.0.1:{record.port}) serves {record.database or '?'}, "
            f"not {mine}; searching here",
            markup=False,
            highlight=False,
        )
        return None
    return f"http://127.0.0.1:{record.port}"


async def _search(
    settings: TernSettings, query: str, mode: str, limit: int, filters: Any
) -> tuple[SearchResponse, str]:
    """Returns the response and who answered (``"api <url>"`` or ``"database"``, see :func:`search_json`).

    Through an ARIEL API when one is configured (``settings.ariel.api_url``) or when the embedded stack's runs
    for the same database (:func:`stack_api_url`): no model in this process. Otherwise, or when that API does not
    answer, here, on ``settings.dsn``: the embedding runtime loads only for modes that need it (keyword: none)."""
    url = settings.ariel.api_url or stack_api_url(settings)
    if url:
        resp = await _search_api(url, query, mode, limit, filters)
        if resp is not None:
            return resp, f"api {url}"
    from tern.ariel.query import QueryError
    from tern.ariel.service import ArielService

    pool = await _pool(settings)
    service = ArielService(settings, pool)
    try:
        return await service.search(query, mode, limit, filters), "database"  # type: ignore[arg-type]
    except QueryError as exc:
        fail(str(exc))
    finally:
        await service.aclose()
        await pool.close()


@app.command("search")
def search_cmd(
    query: Annotated[str, typer.Argument(help='Full text ("phrase", or, -term) with author:, tag:, date: ...')],
    mode: Annotated[str, typer.Option("--mode", "-m", help="keyword, semantic, hybrid or rag.")] = "keyword",
    limit: Annotated[int, typer.Option("--limit", "-n", help="Most hits shown (1-100).")] = 10,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON: mode used, notice, RAG answer and citations, hits.")
    ] = False,
    author: Annotated[str | None, typer.Option(help="Only entries whose author contains this.")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="Only entries with one of these tags.")] = None,
    since: Annotated[str | None, typer.Option(help="Only entries at or after this time (ISO 8601).")] = None,
    until: Annotated[str | None, typer.Option(help="Only entries before this time (ISO 8601).")] = None,
) -> None:
    """Search the logbook."""
    import asyncio

    from tern.ariel.query import SearchFilters

    if mode not in MODES:
        fail(f"unknown mode {mode!r}; choose one of: {', '.join(MODES)}")
    if not 1 <= limit <= 100:
        fail(f"--limit must be between 1 and 100, got {limit}")
    if not query.strip():
        fail("the query is empty")
    from tern.models.limits import MAX_SEARCH_QUERY_CHARS

    if len(query) > MAX_SEARCH_QUERY_CHARS:
        fail(f"the query has {len(query)} characters; the limit is {MAX_SEARCH_QUERY_CHARS}")
    settings = load_settings()
    filters = SearchFilters(
        author=author, tags=tag or [], since=_parse_time("--since", since), until=_parse_time("--until", until)
    )
    resp, answered_by = asyncio.run(_search(settings, query, mode, limit, filters))
    if as_json:  # complete for scripts and chat bots: the answer, its citations and the notice are in it too
        print(json.dumps(search_json(resp, answered_by), indent=2))
        if resp.notice:
            err.print(f"note: {resp.notice}", markup=False, highlight=False)
        return
    if resp.notice:
        out.print(f"note: {resp.notice}", markup=False, highlight=False)
    if resp.answer:
        out.print(resp.answer, markup=False, highlight=False)
        out.print()
    if not resp.hits:
        out.print("no matching logbook entries")
    for n, h in enumerate(resp.hits, start=1):
        when = f"{h.timestamp:%Y-%m-%d %H:%M}" if h.timestamp else "?"
        out.print(
            f"{n:>2}. [#{h.entry_id}] {h.title}  ({when}, {h.author})  score {h.score:.4g}",
            markup=False,
            highlight=False,
        )
        for line in h.highlights[:3] or [h.snippet[:160]]:
            out.print(f"      {line}", markup=False, highlight=False)


async def _status(settings: TernSettings) -> Any:
    from tern.ariel import store

    pool = await _pool(settings)
    try:
        async with pool.acquire() as conn:
            return await store.status(conn)
    finally:
        await pool.close()


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """Entries by source, embeddings, summaries and the latest ingestion runs."""
    import asyncio

    from rich.table import Table

    settings = load_settings()
    st = asyncio.run(_status(settings))
    if as_json:
        print(st.model_dump_json(indent=2))
        return
    out.print(f"{st.entries} entries ({', '.join(f'{k}: {v}' for k, v in st.by_source.items()) or 'none'})")
    if st.oldest:
        out.print(f"from {st.oldest:%Y-%m-%d %H:%M} to {st.newest:%Y-%m-%d %H:%M} UTC")
    out.print(
        f"backend {settings.ariel.backend}; embedding provider {settings.ariel.embedding_provider}; "
        f"embeddings: {', '.join(f'{m}: {n}' for m, n in st.embeddings.items()) or 'none'}; "
        f"summaries: {st.summaries}"
    )
    if settings.ariel.backend == "opensearch":
        out.print(f"OpenSearch: {st.index_pending} documents or vectors not yet acknowledged (pushed by ingestion)")
    if st.recent_runs:
        t = Table("run", "adapter", "status", "added", "updated", "unchanged", "failed", "started")
        for r in st.recent_runs:
            c = r.counts
            t.add_row(
                r.run_key,
                r.adapter,
                r.status,
                str(c.added),
                str(c.updated),
                str(c.unchanged),
                str(c.failed),
                f"{r.started_at:%Y-%m-%d %H:%M}" if r.started_at else "",
            )
        out.print(t)


async def _reindex(settings: TernSettings, show: bool) -> Any:
    from tern.ariel.backends.opensearch import OpenSearchBackend
    from tern.ariel.backends.opensearch_client import close_shared_clients

    pool = await _pool(settings)
    backend = OpenSearchBackend.from_settings(settings)
    try:
        with _progress_bar() as bar:
            task = bar.add_task("reindexing", total=None, info="", visible=show)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            try:
                return await backend.reindex_from(pool, progress=progress)
            except Exception as exc:  # the cluster's refusal or absence, said in one line
                bar.live.transient = True
                fail(f"reindex failed ({type(exc).__name__}): {exc}", code=1)
    finally:
        await close_shared_clients()
        await pool.close()


@app.command()
def reindex(as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False) -> None:
    """Rebuild the OpenSearch index from PostgreSQL (documents with summaries and keywords, every model's
    vectors) and swap the alias to it; ingestion may go on meanwhile (it writes to both indices)."""
    import asyncio

    settings = load_settings()
    if settings.ariel.backend != "opensearch":
        fail("tern ariel reindex rebuilds the OpenSearch index; the backend is PostgreSQL, which needs none")
    r = asyncio.run(_reindex(settings, show=not as_json))
    if as_json:
        print(r.model_dump_json(indent=2))
        return
    vec = ", ".join(f"{m}: {n}" for m, n in r.vectors.items()) or "none"
    out.print(f"index {r.index}: {r.entries} documents, vectors {vec}, {r.failed_count} refused, {r.seconds:.1f} s")
    if r.replaced:
        out.print(f"replaced and deleted: {', '.join(r.replaced)}")
    for entry_id, reason in list(r.failed.items())[:10]:
        out.print(f"  refused {entry_id}: {reason}", markup=False, highlight=False)


async def create_watch_schedule(
    client: Client, settings: TernSettings, req: IngestionRequest, every: timedelta, schedule_id: str | None = None
) -> str:
    """Create a Temporal Schedule that starts ``LogbookIngestionWorkflow(req)`` every ``every`` (overlapping
    runs are skipped). Returns the schedule id (default ``ariel-watch-<adapter>-<hash of source>``)."""
    from temporalio.client import (
        Schedule,
        ScheduleActionStartWorkflow,
        ScheduleIntervalSpec,
        SchedulePolicy,
        ScheduleSpec,
    )

    from starters.priorities import background_priority
    from workflows.logbook_ingestion import LogbookIngestionWorkflow

    sid = schedule_id or f"ariel-watch-{req.adapter}-{hashlib.sha1(req.source.encode()).hexdigest()[:8]}"
    await client.create_schedule(
        sid,
        Schedule(
            action=ScheduleActionStartWorkflow(
                # the schedule appends the scheduled time to this id, so every run has its own
                LogbookIngestionWorkflow.run,
                req,
                id=f"{sid}-run",
                task_queue=long_queue(settings.temporal.task_queue),  # its own slots (workflows.queues)
                priority=background_priority(f"ingest:{req.adapter}:{req.source}"),
            ),
            spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
            policy=SchedulePolicy(),  # default overlap policy: skip a run while the previous one is running
        ),
    )
    return sid


@app.command()
def watch(
    source: Annotated[str, typer.Argument(help="A logbook file, or for als-http the service URL.")],
    adapter: Annotated[str, typer.Option("--adapter", "-a", help=f"One of: {', '.join(ADAPTERS)}.")],
    every: Annotated[str, typer.Option(help="Interval: a number and s, m, h or d.")] = "1h",
    as_json: Annotated[bool, typer.Option("--json", help="Print the schedule id as JSON.")] = False,
) -> None:
    """Create a Temporal Schedule that ingests SOURCE periodically (new and changed entries)."""
    import asyncio

    from tern.models.ariel import IngestionRequest

    settings = load_settings()
    req = IngestionRequest(
        adapter=adapter, source=_check_source(adapter, source), pages_per_run=settings.ariel.pages_per_run
    )
    interval = _parse_every(every)

    async def run() -> str:
        from temporalio.service import RPCError

        client = await _connect(settings)
        try:
            return await create_watch_schedule(client, settings, req, interval)
        except RPCError as exc:
            fail(f"cannot create the schedule: {exc}", code=1)

    try:
        sid = asyncio.run(run())
    except typer.Exit as exc:
        hard_exit(exc.exit_code)
    if as_json:
        print(json.dumps({"schedule_id": sid, "every_s": interval.total_seconds()}))
    else:
        out.print(f"schedule {sid}: ingests {req.source} every {interval}")
    hard_exit(0)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8765,
) -> None:
    """Serve the ARIEL HTTP API (FastAPI, uvicorn): search, entries, status, health; no approval endpoint.

    ``tern bridge webhook`` serves this same app with the signed-webhook approvals router added; this command stays
    for a logbook search service exposed where decisions must not be taken (no Temporal client, no secrets)."""
    import uvicorn

    from tern.ariel.api import create_app

    uvicorn.run(create_app(load_settings()), host=host, port=port)


if __name__ == "__main__":
    app()
