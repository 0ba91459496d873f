"""The predicted effect of a magnet write, for the ``check_write`` activity: an adapter from the activity to
:mod:`tern.ring` (present magnet currents read over Channel Access through the worker's CA client, pyAT run in a
thread so the event loop keeps serving other activities).

Fail closed: a mapping or lattice that does not load, a magnet readback that does not answer, or a policy file
that does not read refuses the write (``effect_unpredictable``) rather than asking for approval without the
prediction; ``ring.predict = false`` switches prediction off.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping

from activities.approval import policy_source
from tern.approval.policy import ApprovalPolicyError
from tern.config import TernSettings
from tern.control.ca_client import ChannelAccessClient
from tern.control.channel_io import readback_name
from tern.control.limits import LimitsDatabaseError, split_field
from tern.control.write import load_limits
from tern.models.control import LimitsCheck
from tern.models.ring import (
    EffectLimits,
    MeasuredEffect,
    MeasureEffectInput,
    OrbitCorrectInput,
    OrbitCorrectOutput,
    PlanEffect,
    PredictedEffect,
    RingSnapshot,
)
from tern.ring.correct import correct_orbit
from tern.ring.effect import compare_measured, predict_effect
from tern.ring.mapping import MappingError
from tern.ring.model import RingModel, RingModelError
from tern.ring.service import attach_prediction, model_for, plan_verdict, predict_plan


def _refuse(check: LimitsCheck, message: str) -> LimitsCheck:
    return check.model_copy(update={"allowed": False, "violation": "effect_unpredictable", "message": message})


class _Unpredictable(Exception):
    """Why the effect cannot be predicted (the write is refused ``effect_unpredictable``)."""


async def _present_state(
    settings: TernSettings, ca: ChannelAccessClient
) -> tuple[RingModel, dict[str, float], Callable[[str], EffectLimits]]:
    """The model, the present currents of its mapped magnets (readbacks, A) and a channel -> effect limits function
    (limits database merged with the approval policy, the stricter holds). Raises :class:`_Unpredictable` naming
    what did not load or read."""
    try:
        model = await asyncio.to_thread(model_for, settings.ring.mapping_path)
    except (MappingError, RingModelError, OSError) as exc:
        raise _Unpredictable(f"the ring model does not load, so the effect cannot be predicted: {exc}") from exc
    names = [readback_name(sp) for sp in model.resolved.magnets]
    readings = await ca.read_channels(names, settings.control.ca_timeout_s)
    bad = [r.channel for r in readings if r.error or not isinstance(r.value, int | float)]
    if bad:
        raise _Unpredictable(f"cannot read the present magnet currents for the model: {', '.join(bad[:5])}")
    by_rb = {readback_name(sp): sp for sp in model.resolved.magnets}
    baseline = {by_rb[r.channel]: float(r.value) for r in readings}  # type: ignore[arg-type]
    try:
        limits = load_limits(settings.control)
    except LimitsDatabaseError as exc:
        raise _Unpredictable(f"the limits database does not load, so its effect limits are unknown: {exc}") from exc
    try:
        policy, _ = policy_source(settings).current()
    except ApprovalPolicyError as exc:
        raise _Unpredictable(f"the approval policy does not load, so its effect limits are unknown: {exc}") from exc

    def limits_of(channel: str) -> EffectLimits:
        entry = limits.channels.get(split_field(channel)[0])
        eff = entry.effect_limits() if entry is not None else EffectLimits()
        return eff.merged(policy.effect_limits_for(channel))

    return model, baseline, limits_of


async def with_predicted_effect(
    settings: TernSettings,
    ca: ChannelAccessClient,
    check: LimitsCheck,
    plan_writes: Mapping[str, float] | None = None,
    plan_each: bool = True,
) -> LimitsCheck:
    """``check`` (allowed by the limits) with its predicted effect attached, refused when the effect breaks the
    limits database's or the approval policy's effect limits, leaves no closed orbit, or cannot be predicted.

    ``plan_writes``: the plan's later writes (channel -> value, in order). When they and this write hold two or
    more mapped magnets, the plan is predicted as the whole too (``check.plan_effect``,
    :func:`tern.ring.service.plan_verdict`): the whole is held to the stricter of all its channels' effect limits
    and each write to its own (``plan_each``; else only this one), so a plan that would break one is refused at its
    first request."""
    try:
        model = await asyncio.to_thread(model_for, settings.ring.mapping_path)
    except (MappingError, RingModelError, OSError) as exc:
        return _refuse(check, f"the ring model does not load, so the effect cannot be predicted: {exc}")
    later = {ch: v for ch, v in (plan_writes or {}).items() if model.is_mapped(ch)}
    if not model.is_mapped(check.channel) and not later:
        return check.model_copy(update={"predicted_effect": predict_effect(model, {check.channel: check.value})})
    try:
        model, baseline, limits_of = await _present_state(settings, ca)
    except _Unpredictable as exc:
        return _refuse(check, str(exc))
    order = settings.ring.resonance_order
    if model.is_mapped(check.channel):
        check = await asyncio.to_thread(attach_prediction, check, model, baseline, limits_of(check.channel), order)
    else:
        check = check.model_copy(update={"predicted_effect": predict_effect(model, {check.channel: check.value})})
    if not check.allowed or not later:
        return check
    every = {check.channel: limits_of(check.channel)} | {ch: limits_of(ch) for ch in later}
    return await asyncio.to_thread(plan_verdict, check, model, baseline, later, every, order, plan_each)


async def predict_plan_effect(
    settings: TernSettings, ca: ChannelAccessClient, writes: Mapping[str, float]
) -> PlanEffect | None:
    """A plan's writes (channel -> value, in plan order) predicted as the whole and one by one, for the plan's
    approval (:func:`tern.ring.service.predict_plan`); the effect limits broken are listed in ``violations`` (the
    write checks refuse them again before any write). None when fewer than two writes are mapped magnets. A model,
    magnet readback, limits database or policy that does not load gives an effect that says so (``predicted`` False),
    never a guess."""
    try:
        model = await asyncio.to_thread(model_for, settings.ring.mapping_path)
    except (MappingError, RingModelError, OSError) as exc:
        return PlanEffect(writes=dict(writes), combined=PredictedEffect(predicted=False, message=f"no model: {exc}"))
    if sum(1 for ch in writes if model.is_mapped(ch)) < 2:
        return None
    try:
        model, baseline, limits_of = await _present_state(settings, ca)
    except _Unpredictable as exc:
        return PlanEffect(writes=dict(writes), combined=PredictedEffect(predicted=False, message=str(exc)))
    every = {ch: limits_of(ch) for ch in writes}
    plan, _ = await asyncio.to_thread(predict_plan, model, writes, baseline, every, settings.ring.resonance_order)
    return plan


async def ring_snapshot(settings: TernSettings, ca: ChannelAccessClient, bpms: list[str]) -> RingSnapshot:
    """Read ``bpms`` and the mapping's tune channels through the worker's CA client. A channel that does not answer
    leaves it out and says so in ``error`` (the comparison then covers what was read)."""
    model = await asyncio.to_thread(model_for, settings.ring.mapping_path)
    d = model.mapping.diagnostics
    readings = await ca.read_channels([*bpms, d.tune_x, d.tune_y], settings.control.ca_timeout_s)
    values = {r.channel: float(r.value) for r in readings if not r.error and isinstance(r.value, int | float)}
    missing = [r.channel for r in readings if r.channel not in values]
    tunes = (values[d.tune_x], values[d.tune_y]) if d.tune_x in values and d.tune_y in values else None
    if tunes is not None and not all(math.isfinite(t) for t in tunes):
        tunes = None  # no beam to measure a tune on
    return RingSnapshot(
        bpms={ch: v for ch, v in values.items() if ch in bpms},
        tunes=tunes,
        error=f"not read: {', '.join(missing)}" if missing else "",
    )


async def measure_effect(
    settings: TernSettings, ca: ChannelAccessClient, inp: MeasureEffectInput, heartbeat: Callable[[], None] | None
) -> MeasuredEffect:
    """Wait ``ring.settle_s`` (heartbeating), read the BPMs and tunes again and compare the change with the
    prediction (:func:`tern.ring.effect.compare_measured`, ratio ``ring.unexpected_ratio``). When the effect is
    unexpected the inverse write (back to ``previous_value``) is proposed, never performed."""
    deadline = time.monotonic() + settings.ring.settle_s
    while (left := deadline - time.monotonic()) > 0:
        if heartbeat is not None:
            heartbeat()
        await asyncio.sleep(min(1.0, left))
    after = await ring_snapshot(settings, ca, list(inp.before.bpms))
    change = {ch: after.bpms[ch] - v for ch, v in inp.before.bpms.items() if ch in after.bpms}
    dq = None
    if inp.before.tunes is not None and after.tunes is not None:
        dq = (
            ((after.tunes[0] - inp.before.tunes[0] + 0.5) % 1.0) - 0.5,
            ((after.tunes[1] - inp.before.tunes[1] + 0.5) % 1.0) - 0.5,
        )
    result = compare_measured(inp.effect, change, dq, max_ratio=settings.ring.unexpected_ratio)
    if result.unexpected and inp.previous_value is not None:
        result.proposed_inverse = (inp.channel, inp.previous_value)
        result.message += f"; proposed (not performed): write {inp.channel} back to {inp.previous_value:g}"
    if after.error:
        result.message += f" ({after.error})"
    return result


async def plan_orbit_correction(
    settings: TernSettings, ca: ChannelAccessClient, inp: OrbitCorrectInput
) -> OrbitCorrectOutput:
    """Corrector currents for ``inp.bpms`` from the model around the present magnet currents (read over CA),
    within the limits database's bounds (:func:`tern.ring.correct.correct_orbit`). A request the model cannot
    serve (unknown BPM, mixed planes, currents beyond limits, unreadable magnets) comes back with ``error``."""
    try:
        model = await asyncio.to_thread(model_for, settings.ring.mapping_path)
        limits = load_limits(settings.control)
    except (MappingError, RingModelError, LimitsDatabaseError, OSError) as exc:
        return OrbitCorrectOutput(error=f"the ring model or limits do not load: {exc}")
    names = [readback_name(sp) for sp in model.resolved.magnets]
    readings = await ca.read_channels(names, settings.control.ca_timeout_s)
    bad = [r.channel for r in readings if r.error or not isinstance(r.value, int | float)]
    if bad:
        return OrbitCorrectOutput(error=f"cannot read the present magnet currents: {', '.join(bad[:5])}")
    by_rb = {readback_name(sp): sp for sp in model.resolved.magnets}
    baseline = {by_rb[r.channel]: float(r.value) for r in readings}  # type: ignore[arg-type]
    bounds = {ch: (lim.min_value, lim.max_value) for ch in model.resolved.magnets if (lim := limits.channels.get(ch))}
    try:
        c = await asyncio.to_thread(correct_orbit, model, inp.bpms, baseline, 1e-2, 0.1, bounds)
    except (ValueError, RingModelError) as exc:
        return OrbitCorrectOutput(error=str(exc))
    return OrbitCorrectOutput(
        writes=c.writes,
        expected=c.expected,
        residual_rms_mm=c.residual_rms_mm,
        singular_values_kept=c.singular_values_kept,
    )
