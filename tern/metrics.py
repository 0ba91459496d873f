"""Tern's Prometheus metrics (prometheus_client, default registry), counted where the event happens: in the
core or in activities, never in workflow code (workflows are replayed; a counter there would count replays).

The worker serves them on ``/metrics`` (:mod:`worker.health`); ``infra/prometheus/alerts.yml`` alerts on them
(``tests/test_alerts.py`` keeps the rules naming only metrics defined here). Names follow the Prometheus
naming conventions (``_total`` for counters, base units: seconds).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from tern.models.audit import AuditEvent

APPROVAL_WAIT_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 86400)

approval_requests = Counter(
    "tern_approval_requests_total", "Approval requests opened (audited once each), by request kind.", ["kind"]
)
approval_decisions = Counter(
    "tern_approval_decisions_total",
    "Approval requests closed (approved, rejected, timed_out, cancelled), by request kind and the surface they came "
    "through (cli, web_ui, chat, signal ...).",
    ["kind", "decision", "via"],
)
approval_wait = Histogram(
    "tern_approval_wait_seconds",
    "From an approval request to its final decision, seconds.",
    buckets=APPROVAL_WAIT_BUCKETS,
)
writes = Counter(
    "tern_writes_total",
    "Control writes that reached an outcome: verified, unverified (put done, verification failed or none), "
    "refused (limits or checks at execution time), unknown (interrupted; machine state not the target).",
    ["outcome"],
)
write_refusals = Counter(
    "tern_write_refusals_total",
    "Proposed or approved writes refused by a check, by reason (the limits check's violation, "
    "value_changed_since_approval, writes_disabled ...).",
    ["reason"],
)
sandbox_executions = Counter(
    "tern_sandbox_executions_total",
    "Sandboxed executions of analysis code, by outcome (the result's status, or sandbox_unavailable / "
    "sandbox_error when the sandbox itself failed).",
    ["outcome"],
)
sandbox_duration = Histogram(
    "tern_sandbox_execution_seconds",
    "Wall-clock time of one sandboxed execution (container start to result), seconds.",
    ["outcome"],
    buckets=(0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600),
)
llm_tokens = Counter(
    "tern_llm_tokens_total",
    "LLM tokens reported by the endpoint's usage field, by role (what the call was for: codegen, rag, chat) "
    "and kind (prompt, completion).",
    ["role", "kind"],
)
ariel_search = Histogram(
    "tern_ariel_search_seconds",
    "One ARIEL logbook search, seconds, by the mode asked for (keyword, semantic, hybrid, rag).",
    ["mode"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


def count_audit_event(event: AuditEvent, waited_s: float | None = None) -> None:
    """Count one audit event that was recorded for the first time (never a retried or replayed one).

    ``approval_requested`` opens a request, ``approval_refused`` (the policy refused it) opens and closes
    one, ``approval_cancelled`` closes one as ``cancelled``. ``decision`` (the final one: a partial approval of a
    request that needs several carries ``details["approval"]``) and ``approval_timed_out`` close one, observed
    in the wait histogram when ``waited_s`` (seconds since the request) is known. Other kinds count nothing (writes are
    counted by :func:`count_write`)."""
    kind = str(event.details.get("kind", "unknown"))
    if event.event_kind == "approval_requested":
        approval_requests.labels(kind=kind).inc()
    elif event.event_kind == "approval_refused":  # the policy refused it: opened and closed at once
        approval_requests.labels(kind=kind).inc()
        approval_decisions.labels(kind=kind, decision="rejected", via="policy").inc()
    elif event.event_kind == "approval_cancelled":  # the run was cancelled while the request waited
        approval_decisions.labels(kind=kind, decision="cancelled", via="cancel").inc()
    elif event.event_kind in ("decision", "approval_timed_out"):
        final = "approval" not in event.details
        decision = event.decision or ("timed_out" if event.event_kind == "approval_timed_out" else "unknown")
        via = str(event.details.get("via") or ("timeout" if decision == "timed_out" else "unknown"))
        if final:
            approval_decisions.labels(kind=kind, decision=decision, via=via).inc()
            if waited_s is not None:
                approval_wait.observe(max(0.0, waited_s))


def count_write(outcome: str, refusal: str | None = None) -> None:
    """Count a write's outcome (``verified``, ``unverified``, ``refused``, ``unknown``), and for a refusal its
    reason."""
    writes.labels(outcome=outcome).inc()
    if refusal is not None:
        write_refusals.labels(reason=refusal).inc()
