"""A plan with several magnet writes predicted as the whole (issue 23): the combined effect of all its mapped writes
applied together, and each alone, checked against pyAT computed independently here (the lattice loaded anew, every
element changed by hand from the mapping's documented calibration); the effect limits hold for the whole as well as
for each write; on the real approval path (Temporal dev server, PostgreSQL, the caproto IOC) the first request of a
two-write plan carries ``plan_effect`` in ``tern show RUN --json``, and rejecting it writes nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import at  # pyAT: a dependency of Tern, never skipped
import machine_data
import pytest

from activities.agent import AgentActivities
from tern.approval.render import _effect_lines
from tern.control.channel_access import read_value
from tern.models import Decision, LimitsCheck, Plan
from tern.models.activity_io import WriteCheckInput
from tern.models.ring import EffectLimits, PlanPredictInput
from tern.ring.live import read_baseline
from tern.ring.model import RingModel
from tern.ring.service import predict_plan
from tests.agent_helpers import running_worker, start_run, wait_for_state
from workflows.agent_run import AgentRunWorkflow

LATTICE = os.path.join(os.path.dirname(machine_data.__file__), "australian_synchrotron.m")
QF11 = "SR:MAG:QF:11:CURRENT:SP"  # the 11th QFB quadrupole; K = K_design * I / 368.6181 A (mapping, current0[10])
QF11_CURRENT0 = 368.6181
HCM14, HCM15 = "SR:MAG:HCM:14:CURRENT:SP", "SR:MAG:HCM:15:CURRENT:SP"  # Correctors 14 and 15, 20 urad per A


@pytest.fixture(scope="module")
def model() -> RingModel:
    return RingModel()


def _fresh_ring():
    ring = at.load_lattice(LATTICE)
    ring.disable_6d()
    return ring


def _set_by_hand(ring, design, changes: dict[str, float]) -> None:
    """Apply the plan's writes to ``ring`` from the mapping's documented calibration, not through tern."""
    cors = [e for e in ring if isinstance(e, at.Corrector)]
    qfb = [e for e in ring if e.FamName == "QFB"]
    qfb_design = [e for e in design if e.FamName == "QFB"]
    for ch, amps in changes.items():
        if ch == QF11:
            qfb[10].PolynomB[1] = qfb_design[10].PolynomB[1] * amps / QF11_CURRENT0
        elif ch.startswith("SR:MAG:HCM:"):
            cors[int(ch.split(":")[3]) - 1].KickAngle[0] = 2.0e-5 * amps
        else:
            raise AssertionError(ch)


def test_plan_combined_and_each_match_independent_pyat(model: RingModel) -> None:
    writes = {QF11: 372.0, HCM14: 6.0}
    plan, violations = predict_plan(model, writes, {}, {})
    assert violations == [] and list(plan.writes) == [QF11, HCM14]
    design = _fresh_ring()
    ring = _fresh_ring()
    q0 = ring.get_tune()
    _set_by_hand(ring, design, writes)
    q1 = ring.get_tune()
    c = plan.combined
    assert c.predicted and c.closed_orbit_exists
    assert abs(c.dq_x - (q1[0] - q0[0])) < 1e-4 and abs(c.dq_y - (q1[1] - q0[1])) < 1e-4
    assert abs(q1[0] - q0[0]) > 1e-3  # big enough for the comparison to mean something
    assert {ch.channel for ch in c.model.changes} == set(writes)
    for ch, amps in writes.items():  # each alone, from the same state
        alone = _fresh_ring()
        _set_by_hand(alone, design, {ch: amps})
        qa = alone.get_tune()
        e = plan.per_write[ch]
        assert abs(e.dq_x - (qa[0] - q0[0])) < 1e-4 and abs(e.dq_y - (qa[1] - q0[1])) < 1e-4
    # the orbit change of the whole at the monitors, against pyAT's find_orbit4
    mons = design.get_uint32_index(at.Monitor)
    _, o0 = design.find_orbit4(refpts=mons)
    _, o1 = ring.find_orbit4(refpts=mons)
    assert c.orbit_max_mm[0] == pytest.approx(abs(o1[:, 0] - o0[:, 0]).max() * 1e3, rel=1e-3, abs=1e-4)
    text = plan.summary()
    assert "plan as a whole (2 writes" in text and f"dQx {c.dq_x:+.5f}" in text and HCM14 in text


def test_effect_limits_hold_for_the_whole_as_well_as_each(model: RingModel) -> None:
    writes = {HCM14: 5.0, HCM15: 5.0}  # neighbours, same sign: their orbit changes add up
    plan, _ = predict_plan(model, writes, {}, {})
    each = max(max(plan.per_write[ch].orbit_max_mm) for ch in writes)
    whole = max(plan.combined.orbit_max_mm)
    assert whole > 1.3 * each  # the whole moves the orbit further than either alone
    limit = EffectLimits(max_orbit_change_mm=round(1.15 * each, 3))
    plan, violations = predict_plan(model, writes, {}, {HCM14: limit, HCM15: limit})
    assert len(violations) == 1 and violations[0].startswith("the plan as a whole (2 writes): predicted orbit change")
    assert plan.violations == violations and "REFUSED BY EFFECT LIMITS" in plan.summary()
    tight = EffectLimits(max_orbit_change_mm=round(0.5 * each, 3))  # on one channel only: the whole holds to it too
    _, violations = predict_plan(model, writes, {}, {HCM15: tight})
    assert any(v.startswith("the plan as a whole") for v in violations)
    assert any(v.startswith(f"{HCM15} alone:") for v in violations)
    assert not any(v.startswith(f"{HCM14} alone:") for v in violations)


def test_the_approval_text_carries_the_plan_block(model: RingModel) -> None:
    plan, _ = predict_plan(model, {HCM14: 2.0, QF11: 370.0}, {}, {})
    check = LimitsCheck(channel=HCM14, value=2.0, allowed=True, plan_effect=plan)
    text = "\n".join(_effect_lines(check))
    assert "plan as the whole" in text and f"dQy {plan.combined.dq_y:+.5f}" in text and QF11 in text


async def _check(settings, channel: str, value: float, later: dict[str, float]) -> LimitsCheck:
    acts = AgentActivities(settings)
    try:
        return await acts.check_write(
            WriteCheckInput(workflow_id="run-ring-plan", step_id="w", channel=channel, value=value, plan_writes=later)
        )
    finally:
        await acts.close()


async def test_check_write_refuses_a_plan_whose_whole_breaks_the_limits_database(settings, tmp_path: Path) -> None:
    alone = await _check(settings, HCM14, read_value(HCM14) + 5.0, {})
    each = max(alone.predicted_effect.orbit_max_mm)
    base = json.loads(settings.control.limits_path.read_text())
    for ch in (HCM14, HCM15):
        base[ch]["max_orbit_change_mm"] = round(1.2 * each, 3)
    path = tmp_path / "limits.json"
    path.write_text(json.dumps(base))
    s = settings.model_copy(update={"control": settings.control.model_copy(update={"limits_path": path})})
    single = await _check(s, HCM14, read_value(HCM14) + 5.0, {})
    assert single.allowed and single.plan_effect is None
    refused = await _check(s, HCM14, read_value(HCM14) + 5.0, {HCM15: read_value(HCM15) + 5.0})
    assert not refused.allowed and refused.violation == "effect_limit", refused.message
    assert "the plan as a whole (2 writes)" in refused.message
    assert refused.plan_effect is not None and max(refused.plan_effect.combined.orbit_max_mm) > 1.2 * each


async def test_predict_plan_activity_reads_the_present_currents(settings) -> None:
    acts = AgentActivities(settings)
    try:
        one = await acts.predict_plan(PlanPredictInput(writes={HCM14: 1.0, "SR:RF:CAVITY:01:VOLTAGE:SP": 1.0}))
        two = await acts.predict_plan(PlanPredictInput(writes={HCM14: 1.0, HCM15: 1.0}))
    finally:
        await acts.close()
    assert one is None  # one mapped write: nothing to take together
    assert two is not None and two.combined.predicted and set(two.per_write) == {HCM14, HCM15}


async def test_first_request_of_a_two_write_plan_carries_the_whole(temporal_env, settings) -> None:
    qf_now, cor_now = read_value(QF11), read_value(HCM14)
    writes = {QF11: round(qf_now + 3.0, 3), HCM14: round(cor_now + 6.0, 3)}
    plan = Plan.model_validate(
        {
            "steps": [
                {"id": "quad", "kind": "control_write", "channel": QF11, "value": writes[QF11], "reason": "test"},
                {"id": "kick", "kind": "control_write", "channel": HCM14, "value": writes[HCM14], "reason": "test"},
                {"id": "answer", "kind": "respond"},
            ]
        }
    )
    async with running_worker(temporal_env.client, settings):
        handle = await start_run(temporal_env.client, settings, plan)
        st = await wait_for_state(handle, "awaiting_approval", within_s=60)
        dumped = json.loads(json.dumps(st.model_dump(mode="json")))  # what `tern show RUN --json` prints
        # independent: the IOC's present currents through the model, then the two changes by hand with pyAT
        m = RingModel()
        m.apply(read_baseline(m))
        ring = m.ring.deepcopy()
        ring.disable_6d()
        q0 = ring.get_tune()
        _set_by_hand(ring, _fresh_ring(), writes)
        q1 = ring.get_tune()
        await handle.execute_update(
            AgentRunWorkflow.decide,
            Decision(request_id=st.pending.request_id, approver="bob", approved=False, comment="test: not now"),
        )
        result = await handle.result()
    pe = dumped["pending"]["write"]["plan_effect"]
    assert list(pe["writes"]) == [QF11, HCM14] and set(pe["per_write"]) == {QF11, HCM14}
    assert abs(pe["combined"]["dq_x"] - (q1[0] - q0[0])) < 1e-4 and abs(pe["combined"]["dq_y"] - (q1[1] - q0[1])) < 1e-4
    assert abs(q1[0] - q0[0]) > 1e-3
    assert (
        result.writes == []
        and read_value(QF11) == pytest.approx(qf_now)
        and read_value(HCM14) == pytest.approx(cor_now)
    )
