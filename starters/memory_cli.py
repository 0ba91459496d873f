"""`tern memory add|list|search|delete`: a user's notes (operator memory) in PostgreSQL.

Mounted in the main CLI with ``app.add_typer(memory_app, name="memory")``. ``--user`` defaults to your login
name; every command sees only that user's notes. ``add`` stores at once (source ``cli``), whatever
``TERN_MEMORY__APPROVAL_MODE`` says: that setting (default ``always``) governs the notes *agent runs* store
(a plan's ``memory`` step, which the LLM planner may write after reading untrusted text such as logbook
entries), not the note a person types themselves. Deleting removes the note (the audit keeps who, when, and
the note's hash). Exit status: 0 done; 1 PostgreSQL unreachable; 2 bad input or no such note of that user.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from starters.common import console, fail, load_settings, print_json

if TYPE_CHECKING:
    import asyncpg

    from tern.config import TernSettings
    from tern.models.memory import Memory

app = typer.Typer(help="Operator memory: notes the agent keeps for you.", no_args_is_help=True)
out = console()
T = TypeVar("T")
User = Annotated[str | None, typer.Option("--user", help="Whose notes (default: your login name).")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _user(user: str | None) -> str:
    from tern.config import current_user

    who = (user if user is not None else current_user()).strip()
    if not who or len(who) > 200:
        fail("--user must be 1 to 200 characters")
    return who


def _with_pool(s: TernSettings, fn: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
    import asyncio

    from tern.db import DatabaseError, create_pool

    async def go() -> T:
        pool = await create_pool(s.writer_dsn, max_size=2)
        try:
            return await fn(pool)
        finally:
            await pool.close()

    try:
        return asyncio.run(go())
    except DatabaseError as exc:
        fail(str(exc), 1)


async def _embedder(s: TernSettings) -> Any:
    from tern.ariel.embeddings import EmbeddingError
    from tern.ariel.providers import configured_embedder

    try:
        return await configured_embedder(s)
    except EmbeddingError as exc:
        out.print(f"[yellow]embeddings unavailable, keyword search only: {exc}[/]")
        return None


def _show(notes: list[Memory], as_json: bool) -> None:
    if as_json:
        print_json([n.model_dump(mode="json") for n in notes])
        return
    for n in notes:
        score = f"  (score {n.score:.4f})" if n.score is not None else ""
        out.print(f"[bold]{n.id}[/]  {n.created_at:%Y-%m-%d %H:%M}  {n.text}{score}", highlight=False)
    if not notes:
        out.print("no notes")


@app.command("add")
def add(text: Annotated[str, typer.Argument(help="The note.")], user: User = None, as_json: Json = False) -> None:
    """Remember TEXT for the user, at once: a note a person types is theirs (the memory approval mode governs
    notes that agent runs store)."""
    from tern.models.memory import MAX_MEMORY_CHARS

    s, who = load_settings(), _user(user)
    if not text.strip() or len(text) > MAX_MEMORY_CHARS:
        fail(f"the note must be 1 to {MAX_MEMORY_CHARS} characters")
    from tern.memory.store import add_memory

    async def go(pool: asyncpg.Pool) -> Memory:
        return await add_memory(pool, who, text, source="cli", embedder=await _embedder(s))

    note = _with_pool(s, go)
    if as_json:
        print_json(note.model_dump(mode="json"))
    else:
        out.print(f"stored note {note.id} for {who}")


@app.command("list")
def list_(user: User = None, limit: int = 100, as_json: Json = False) -> None:
    """The user's notes, newest first."""
    from tern.memory.store import list_memories

    s, who = load_settings(), _user(user)
    _show(_with_pool(s, lambda pool: list_memories(pool, who, max(1, limit))), as_json)


@app.command("search")
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    user: User = None,
    limit: int = 5,
    as_json: Json = False,
) -> None:
    """The user's notes most relevant to QUERY (keyword and, with an embedding provider, meaning)."""
    from tern.memory.store import search_memories

    s, who = load_settings(), _user(user)
    if not query.strip():
        fail("the query is empty")

    async def go(pool: asyncpg.Pool) -> list[Memory]:
        return await search_memories(pool, who, query, limit=max(1, limit), embedder=await _embedder(s))

    _show(_with_pool(s, go), as_json)


@app.command("delete")
def delete(memory_id: Annotated[int, typer.Argument(help="Note id.")], user: User = None) -> None:
    """Delete note MEMORY_ID of the user (for good; the audit keeps who deleted it and when)."""
    from tern.memory.store import delete_memory

    s, who = load_settings(), _user(user)
    if not _with_pool(s, lambda pool: delete_memory(pool, who, memory_id)):
        fail(f"no note {memory_id} of user {who}")
    out.print(f"deleted note {memory_id}")
