"""Approval metrics are counted in the audit-recording activity, once per audit row: a retried activity (the
same event key) counts nothing more; partial approvals do not close a request; the wait is measured from the
request's row. Real PostgreSQL; prometheus_client's default registry read back as a scrape would."""

from __future__ import annotations

import uuid

import pytest
from prometheus_client import REGISTRY

from activities.agent import AgentActivities
from tern.config import TernSettings
from tern.models import AuditEvent

pytestmark = pytest.mark.postgres


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_each_audit_row_counts_once(pg_dsn: str, tmp_path) -> None:
    acts = AgentActivities(TernSettings(data_dir=tmp_path, database={"url": pg_dsn}))
    kind = "kind-" + uuid.uuid4().hex[:6]  # a label value no other test uses
    run, req = "run-" + uuid.uuid4().hex[:6], "req-1"
    base = {"run_id": run, "request_id": req, "step_id": "write"}
    requested = AuditEvent(
        event_kind="approval_requested", event_key=f"requested:{req}", details={"kind": kind}, **base
    )
    partial = AuditEvent(
        event_kind="decision",
        event_key=f"decision:{req}:alice",
        decision="approved",
        actor="alice",
        details={"kind": kind, "via": "cli", "approval": "1 of 2"},
        **base,
    )
    final = AuditEvent(
        event_kind="decision",
        event_key=f"decision:{req}",
        decision="approved",
        actor="bob",
        details={"kind": kind, "via": "cli"},
        **base,
    )
    waits = value("tern_approval_wait_seconds_count")
    try:
        assert await acts.record_audit(requested) and not await acts.record_audit(requested)  # retried: no row
        assert value("tern_approval_requests_total", kind=kind) == 1
        assert await acts.record_audit(partial)
        assert value("tern_approval_decisions_total", kind=kind, decision="approved", via="cli") == 0
        assert await acts.record_audit(final) and not await acts.record_audit(final)
        assert value("tern_approval_decisions_total", kind=kind, decision="approved", via="cli") == 1
        assert value("tern_approval_wait_seconds_count") == waits + 1
        cancelled = AuditEvent(
            event_kind="approval_cancelled", event_key="cancelled:req-2", details={"kind": kind}, workflow_id=run
        )
        assert await acts.record_audit(cancelled)
        assert value("tern_approval_decisions_total", kind=kind, decision="cancelled", via="cancel") == 1
    finally:
        await acts.close()
