"""benchmarks/load.py's outcome classifier (issue 28): a failure is excused only by the injected fault that caused
it, named with the run it hit; a scripted reject and a scripted timeout each require their own outcome."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from temporalio.api.history.v1 import History, HistoryEvent

from benchmarks.fault_kit import FaultyLLM
from benchmarks.load import _write_span, classify

RUN = "load-0a1b2c-0007"
OTHER = "load-0a1b2c-0008"
ENDPOINT = "planning failed: planner: chat endpoint http://127.0.0.1:1/v1"
ERR_500 = f"{ENDPOINT}: HTTP 500: Error code: 500 - load: injected 500"
ERR_429 = f"{ENDPOINT}: HTTP 429: Error code: 429 - load: injected 429"
ERR_TIMEOUT = f"{ENDPOINT}: APITimeoutError: Request timed out."
UNVERIFIED = "write not verified: readback 1.0 != 2.0 after 1.5 s"


def spec(kind: str, action: str, run: str = RUN) -> dict:
    return {"id": run, "kind": kind, "action": action}


@pytest.mark.parametrize(
    ("action", "state", "verdict"),
    [
        ("approve", "completed", "expected"),
        ("none", "completed", "expected"),
        ("reject", "rejected", "expected"),
        ("timeout", "timed_out", "expected"),
        ("reject", "timed_out", "unexpected"),  # each used to accept the other's outcome
        ("timeout", "rejected", "unexpected"),
        ("approve", "rejected", "unexpected"),
        ("reject", "completed", "unexpected"),
        ("approve", "error", "unexpected"),
    ],
)
def test_each_scripted_action_requires_its_own_outcome(action: str, state: str, verdict: str) -> None:
    assert classify(spec("write", action), state, None) == (verdict, None)


def test_an_llm_failure_is_excused_only_by_a_fault_served_to_that_run_with_its_signs() -> None:
    ask = spec("ask", "none")
    for error, kind in ((ERR_500, "500"), (ERR_429, "429"), (ERR_TIMEOUT, "timeout")):
        assert classify(ask, "failed", error, llm_hits={RUN: ["500", "429", "timeout"]}) == (
            "llm_fault",
            f"injected LLM {kind} served to {RUN}",
        )
    # a fault served to another run, or of another kind, excuses nothing
    assert classify(ask, "failed", ERR_500, llm_hits={OTHER: ["500"]})[0] == "unexpected"
    assert classify(ask, "failed", ERR_500, llm_hits={RUN: ["timeout"]})[0] == "unexpected"
    assert classify(ask, "failed", ERR_TIMEOUT, llm_hits={RUN: ["429"]})[0] == "unexpected"
    # the words the old classifier matched: "rate" in "generate", any "timed out"
    for error in ("planning failed: could not generate a plan", "step read: channel read timed out"):
        assert classify(ask, "failed", error, llm_hits={RUN: ["500", "429", "timeout"]})[0] == "unexpected"
    # the fault's text outside the planner (the answer LLM has its own fallback) is not the planner failing
    assert classify(ask, "failed", "answer: HTTP 500 load: injected 500", llm_hits={RUN: ["500"]})[0] == "unexpected"
    # only asked runs plan through the LLM
    assert classify(spec("read", "none"), "failed", ERR_500, llm_hits={RUN: ["500"]})[0] == "unexpected"


def test_an_unverified_write_is_excused_only_by_a_stall_that_overlapped_it() -> None:
    write = spec("write", "approve")
    span = (100.0, 103.0)
    assert classify(write, "failed", UNVERIFIED, write_span=span, ioc_stalls=[(102.5, 110.0)]) == (
        "ioc_stall",
        "IOC frozen 102.5..110.0 during the write 100.0..103.0",
    )
    assert classify(write, "failed", UNVERIFIED, write_span=span, ioc_stalls=[(90.0, 100.5)])[0] == "ioc_stall"
    # a stall elsewhere in the run (the old rule: any stall anywhere) excuses nothing
    assert classify(write, "failed", UNVERIFIED, write_span=span, ioc_stalls=[(103.5, 110.0)])[0] == "unexpected"
    assert classify(write, "failed", UNVERIFIED, write_span=span, ioc_stalls=[])[0] == "unexpected"
    assert classify(write, "failed", UNVERIFIED, write_span=None, ioc_stalls=[(0.0, 1e12)])[0] == "unexpected"
    # another failure during the stall is not excused by it
    assert classify(write, "failed", "write refused", write_span=span, ioc_stalls=[(100.0, 110.0)])[0] == "unexpected"


def _event(event_id: int, at: float, kind: str, **attrs: object) -> HistoryEvent:
    e = HistoryEvent(event_id=event_id)
    e.event_time.FromDatetime(datetime.fromtimestamp(at, UTC))
    getattr(e, f"activity_task_{kind}_event_attributes").MergeFrom(
        type(getattr(e, f"activity_task_{kind}_event_attributes"))(**attrs)
    )
    return e


def test_write_span_runs_from_the_write_activitys_start_to_its_last_close() -> None:
    from temporalio.api.common.v1 import ActivityType

    events = [
        _event(5, 10.0, "scheduled", activity_type=ActivityType(name="read_channels")),
        _event(6, 11.0, "started", scheduled_event_id=5),
        _event(7, 12.0, "completed", scheduled_event_id=5),
        _event(9, 20.0, "scheduled", activity_type=ActivityType(name="write_channel")),
        _event(10, 21.0, "started", scheduled_event_id=9),
        _event(11, 24.5, "completed", scheduled_event_id=9),
    ]
    assert _write_span(History(events=events)) == (21.0, 24.5)
    assert _write_span(History(events=events[:3])) is None


async def test_faulty_llm_records_which_run_each_fault_was_served_to() -> None:
    llm = FaultyLLM(["SR:DIAG:DCCT:01:CURRENT:RB"], window_s=600)
    async with await llm.serve() as base:
        llm.open_window()
        async with httpx.AsyncClient(base_url=base) as http:
            first, second = [
                await http.post(
                    "/v1/chat/completions",
                    json={"model": "scripted", "messages": [{"role": "user", "content": f"load run {run}"}]},
                )
                for run in (RUN, OTHER)
            ]
    assert (first.status_code, second.status_code) == (500, 429)
    assert "load: injected 500" in first.text
    assert llm.hits == {RUN: ["500"], OTHER: ["429"]}
    assert llm.injected == {"500": 1, "429": 1, "timeout": 0}
