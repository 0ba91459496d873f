"""``tern channels``: find channels by description, navigate the channel hierarchy, import a channel list.

Mounted by the main CLI with ``app.add_typer(channels_app, name="channels")``. The database is
``TernSettings().dsn``; the bundled channel database is loaded at first use (setting ``channels.load_bundled``,
``TERN_CHANNELS__LOAD_BUNDLED``).
Bad input exits with status 2 before anything is contacted; an unreachable database exits 1. asyncpg and the
finder are imported inside the commands (issue 17: ``tern --help`` stays fast).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from starters.common import console, fail, load_settings, print_json

if TYPE_CHECKING:
    import asyncpg

    from tern.config import TernSettings

app = typer.Typer(
    help="Channel finder: find channels by description, list the hierarchy, import.", no_args_is_help=True
)
err = console(stderr=True)
out = console()
MODES = ("keyword", "semantic", "hybrid")  # tern.models.channel_finder.CHANNEL_FIND_MODES (spelled out: start-up time)
MAX_LIMIT = 100  # tern.channel_finder.finder.MAX_LIMIT


async def _pool(settings: TernSettings) -> asyncpg.Pool:
    from tern.db import DatabaseError, create_pool

    try:
        return await create_pool(settings.dsn)
    except DatabaseError as exc:
        fail(str(exc), code=1)


async def _with_finder(settings: TernSettings, work: Any) -> Any:
    from tern.channel_finder.finder import ChannelFinder
    from tern.control.limits import LimitsDatabaseError

    pool = await _pool(settings)
    try:
        return await work(ChannelFinder(settings, pool))
    except LimitsDatabaseError as exc:
        fail(f"the bundled channel database cannot be built: {exc}", code=1)
    except ValueError as exc:
        fail(str(exc))
    finally:
        await pool.close()


@app.command("find")
def find_cmd(
    query: Annotated[str, typer.Argument(help='A description ("cavity 1 forward power"), a name or an alias.')],
    mode: Annotated[str, typer.Option("--mode", "-m", help="keyword, semantic or hybrid.")] = "keyword",
    limit: Annotated[int, typer.Option("--limit", "-n", help=f"Most channels shown (1-{MAX_LIMIT}).")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: mode used, notice, hits.")] = False,
) -> None:
    """Find channels matching a description, best first, with scores."""
    import asyncio

    if mode not in MODES:
        fail(f"unknown mode {mode!r}; choose one of: {', '.join(MODES)}")
    if not 1 <= limit <= MAX_LIMIT:
        fail(f"--limit must be between 1 and {MAX_LIMIT}, got {limit}")
    if not query.strip():
        fail("the query is empty")
    from tern.models.limits import MAX_CHANNEL_QUERY_CHARS

    if len(query) > MAX_CHANNEL_QUERY_CHARS:
        fail(f"the query has {len(query)} characters; the limit is {MAX_CHANNEL_QUERY_CHARS}")
    settings = load_settings()
    resp = asyncio.run(_with_finder(settings, lambda f: f.find(query, mode, limit)))
    if resp.notice:
        err.print(f"note: {resp.notice}", markup=False, highlight=False)
    if as_json:
        print_json(resp.model_dump())
        return
    if not resp.hits:
        out.print("no matching channels")
    for n, h in enumerate(resp.hits, start=1):
        rw = "writable" if h.writable else "read-only"
        out.print(f"{n:>2}. {h.name}  score {h.score:.4g}  ({rw})", markup=False, highlight=False)
        out.print(f"      {h.description}", markup=False, highlight=False)


@app.command("list")
def list_cmd(
    under: Annotated[str, typer.Option("--under", "-u", help="Hierarchy path, e.g. SR:RF ('' for the top).")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print the children as JSON.")] = False,
) -> None:
    """List the children of a hierarchy level (area -> system -> family -> device -> field -> signal)."""
    import asyncio

    from tern.models.limits import MAX_CHANNEL_QUERY_CHARS

    if len(under) > MAX_CHANNEL_QUERY_CHARS:
        fail(f"--under has {len(under)} characters; the limit is {MAX_CHANNEL_QUERY_CHARS}")
    settings = load_settings()
    nodes = asyncio.run(_with_finder(settings, lambda f: f.children(under)))
    if as_json:
        print_json([n.model_dump() for n in nodes])
        return
    for node in nodes:
        count = "" if node.leaf else f"  ({node.channels} channels)"
        out.print(f"{node.path}{count}  {node.description}", markup=False, highlight=False)


async def _import(settings: TernSettings, path: Path, records: list[Any], digest: str) -> Any:
    from tern.channel_finder import store
    from tern.channel_finder.importing import source_name

    pool = await _pool(settings)
    try:
        async with pool.acquire() as conn:
            counts = await store.upsert_channels(conn, records, source_name(path))
            await store.record_source(conn, source_name(path), digest, len(records))
            return counts
    finally:
        await pool.close()


@app.command("import")
def import_cmd(
    file: Annotated[
        Path, typer.Argument(help="ChannelFinder JSON export (.json) or CSV (name,description[,aliases]).")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """Import (insert or update by name) a channel list; importing the same file again changes nothing."""
    import asyncio

    from tern.channel_finder.importing import ChannelImportError, read_channel_file
    from tern.control.limits import LimitsDatabase, LimitsDatabaseError
    from tern.models.limits import MAX_CHANNEL_FILE_BYTES

    if not file.is_file():
        fail(f"channel file not found: {file}")
    if file.stat().st_size > MAX_CHANNEL_FILE_BYTES:
        fail(f"{file} has {file.stat().st_size} bytes; the limit is {MAX_CHANNEL_FILE_BYTES}")
    settings = load_settings()
    try:
        limits = LimitsDatabase.load(settings.control.limits_path)
    except LimitsDatabaseError as exc:
        err.print(f"note: the limits database does not load, so no imported channel is writable: {exc}", markup=False)
        limits = None
    try:
        records = read_channel_file(file, limits)
    except ChannelImportError as exc:
        fail(str(exc))
    digest = hashlib.sha256(file.read_bytes()).hexdigest()
    counts = asyncio.run(_import(settings, file, records, digest))
    if as_json:
        print_json({"file": str(file), "channels": len(records), **counts.model_dump()})
        return
    out.print(
        f"{len(records)} channels from {file}: {counts.added} added, {counts.updated} updated, "
        f"{counts.unchanged} unchanged",
        markup=False,
        highlight=False,
    )
