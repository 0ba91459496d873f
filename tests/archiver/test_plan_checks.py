"""Plans with the step kinds of issue 11 are checked before anything starts: unknown live channels inside a
gather step are refused like any other, archiver channels are left to the archiver, and malformed archiver,
gather and memory steps do not validate."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from starters.client import TernUserError
from starters.plan_file import check_plan_channels
from tern.config import TernSettings
from tern.models import Plan


def plan(*steps: dict) -> Plan:
    return Plan.model_validate({"steps": list(steps)})


def test_gather_sources_are_checked_and_get_ids() -> None:
    s = TernSettings()
    p = plan(
        {"id": "g", "kind": "gather", "sources": [
            {"kind": "channel_read", "channels": ["SR:RF:CAVITY:01:VOLTAGE:SP"]},
            {"kind": "archiver_read", "channels": ["ONLY:IN:THE:ARCHIVER"], "range": "last 1 h"},
        ]},
    )  # fmt: skip
    check_plan_channels(p, s)  # archiver channels are the archiver's to know
    assert [src.id for src in p.steps[0].sources] == ["g.1-channel_read", "g.2-archiver_read"]  # type: ignore[union-attr]
    bad = plan({"id": "g", "kind": "gather", "sources": [{"kind": "channel_read", "channels": ["NO:SUCH:PV"]}]})
    with pytest.raises(TernUserError, match=r"NO:SUCH:PV \(step g.1-channel_read\)"):
        check_plan_channels(bad, s)


@pytest.mark.parametrize(
    ("steps", "reason"),
    [
        ([{"kind": "gather", "sources": []}], "at least 1 item"),
        ([{"kind": "gather", "sources": [{"kind": "control_write", "channel": "A:B", "value": 1}]}], "does not match"),
        ([{"kind": "gather", "timeout_s": 0, "sources": [{"kind": "channel_read", "channels": ["A"]}]}], "greater"),
        (
            [{"id": "x", "kind": "gather", "sources": [{"id": "x", "kind": "channel_read", "channels": ["A"]}]}],
            "duplicate step id 'x'",
        ),
        ([{"id": "calc#write-1", "kind": "respond"}], r"'calc#write-1': '#' is reserved for the ids Tern derives"),
        (
            [{"id": "g", "kind": "gather", "sources": [{"id": "a#1", "kind": "channel_read", "channels": ["A"]}]}],
            "'#' is reserved",
        ),
        ([{"id": "x" * 65, "kind": "respond"}], "is 65 characters; at most 64"),
        ([{"kind": "memory"}], "needs 'text'"),
        ([{"kind": "memory", "action": "recall"}], "needs 'query'"),
        ([{"kind": "memory", "text": "x" * 4001}], "at most 4000 characters"),
    ],
)
def test_malformed_steps_do_not_validate(steps: list[dict], reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        plan(*steps)
