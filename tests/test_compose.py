"""The template answer composer: citations only of retrieved entries, readable numbers."""

from __future__ import annotations

from tern.agent.compose import checked_citations, compose
from tern.models import ChannelReading, LogbookHit, StepResult
from tern.models.activity_io import ComposeInput


def test_citations_are_only_retrieved_entries_in_order() -> None:
    assert checked_citations("see [#A] and [#X] then [#B] and [#A]", {"A", "B"}) == ["A", "B"]


def test_answer_cites_hits_and_formats_readings_with_precision() -> None:
    steps = [
        StepResult(
            step_id="s",
            kind="logbook_search",
            status="completed",
            hits=[LogbookHit(entry_id="DEMO-1", title="RF trip")],
        ),
        StepResult(
            step_id="r",
            kind="channel_read",
            status="completed",
            readings=[
                ChannelReading(channel="P", value=7.965069130975199, units="kW", precision=3),
                ChannelReading(channel="Q", value=None, error="not connected"),
            ],
        ),
    ]
    ans = compose(ComposeInput(workflow_id="x", user="u", query="q?", steps=steps))
    assert ans.citations == ["DEMO-1"]
    assert "- P = 7.965 kW" in ans.answer
    assert "- Q: unavailable (not connected)" in ans.answer


def test_no_hits_no_citations() -> None:
    steps = [StepResult(step_id="s", kind="logbook_search", status="completed", hits=[])]
    ans = compose(ComposeInput(workflow_id="x", user="u", query="q?", steps=steps))
    assert ans.citations == [] and "No logbook entries matched" in ans.answer
