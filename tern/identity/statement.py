"""Canonical statements and the digests they bind.

A statement is serialised as JSON with sorted keys, no insignificant whitespace and ASCII only (the JSON
Canonicalization Scheme of RFC 8785 restricted to the values a statement holds: strings, and timestamps written as
ISO 8601 UTC strings with whole seconds). Digests are SHA-256 hex over the same canonical JSON of the content an
approver is shown; floats are written with ``repr`` (the shortest string that reads back to the same double), so
the digest binds the exact value that will be written, not a rounded display.

Pure functions, no I/O: workflow code may call them (the request digest is computed in the workflow).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from tern.models.approval import ApprovalRequest
from tern.models.identity import ProofPurpose, Statement, StatementAction

DEFAULT_PROOF_LIFETIME_S = 300.0
"""How long a statement signed by ``tern approve``/``tern run`` stays valid, seconds."""


def canonical_json(value: Any) -> str:
    """``value`` as canonical JSON (sorted keys, ``,``/``:`` separators, ASCII). Raises ``ValueError`` for NaN
    or infinite floats (they have no JSON form)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def sha256_hex(text: str | bytes) -> str:
    """SHA-256 of ``text`` (UTF-8 when a str), 64 lowercase hex digits."""
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


def canonical(statement: Statement) -> str:
    """The exact text a principal signs for ``statement``."""
    return canonical_json(statement.model_dump(mode="json"))


def parse_statement(text: str) -> Statement:
    """Read a signed statement. Raises ``ValueError`` when it is not valid or not in canonical form (a text
    that differs from its canonical form could mean two things to two readers)."""
    statement = Statement.model_validate_json(text)
    if canonical(statement) != text:
        raise ValueError("statement is not in canonical form (sorted keys, no spaces, UTC timestamps)")
    return statement


def _utc_seconds(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(microsecond=0)


def make_statement(
    *,
    purpose: ProofPurpose,
    workflow_id: str,
    action: StatementAction,
    digest: str,
    signer: str,
    request_id: str = "",
    on_behalf_of: str = "",
    surface: str = "cli",
    now: datetime | None = None,
    lifetime_s: float = DEFAULT_PROOF_LIFETIME_S,
) -> Statement:
    """A statement issued ``now`` (UTC, default the current time) and valid for ``lifetime_s`` seconds."""
    issued = _utc_seconds(now or datetime.now(UTC))
    return Statement(
        purpose=purpose,
        workflow_id=workflow_id,
        request_id=request_id,
        action=action,
        digest=digest,
        signer=signer,
        on_behalf_of=on_behalf_of,
        surface=surface,
        issued_at=issued,
        expires_at=issued + timedelta(seconds=lifetime_s),
    )


def request_content(request: ApprovalRequest) -> dict[str, Any]:
    """What an approver is shown of ``request``, as the digest covers it: kind, step, summary and reason; for a
    write the channel, the exact value, the units and the current value (and the SHA-256 of its predicted effect
    on the ring, when it has one); for code the SHA-256 of the code; for a
    plan or a logbook entry their JSON."""
    content: dict[str, Any] = {
        "kind": request.kind,
        "request_id": request.request_id,
        "step_id": request.step_id,
        "summary": request.summary,
        "reason": request.reason,
    }
    if request.write is not None:
        w = request.write
        content["write"] = {
            "channel": w.channel,
            "value": repr(float(w.value)),
            "units": w.units,
            "current_value": None if w.current_value is None else repr(float(w.current_value)),
        }
        if w.predicted_effect is not None:  # the consequences shown are bound too (absent: the digest is as before)
            content["write"]["predicted_effect_sha256"] = sha256_hex(
                canonical_json(w.predicted_effect.model_dump(mode="json"))
            )
        if w.plan_effect is not None:  # the plan as the whole, as shown (absent: the digest is as before)
            content["write"]["plan_effect_sha256"] = sha256_hex(canonical_json(w.plan_effect.model_dump(mode="json")))
    if request.code is not None:
        content["code_sha256"] = sha256_hex(request.code.code)
    if request.plan is not None:
        content["plan"] = request.plan.model_dump(mode="json")
    if request.plan_effect is not None:  # the plan's predicted effect as shown (absent: the digest is as before)
        content["plan_effect_sha256"] = sha256_hex(canonical_json(request.plan_effect.model_dump(mode="json")))
    if request.entry is not None:
        content["entry"] = request.entry.model_dump(mode="json")
    return content


def request_digest(request: ApprovalRequest) -> str:
    """SHA-256 hex of :func:`request_content` in canonical JSON: what a decision's statement must name."""
    return sha256_hex(canonical_json(request_content(request)))


def start_digest(run_request: Any) -> str:
    """SHA-256 hex of a run request (``AgentRunRequest``) without its proof, in canonical JSON: what a start's
    statement must name (the question, the plan, the approvers, the mode: everything the run will do)."""
    data = run_request.model_dump(mode="json", exclude={"proof"})
    if data.get("proposed_by") is None:  # absent: the digest is as before the field existed
        data.pop("proposed_by", None)
    return sha256_hex(canonical_json(data))


def short_digest(digest: str) -> str:
    """The form people compare: the first 12 hex digits in groups of four (``3f2a-9c1b-07de``)."""
    return "-".join(digest[i : i + 4] for i in range(0, 12, 4)) if digest else ""
