"""``tern verify``: check the write and approval invariants after a load or fault campaign (issue 13).

The database part is :func:`tern.audit.invariants.check_writes` (IOC put log vs write ledger vs audit); this
module adds what needs Temporal and Docker: requests still waiting whose workflow is gone
(``pending_without_workflow``), and sandbox containers whose run is not running (``orphan_container``).

``tern verify --audit`` checks the audit itself, with the read-only role and nothing else: the hash chain
(:func:`tern.audit.chain.verify_chain`, naming the first row that does not match) and the write ledger against the
audit (:func:`tern.audit.invariants.check_ledger`: a ledger row set to ``done`` without its audited write).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from starters.common import console, fail, load_settings, print_json, run_async, with_run_id

_TERMINAL = ("decision", "approval_timed_out", "approval_cancelled", "approval_refused")


def _since(text: str | None) -> datetime | None:
    """``--since``: an ISO 8601 time (UTC when it has no offset) or a number of minutes ago; None for all."""
    if text is None:
        return None
    try:
        return datetime.now(UTC) - timedelta(minutes=float(text))
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        fail(f"--since must be an ISO 8601 time or a number of minutes, got {text!r}")
    return when if when.tzinfo else when.replace(tzinfo=UTC)


async def collect(since: datetime | None, put_log: Path) -> dict[str, Any]:
    """Run every check; returns the report as a dict (``ok``, counts, ``violations``).

    Raises ``starters.client.TernUnavailable`` when PostgreSQL or Temporal cannot be reached; Docker being
    unreachable is reported in ``notes`` (no sandbox check) rather than failing the check."""
    from starters.client import TernClient, TernUnavailable, TernUserError
    from tern.audit.invariants import Violation, check_writes, read_put_log
    from tern.db import DatabaseError, create_pool

    s = load_settings()
    puts = read_put_log(put_log, since=since.timestamp() if since else None)
    try:
        pool = await create_pool(s.reader_dsn)
    except DatabaseError as exc:
        raise TernUnavailable(str(exc)) from exc
    try:
        async with pool.acquire() as conn:
            report = await check_writes(conn, puts, since=since)
            requested = await conn.fetch(
                "SELECT run_id, request_id FROM audit_events r WHERE event_kind = 'approval_requested'"
                " AND ($1::timestamptz IS NULL OR occurred_at >= $1) AND NOT EXISTS (SELECT 1 FROM audit_events t"
                " WHERE t.request_id = r.request_id AND t.run_id = r.run_id AND t.event_kind = ANY($2::text[]))",
                since,
                list(_TERMINAL),
            )
    finally:
        await pool.close()
    client = await TernClient.connect(s)

    async def closed(run_id: str) -> bool:
        try:
            return await client.is_closed(run_id)
        except TernUserError:  # no such workflow (any more): nothing is waiting on it
            return True

    open_requests = {r["run_id"]: r["request_id"] for r in requested}
    for run_id, request_id in sorted(open_requests.items()):
        if await closed(run_id):
            report.violations.append(
                Violation(
                    kind="pending_without_workflow",
                    workflow_id=run_id,
                    detail=f"request {request_id!r} was never decided, timed out or cancelled, and its run is closed",
                )
            )
    notes: list[str] = []
    orphans = 0
    try:
        import docker

        engine = docker.from_env(timeout=10)
        # all=True: a stopped or never-started container of a closed run is left behind as much as a running one
        for c in engine.containers.list(all=True, filters={"label": "tern.sandbox=1"}):
            run_id = c.labels.get("tern.run_id", "")
            if run_id and await closed(run_id):
                orphans += 1
                report.violations.append(
                    Violation(
                        kind="orphan_container",
                        workflow_id=run_id,
                        detail=f"sandbox container {c.short_id} ({c.status}) outlived its run",
                    )
                )
    except Exception as exc:  # docker SDK errors and an absent engine: no sandbox check, said so
        notes.append(f"sandbox containers not checked: {exc}")
    return {
        "ok": report.ok,
        "since": since.isoformat() if since else None,
        "put_log": str(put_log),
        **report.model_dump(exclude={"violations"}),
        "open_requests": len(open_requests),
        "orphan_containers": orphans,
        "violations": [with_run_id(v.model_dump()) for v in report.violations],
        "notes": notes,
    }


async def collect_audit(since: datetime | None) -> dict[str, Any]:
    """The ``--audit`` report: ``ok``, ``rows`` walked, ``head`` (the last row's hash: record it elsewhere),
    ``first_break`` (id, event_key, problem ``content``/``link``/``unhashed``, detail, expected and stored hashes;
    None when intact) and the ledger ``violations``. Raises ``TernUnavailable`` when PostgreSQL cannot be reached or
    is not migrated."""
    from starters.client import TernUnavailable
    from tern.audit.chain import verify_chain
    from tern.audit.invariants import check_ledger
    from tern.db import DatabaseError, create_pool

    s = load_settings()
    try:
        pool = await create_pool(s.reader_dsn, max_size=2)
    except DatabaseError as exc:
        raise TernUnavailable(str(exc)) from exc
    try:
        async with pool.acquire() as conn:
            chain = await verify_chain(conn)
            ledger = await check_ledger(conn, since=since)
    finally:
        await pool.close()
    return {
        "ok": chain.ok and not ledger,
        "rows": chain.rows,
        "head": chain.head,
        "first_break": chain.first_break.model_dump() if chain.first_break else None,
        "violations": [with_run_id(v.model_dump()) for v in ledger],
    }


def _print_audit(result: dict[str, Any]) -> None:
    out = console()
    brk = result["first_break"]
    if brk:
        out.print(
            f"[red]audit chain broken[/red] at row id {brk['id']} (event_key {brk['event_key']!r}): "
            f"{brk['problem']}: {brk['detail']}",
            highlight=False,
        )
        if brk["expected"] or brk["stored"]:
            out.print(f"  expected {brk['expected']}", highlight=False)
            out.print(f"  stored   {brk['stored']}", highlight=False)
    else:
        out.print(f"audit chain intact: {result['rows']} rows, head {result['head']}", highlight=False)
    for v in result["violations"]:
        out.print(f"[red]{v['kind']}[/red] run {v['workflow_id'] or '-'} {v['channel'] or ''}: {v['detail']}")
    out.print("[green]audit verified[/green]" if result["ok"] else "[red]audit does not verify[/red]")


def verify(
    since: Annotated[
        str | None, typer.Option(help="Only writes claimed since: an ISO 8601 time (UTC) or minutes ago.")
    ] = None,
    put_log: Annotated[
        Path | None,
        typer.Option(help="The IOC's put log (JSON lines); default <data_dir>/logs/ioc-puts.jsonl of `tern up`."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    audit: Annotated[
        bool,
        typer.Option(
            "--audit",
            help="Check the audit itself instead: walk the hash chain and name the first row that does not match, "
            "and check every done write-ledger row against its audited write (read-only role; no Temporal).",
        ),
    ] = False,
) -> None:
    """Check that nothing was written twice or without an approval: the simulated IOC's own put log against the
    write ledger and the audit table, requests waiting on a closed run, sandbox containers that outlived their
    run. Exit 0 when every invariant holds, 1 when one is broken (each violation is listed with its run).
    With --audit: the audit's hash chain and the ledger against the audit (exit 0 with the row count when intact,
    1 naming the first row that does not match)."""
    when = _since(since)
    started = time.monotonic()
    if audit:
        result = run_async(collect_audit(when))
        result["seconds"] = round(time.monotonic() - started, 3)
        if as_json:
            print_json(result)
        else:
            _print_audit(result)
        raise typer.Exit(0 if result["ok"] else 1)
    s = load_settings()
    result = run_async(collect(when, put_log or s.data_dir / "logs" / "ioc-puts.jsonl"))
    result["seconds"] = round(time.monotonic() - started, 3)
    if as_json:
        print_json(result)
    else:
        out = console()
        out.print(
            f"{result['ioc_puts']} IOC puts, {result['ledger_rows']} approved writes "
            f"({result['verified_writes']} verified, {result['unverified_writes']} put and not verified), "
            f"{result['open_requests']} requests still open"
        )
        for how, n in sorted(result["settled_by"].items()):
            out.print(f"interrupted writes {how}: {n}")
        for note in result["notes"]:
            out.print(f"note: {note}")
        for v in result["violations"]:
            out.print(f"[red]{v['kind']}[/red] run {v['workflow_id'] or '-'} {v['channel'] or ''}: {v['detail']}")
        out.print("[green]all invariants hold[/green]" if result["ok"] else "[red]invariants broken[/red]")
    raise typer.Exit(0 if result["ok"] else 1)
