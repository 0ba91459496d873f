"""The Web UI's view of a pending request (tern/approval/render.py), the pending-runs link, and the Decision body
(pure functions and models: no servers)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import ValidationError

from tern.approval.render import (
    APPROVER_PLACEHOLDER,
    MAX_CODE_LINES,
    decided_markdown,
    decision_body,
    finished_markdown,
    md_code,
    md_text,
    pending_markdown,
    step_markdown,
)
from tern.config import TernSettings
from tern.models import ApprovalRecord, ApprovalRequest, Decision, LimitsCheck, Verification
from tern.models.approval import CodeReview

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def write_request(**changes) -> ApprovalRequest:
    check = LimitsCheck(
        channel="SR:RF:CAVITY:01:VOLTAGE:SP",
        value=2.5,
        allowed=True,
        current_value=2.0,
        units="MV",
        min_value=0.0,
        max_value=3.0,
        max_step=0.5,
        verification=Verification(level="readback", tolerance_percent=0.5),
    )
    fields = dict(
        request_id="req-1",
        kind="control_write",
        step_id="write",
        summary="write cavity: 2 -> 2.5 MV",
        requested_by="alice",
        approvers=["alice", "bob", "carol"],
        requested_at=NOW,
        expires_at=NOW + timedelta(minutes=30),
        write=check,
        reason="restore the gradient",
        min_approvals=2,
        allow_self_approval=False,
        policy_version="abc123",
        policy_rule="rule 2",
    )
    return ApprovalRequest.model_validate({**fields, **changes})


def fenced_json(markdown: str) -> dict:
    return json.loads(re.search(r"```json\n(.*?)\n```", markdown, re.S).group(1))  # type: ignore[union-attr]


def test_write_request_says_what_who_until_when_and_the_exact_update() -> None:
    md = pending_markdown(write_request(approved_by=["bob"]), workflow_id="run-1", now=NOW + timedelta(minutes=5))
    for expected in (
        "## Waiting for approval: write `SR:RF:CAVITY:01:VOLTAGE:SP`",
        "**Current value**: 2 MV",
        "**Target**: **2.5 MV** (change +0.5 MV)",
        "min 0 MV, max 3 MV, max step 0.5 MV",
        "readback within 0.5 %",
        "Reason: restore the gradient",
        "**Approvers**: **alice**, **bob**, **carol** (rule 2, policy version `abc123`)",
        "2 different approvers; approved so far: bob",
        "**Not alice**",
        "two-person rule",
        "2026-03-01 12:30:00 UTC (in 25 min)",
        "Update name `decide`",
        "`decide_signal`",
        "`tern approve run-1 --as NAME`",
    ):
        assert expected in md, expected
    assert fenced_json(md) == {"request_id": "req-1", "approver": APPROVER_PLACEHOLDER, "approved": True, "comment": ""}
    assert "<" not in md.replace("\\<", "")  # no HTML: the UI strips it


def test_the_shown_body_is_a_valid_decision_once_named() -> None:
    body = fenced_json(pending_markdown(write_request(), workflow_id="run-1"))
    decision = Decision.model_validate({**body, "approver": "bob"})
    assert decision.request_id == "req-1" and decision.approved and decision.surface is None


def test_python_request_shows_code_risk_and_analysis_and_shortens_long_code() -> None:
    code = "\n".join(f"x{i} = {i}" for i in range(MAX_CODE_LINES + 20))
    req = write_request(
        kind="python",
        step_id="analyse",
        write=None,
        summary="run 100 lines",
        reason="fit",
        allow_self_approval=True,
        min_approvals=1,
        code=CodeReview(
            code=code, objective="fit", analysis="risk low: no findings", risk="low", expected_keys=["fit"], attempt=2
        ),
    )
    md = pending_markdown(req, workflow_id="run-1.analyse")
    assert "## Waiting for approval: run Python code" in md
    for expected in (
        "**Risk**: **low**",
        "**Analysis**: risk low: no findings",
        "**Expected results**: `fit`",
        "**Attempt**: 2",
        "```python\nx0 = 0",
        f"x{MAX_CODE_LINES - 1} = ",
        "`tern show run-1.analyse`",
    ):
        assert expected in md, expected
    assert f"x{MAX_CODE_LINES} = " not in md and "Not alice" not in md and "Reason: fit" not in md


def test_code_with_backtick_fences_cannot_close_the_block() -> None:
    code = 'print("```")\n````\nresults = {}'
    req = write_request(kind="python", write=None, code=CodeReview(code=code))
    md = pending_markdown(req, workflow_id="r")
    block = re.search(r"(`{5,})python\n(.*?)\n\1", md, re.S)
    assert block is not None and block.group(2) == code


def test_text_from_plans_cannot_fake_structure_or_links() -> None:
    req = write_request(reason="see [approve here](http://evil.example) ## now\n- **x**", summary="<b>hi</b>")
    md = pending_markdown(req, workflow_id="r")
    assert "[approve here](http" not in md and "\\[approve here\\]" in md
    assert "\\<b\\>hi\\</b\\>" in md and "\n- **x**" not in md
    assert md_text("a_b*c`d") == "a\\_b\\*c\\`d"
    assert md_code("a`b") == "``a`b``"


def test_run_state_and_endings() -> None:
    assert (
        step_markdown("read", "channel_read", number=1, total=3) == "**Running** step 1 of 3: `read` (channel\\_read)"
    )
    linked = step_markdown("analyse", "python", number=2, total=3, child=("default", "run-1.analyse"))
    assert "[run-1.analyse](/namespaces/default/workflows/run-1.analyse)" in linked
    approved = ApprovalRecord(
        request_id="req-1",
        kind="control_write",
        step_id="write",
        decision="approved",
        approver="carol",
        approved_by=["bob", "carol"],
        decided_at=NOW,
        via="update",
    )
    expired = ApprovalRecord(
        request_id="req-2",
        kind="python",
        step_id="p",
        decision="timed_out",
        decided_at=NOW,
        via="timeout",
        comment="no decision within 60 s",
    )
    assert "**approved** by bob, carol (via update)" in decided_markdown(approved)
    assert "**expired** at 2026-03-01 12:00:00 UTC: no decision within 60 s" in decided_markdown(expired)
    done = finished_markdown("completed", "", [approved, expired])
    assert done.startswith("**Finished: completed**") and done.count("\n\n- Approval request") == 2


def test_decision_surface_is_optional_and_unknown_fields_still_fail() -> None:
    old = Decision.model_validate_json(decision_body("req-1", approver="bob"))  # what the Web UI sends
    assert old.surface is None
    assert Decision(request_id="r", approver="bob", approved=True, surface="cli").surface == "cli"
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        Decision.model_validate({"request_id": "r", "approver": "bob", "approved": True, "aprover": "x"})
    with pytest.raises(ValidationError):
        Decision(request_id="r", approver="bob", approved=True, surface="Web UI; DROP")


def test_pending_url_filters_the_ui_workflow_list() -> None:
    s = TernSettings(temporal={"ui_url": "http://ui.example:8233", "namespace": "ops"})
    url = urlsplit(s.pending_url(kind="control_write", user="alice"))
    assert (url.netloc, url.path) == ("ui.example:8233", "/namespaces/ops/workflows")
    assert parse_qs(url.query)["query"] == [
        'ExecutionStatus = "Running" AND TernPendingApproval != "none" AND TernPendingApproval = "control_write" '
        'AND TernUser = "alice"'
    ]
    with pytest.raises(ValueError, match="visibility query"):
        s.pending_url(user='x" OR TernUser != "')


def test_write_request_shows_the_readback_the_step_was_measured_from() -> None:
    """A setpoint that differs from its readback: the approver sees both (the step is checked from each)."""
    req = write_request()
    req.write.current_readback = 1.8  # type: ignore[union-attr]
    md = pending_markdown(req, workflow_id="run-1", now=NOW)
    assert "**Current value**: 2 MV (readback 1.8 MV)" in md
    assert "**Current value**: 2 MV\n" in pending_markdown(write_request(), workflow_id="run-1", now=NOW)


def test_write_values_are_shown_exactly_not_rounded_to_six_digits() -> None:
    """Issue 22: ``:g`` showed 499.6544 as 499.654 while 499.6544 was written. The Web UI and the chat card
    (same lines) show the value, the current value, the limits and the change exactly."""
    from tern.chat.bridge import _write_text
    from tern.chat.cards import card_markdown
    from tern.chat.store import Ending

    req = write_request(
        write=LimitsCheck(
            channel="SR:MAG:Q1:SP",
            value=499.6544,
            allowed=True,
            current_value=499.0,
            current_readback=498.99987,
            units="A",
            min_value=-500.0001,
            max_value=500.0001,
            max_step=1.0000001,
            verification=Verification(level="readback", tolerance_absolute=0.0000123),
        )
    )
    for md in (
        pending_markdown(req, workflow_id="run-1", now=NOW),
        card_markdown(req, workflow_id="run-1", now=NOW),
    ):
        assert "**Target**: **499.6544 A** (change +0.6544 A)" in md
        assert "**Current value**: 499 A (readback 498.99987 A)" in md
        assert "min -500.0001 A, max 500.0001 A, max step 1.0000001 A" in md
        assert "within 1.23e-05 A" in md
    end = Ending("approved", "bob", "", write_done=True, readback=499.65439, verified=True, write_value=499.6544)
    assert _write_text(end) == "**Written and verified**: readback 499.65439 (target 499.6544)"


def test_exact_number_round_trips() -> None:
    from tern.approval.render import exact_change, exact_number

    for value in (499.6544, 0.1 + 0.2, 1e-7, 1e16, -3.0, 123456789.123456, 2.5):
        assert float(exact_number(value)) == value
    assert exact_number(500.0) == "500"
    assert exact_change(2.0, 2.5) == "-0.5"
    assert exact_change(0.30000000000000004, 0.1) == "+0.20000000000000004"
