"""A setpoint that differs from its readback (a device that did not follow, a stale setpoint): the step limit and
the small-change rule are measured from what the machine holds, not only from the setpoint (real IOC, real
PostgreSQL). The channels here have readbacks that never follow (tests/conftest.py), so a ``caput`` to the
setpoint leaves the readback where it was."""

from __future__ import annotations

import json
from pathlib import Path

import epics
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.agent import AgentActivities
from tern.control import channel_access as ca
from tern.control.verification import SMALL_CHANGE_FRACTION
from tern.models.activity_io import WriteCheckInput, WriteInput
from tests.conftest import STUCK_SETPOINT, STUCK_WIDE_SETPOINT


def _with(settings, tmp_path: Path, max_steps: dict[str, float], **control):
    """``settings`` with a copy of its limits database giving ``max_steps``, and ``control`` overrides."""
    limits = json.loads(settings.control.limits_path.read_text())
    for channel, step in max_steps.items():
        limits[channel] = {**limits[channel], "max_step": step}
    path = tmp_path / "limits.json"
    path.write_text(json.dumps(limits))
    return settings.model_copy(update={"control": settings.control.model_copy(update={"limits_path": path, **control})})


def _inp(channel: str, value: float, key: str, approved_from: float) -> WriteInput:
    return WriteInput(
        workflow_id="rb",
        step_id="s1",
        idempotency_key=key,
        channel=channel,
        value=value,
        request_id="q1",
        approver="alice",
        approved_from=approved_from,
    )


async def test_step_is_measured_from_the_readback_too(settings, tmp_path) -> None:
    """Setpoint 0.9 above its readback, max_step 1: a write 1.8 above the readback is 0.9 from the setpoint (the
    old rule let it through) but 1.8 from what the machine holds: refused before approval and at execution."""
    rb = ca.read_value(ca.readback_name(STUCK_SETPOINT))
    epics.caput(STUCK_SETPOINT, rb + 0.9, wait=True)
    acts = AgentActivities(_with(settings, tmp_path, {STUCK_SETPOINT: 1.0}))
    env = ActivityEnvironment()
    try:
        check = await env.run(
            acts.check_write, WriteCheckInput(workflow_id="rb", step_id="s", channel=STUCK_SETPOINT, value=rb + 1.8)
        )
        assert not check.allowed and check.violation == "step_too_large", check.message
        assert check.message == f"change {1.8:g} from the readback {rb:g} exceeds max_step 1"
        assert check.current_value == pytest.approx(rb + 0.9) and check.current_readback == pytest.approx(rb)
        with pytest.raises(ApplicationError, match="from the readback") as exc:
            await env.run(acts.write_channel, _inp(STUCK_SETPOINT, rb + 1.8, "k-rb-step", approved_from=rb + 0.9))
        assert exc.value.type == "WriteRefused" and exc.value.non_retryable
        assert ca.read_value(STUCK_SETPOINT) == pytest.approx(rb + 0.9)  # nothing was put
        near = await env.run(  # within 1 of both
            acts.check_write, WriteCheckInput(workflow_id="rb", step_id="s", channel=STUCK_SETPOINT, value=rb + 0.5)
        )
        assert near.allowed, near.message
    finally:
        await acts.close()
        epics.caput(STUCK_SETPOINT, rb, wait=True)


async def test_small_change_is_measured_from_the_readback(settings, tmp_path) -> None:
    """Setpoint 10 A above its readback, tolerance about 3.2 A: a write 1 A above the readback is a large change
    for the setpoint but a small one for the readback the verification reads (the readback as it stands would
    pass). ``refuse`` refuses it; ``tighten`` verifies with 40 % of the 1 A change, not the base tolerance."""
    rb = ca.read_value(ca.readback_name(STUCK_WIDE_SETPOINT))
    epics.caput(STUCK_WIDE_SETPOINT, rb + 10.0, wait=True)
    strict = AgentActivities(_with(settings, tmp_path, {}, small_change_verification="refuse"))
    env = ActivityEnvironment()
    try:
        check = await env.run(
            strict.check_write,
            WriteCheckInput(workflow_id="rb", step_id="s", channel=STUCK_WIDE_SETPOINT, value=rb + 1.0),
        )
        assert not check.allowed and check.violation == "unverifiable_change", check.message
        assert f"(from {rb:g} to {rb + 1.0:g})" in check.message
    finally:
        await strict.close()
    acts = AgentActivities(settings)
    try:
        record = await env.run(
            acts.write_channel, _inp(STUCK_WIDE_SETPOINT, rb + 1.0, "k-rb-small", approved_from=rb + 10.0)
        )
        assert record.tolerance == pytest.approx(SMALL_CHANGE_FRACTION * 1.0), record.message
        assert record.previous_value == pytest.approx(rb + 10.0)
        assert record.verified is False  # the readback never moved
    finally:
        await acts.close()
        epics.caput(STUCK_WIDE_SETPOINT, rb, wait=True)
