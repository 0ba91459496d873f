"""The predicted effect of a magnet write, for the ``check_write`` activity: an adapter from the activity to
:mod:`tern.ring` (present magnet currents read over Channel Access through the worker's CA client, pyAT run in a
thread so the event loop keeps serving other activities).

Fail closed: a mapping or lattice that does not load, a magnet readback that does not answer, or a policy file
that does not read refuses the write (``effect_unpredictable``) rather than asking for approval without the
prediction; ``ring.predict = false`` switches prediction off.
"""

from __future__ import annotations

import asyncio

from activities.approval import policy_source
from tern.approval.policy import ApprovalPolicyError
from tern.config import TernSettings
from tern.control.ca_client import ChannelAccessClient
from tern.control.channels import readback_name
from tern.control.limits import LimitsDatabaseError, split_field
from tern.control.write import load_limits
from tern.models.control import LimitsCheck
from tern.models.ring import EffectLimits
from tern.ring.effect import predict_effect
from tern.ring.mapping import MappingError
from tern.ring.model import RingModelError
from tern.ring.service import attach_prediction, model_for


def _refuse(check: LimitsCheck, message: str) -> LimitsCheck:
    return check.model_copy(update={"allowed": False, "violation": "effect_unpredictable", "message": message})


async def with_predicted_effect(settings: TernSettings, ca: ChannelAccessClient, check: LimitsCheck) -> LimitsCheck:
    """``check`` (allowed by the limits) with its predicted effect attached, refused when the effect breaks the
    limits database's or the approval policy's effect limits, leaves no closed orbit, or cannot be predicted."""
    try:
        model = await asyncio.to_thread(model_for, settings.ring.mapping_path)
    except (MappingError, RingModelError, OSError) as exc:
        return _refuse(check, f"the ring model does not load, so the effect cannot be predicted: {exc}")
    if not model.is_mapped(check.channel):
        return check.model_copy(update={"predicted_effect": predict_effect(model, {check.channel: check.value})})
    names = [readback_name(sp) for sp in model.resolved.magnets]
    readings = await ca.read_channels(names, settings.control.ca_timeout_s)
    bad = [r.channel for r in readings if r.error or not isinstance(r.value, int | float)]
    if bad:
        return _refuse(check, f"cannot read the present magnet currents for the model: {', '.join(bad[:5])}")
    by_rb = {readback_name(sp): sp for sp in model.resolved.magnets}
    baseline = {by_rb[r.channel]: float(r.value) for r in readings}  # type: ignore[arg-type]
    try:
        limits = load_limits(settings.control)
    except LimitsDatabaseError as exc:
        return _refuse(check, f"the limits database does not load, so its effect limits are unknown: {exc}")
    entry = limits.channels.get(split_field(check.channel)[0])
    eff = entry.effect_limits() if entry is not None else EffectLimits()
    try:
        policy, _ = policy_source(settings).current()
    except ApprovalPolicyError as exc:
        return _refuse(check, f"the approval policy does not load, so its effect limits are unknown: {exc}")
    eff = eff.merged(policy.effect_limits_for(check.channel))
    return await asyncio.to_thread(attach_prediction, check, model, baseline, eff, settings.ring.resonance_order)
