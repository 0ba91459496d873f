"""The safety invariants of writes, checked against the IOC's own record (issue 13's invariant checker).

Three records of every write exist: the IOC's put log (what the machine was told to do; the simulated IOC writes
one, see :mod:`tern.sim.accelerator`), the write ledger (one row per approved write step, claimed before the put)
and the audit table (decisions and write outcomes). They must agree:

- ``duplicate_put``: an IOC processed more than one put for one ledger row (a write done twice), or received more
  than two (a key may be re-put once, only when its first put never landed: ``activities.agent``);
- ``put_without_record``: the IOC processed a put that no ledger row accounts for;
- ``write_without_approval``: a write was attempted for a request that has no ``approved`` decision;
- ``verified_without_put``: the audit says a write was verified, and the IOC never processed it;
- ``unrecorded_write``: a ledger row is ``done`` and the audit table has no ``write`` event for it (a ledger row
  set to ``done`` by hand: the worker would report that write as done without putting);
- ``ledger_audit_mismatch``: a ``done`` ledger row's result (channel, value, verified) differs from its audit
  ``write`` event (a ledger forged to a verified result);
- ``approval_counted_twice``: one approver's approval of one request recorded more than once.

(``pending_without_workflow`` and ``orphan_container`` need Temporal and Docker: ``starters.verify_cli``.)
:func:`check_ledger` runs the ledger-against-audit part alone, without the IOC's log (``tern verify --audit``).

Matching puts to ledger rows is by channel and value (equal to 1e-9 relative): a load test that wants every put
attributed gives each write its own value (``benchmarks/load.py`` does).
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, Field

from tern.db import Conn

ViolationKind = Literal[
    "duplicate_put",
    "put_without_record",
    "write_without_approval",
    "verified_without_put",
    "unrecorded_write",
    "ledger_audit_mismatch",
    "approval_counted_twice",
    "pending_without_workflow",
    "orphan_container",
]


class IocPut(BaseModel):
    """One line of the IOC's put log: ``channel``, ``value`` (engineering units), ``ioc_time`` and ``host_time``
    (POSIX seconds by the IOC's and by its host's clock), ``processed`` (False when the IOC dropped the put)."""

    channel: str
    value: float
    ioc_time: float
    host_time: float
    processed: bool = True


class Violation(BaseModel):
    """One broken invariant: its ``kind``, the run it concerns (when known), the channel and what was seen."""

    kind: ViolationKind
    workflow_id: str | None = Field(
        None,
        validation_alias=AliasChoices("workflow_id", "run_id"),
        description="Workflow ID of the run concerned, when known ('run_id' accepted; see tern.models.ids).",
    )
    channel: str | None = None
    detail: str


class InvariantReport(BaseModel):
    """What :func:`check_writes` compared, and every violation found (``ok`` when there is none)."""

    ioc_puts: int = Field(description="Puts in the IOC's log within the window (received, processed or not).")
    ledger_rows: int = Field(description="Write ledger rows within the window (every approved write step).")
    verified_writes: int
    unverified_writes: int = Field(description="Done or failed writes that were put and not verified.")
    settled_by: dict[str, int] = Field(default_factory=dict, description="Interrupted writes, by how settled.")
    violations: list[Violation] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no invariant is broken."""
        return not self.violations


def read_put_log(path: Path, *, since: float | None = None) -> list[IocPut]:
    """The puts in the IOC's log ``path`` (JSON lines) received at or after ``since`` (POSIX seconds by the
    IOC host's clock), oldest first. A missing file is an empty log; a torn last line (IOC killed mid-write) is
    skipped. Raises ``ValueError`` naming the line for any other line that is not a put."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    puts: list[IocPut] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            put = IocPut.model_validate(json.loads(line))
        except (json.JSONDecodeError, ValueError) as exc:
            if n == len(lines):
                break
            raise ValueError(f"{path}:{n}: not a put record: {exc}") from exc
        if since is None or put.host_time >= since:
            puts.append(put)
    return puts


LEDGER_KINDS = frozenset({"unrecorded_write", "ledger_audit_mismatch", "write_without_approval"})
"""The violations :func:`check_ledger` reports: those that need only the ledger and the audit."""


def ledger_result_mismatch(result: Any, event: Any) -> str | None:
    """How a ``done`` ledger row's ``result`` (a :class:`~tern.models.WriteRecord` as JSON) disagrees with its
    audit ``write`` event (a row of ``audit_events``), or None when channel, value and ``verified`` agree. Used by
    :func:`check_writes` and by the write activity before it trusts a ``done`` row."""
    if isinstance(result, str):
        try:
            result = json.loads(result)
        except ValueError:
            return "its result is not JSON"
    if not isinstance(result, dict):
        return "it has no result"
    if result.get("channel") != event["channel"]:
        return f"its result names channel {result.get('channel')!r}, the audit {event['channel']!r}"
    value = result.get("value")
    if (
        not isinstance(value, int | float)
        or event["value"] is None
        or not math.isclose(value, event["value"], rel_tol=1e-9, abs_tol=1e-12)
    ):
        return f"its result's value {value!r} is not the audit's {event['value']!r}"
    if bool(result.get("verified")) != bool(event["verified"]):
        return f"its result says verified={bool(result.get('verified'))}, the audit verified={event['verified']}"
    return None


async def check_ledger(conn: Conn, *, since: datetime | None = None) -> list[Violation]:
    """The ledger-against-audit checks alone (:data:`LEDGER_KINDS`), for ledger rows claimed at or after
    ``since`` (None for all): every ``done`` row has a matching audit ``write`` event with an approved decision.
    Needs no IOC put log; raises only on database errors."""
    report = await check_writes(conn, [], since=since)
    return [v for v in report.violations if v.kind in LEDGER_KINDS]


def _key(channel: str, value: float) -> tuple[str, float]:
    """Match key of a put or ledger row: the bare channel name (a ``pva://X`` write is a put to ``X`` in the IOC's
    log, whichever protocol carried it) and the value to 9 significant digits."""
    return _bare(channel), float(f"{value:.9g}")


def _bare(channel: str) -> str:
    for scheme in ("pva://", "ca://"):  # tern.control.addressing.SCHEMES (not imported: control imports audit)
        if channel.lower().startswith(scheme):
            return channel[len(scheme) :]
    return channel


async def check_writes(conn: Conn, puts: Iterable[IocPut], *, since: datetime | None = None) -> InvariantReport:
    """Compare the IOC's ``puts`` with the write ledger and the audit table for writes claimed at or after
    ``since`` (UTC; None for all). Returns the report; raises only on database errors."""
    puts = list(puts)
    ledger = await conn.fetch(
        "SELECT * FROM write_ledger WHERE $1::timestamptz IS NULL OR claimed_at >= $1 ORDER BY claimed_at", since
    )
    keys = [r["idempotency_key"] for r in ledger]
    events = await conn.fetch(
        "SELECT * FROM audit_events WHERE event_key = ANY($1::text[])",
        [f"write:{k}" for k in keys] + [f"write_refused:{k}" for k in keys],
    )
    write_event = {e["event_key"].split(":", 1)[1]: e for e in events}
    request_ids = sorted({e["request_id"] for e in events if e["request_id"]})
    decisions = await conn.fetch(
        "SELECT request_id, actor, decision FROM audit_events WHERE event_kind = 'decision' AND request_id = ANY($1)",
        request_ids,
    )
    approved = {d["request_id"] for d in decisions if d["decision"] == "approved"}

    received: Counter[tuple[str, float]] = Counter()
    processed: Counter[tuple[str, float]] = Counter()
    for p in puts:
        received[_key(p.channel, p.value)] += 1
        if p.processed:
            processed[_key(p.channel, p.value)] += 1
    rows_by_key: dict[tuple[str, float], list] = defaultdict(list)
    for r in ledger:
        rows_by_key[_key(r["channel"], r["value"])].append(r)

    violations: list[Violation] = []
    verified = unverified = 0
    settled: Counter[str] = Counter()
    for key, rows in rows_by_key.items():
        channel, value = key
        run_ids = ", ".join(sorted({r["run_id"] for r in rows}))
        if processed[key] > len(rows):
            violations.append(
                Violation(
                    kind="duplicate_put",
                    workflow_id=run_ids,
                    channel=channel,
                    detail=f"the IOC processed {processed[key]} puts of {value:g} for {len(rows)} write(s)",
                )
            )
        if received[key] > 2 * len(rows):
            violations.append(
                Violation(
                    kind="duplicate_put",
                    workflow_id=run_ids,
                    channel=channel,
                    detail=f"the IOC received {received[key]} puts of {value:g} for {len(rows)} write(s) "
                    "(at most one re-put each)",
                )
            )
        for r in rows:
            event = write_event.get(r["idempotency_key"])
            if r["state"] == "done" and (event is None or event["event_kind"] != "write"):
                violations.append(
                    Violation(
                        kind="unrecorded_write",
                        workflow_id=r["run_id"],
                        channel=channel,
                        detail=f"ledger row {r['idempotency_key']} is done and the audit has no write event",
                    )
                )
            if event is None:
                continue
            if event["request_id"] not in approved:
                violations.append(
                    Violation(
                        kind="write_without_approval",
                        workflow_id=r["run_id"],
                        channel=channel,
                        detail=f"write {r['idempotency_key']} for request {event['request_id']!r}, which has no "
                        "approved decision in the audit",
                    )
                )
            if event["event_kind"] != "write":
                continue
            if r["state"] == "done" and (problem := ledger_result_mismatch(r["result"], event)):
                violations.append(
                    Violation(
                        kind="ledger_audit_mismatch",
                        workflow_id=r["run_id"],
                        channel=channel,
                        detail=f"ledger row {r['idempotency_key']} is done and {problem}",
                    )
                )
            details = event["details"]
            if isinstance(details, str):
                details = json.loads(details)
            if details.get("settled_by"):
                settled[str(details["settled_by"])] += 1
            if event["verified"]:
                verified += 1
                if processed[key] == 0:
                    violations.append(
                        Violation(
                            kind="verified_without_put",
                            workflow_id=r["run_id"],
                            channel=channel,
                            detail=f"write {r['idempotency_key']} of {value:g} is verified in the audit; the IOC "
                            "never processed such a put",
                        )
                    )
            else:
                unverified += 1
    for key, n in processed.items():
        if key not in rows_by_key:
            violations.append(
                Violation(
                    kind="put_without_record",
                    channel=key[0],
                    detail=f"the IOC processed {n} put(s) of {key[1]:g} that no write ledger row accounts for",
                )
            )
    for (request_id, actor), n in Counter(
        (d["request_id"], d["actor"]) for d in decisions if d["decision"] == "approved"
    ).items():
        if n > 1:
            violations.append(
                Violation(
                    kind="approval_counted_twice",
                    detail=f"{actor!r} approved request {request_id!r} {n} times in the audit",
                )
            )
    return InvariantReport(
        ioc_puts=len(puts),
        ledger_rows=len(ledger),
        verified_writes=verified,
        unverified_writes=unverified,
        settled_by=dict(settled),
        violations=violations,
    )
