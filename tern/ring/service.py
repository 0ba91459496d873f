"""The predicted effect on a write's limits check: one model per worker process, reloaded when the mapping or the
lattice file changes, and the rule that turns a prediction into a verdict.

:func:`attach_prediction` is what the ``check_write`` activity calls for a write the limits allow: a channel not
in the mapping passes unchanged with a prediction that says so; a mapped one gets its
:class:`~tern.models.ring.PredictedEffect` and is refused (``no_closed_orbit`` or ``effect_limit``, with the
sentence) when it leaves no stable closed orbit or breaks an effect limit, so the refusal is audited like any limit
violation and no approval is asked.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path

from tern.models.control import LimitsCheck
from tern.models.ring import EffectLimits, PlanEffect, PredictedEffect
from tern.ring.effect import check_effect, predict_effect
from tern.ring.mapping import DEFAULT_MAPPING, load_mapping
from tern.ring.model import RingModel

_models: dict[Path, tuple[tuple[float, float], RingModel]] = {}
_models_lock = threading.Lock()


def model_for(mapping_path: Path | None) -> RingModel:
    """The process's model for ``mapping_path`` (None: the shipped mapping), loaded once and again when the
    mapping or lattice file changes (mtime). Raises :class:`tern.ring.mapping.MappingError` /
    :class:`tern.ring.model.RingModelError` for a mapping or lattice that does not load."""
    path = (mapping_path or DEFAULT_MAPPING).resolve()
    with _models_lock:
        cached = _models.get(path)
        if cached is not None:
            stamp = (path.stat().st_mtime, cached[1].lattice_path.stat().st_mtime)
            if stamp == cached[0]:
                return cached[1]
        model = RingModel(load_mapping(path))
        _models[path] = ((path.stat().st_mtime, model.lattice_path.stat().st_mtime), model)
        return model


def attach_prediction(
    check: LimitsCheck,
    model: RingModel,
    baseline: dict[str, float],
    limits: EffectLimits,
    resonance_order: int = 3,
    named_bpms: list[str] | None = None,
) -> LimitsCheck:
    """``check`` with ``predicted_effect`` set, refused when the prediction breaks ``limits`` or leaves no closed
    orbit. ``baseline``: present currents of the mapped magnets (channel -> A). Blocking (pyAT, ~0.1-0.3 s)."""
    effect = predict_effect(
        model,
        {check.channel: check.value},
        baseline=baseline,
        named_bpms=named_bpms or (),
        resonance_order=resonance_order,
        top_bpms=1,  # the BPM of largest change in each plane: what is measured after the write
        orbit_profile=True,  # the chat card's orbit-change plot
    )
    return verdict(check, effect, limits)


def verdict(check: LimitsCheck, effect: PredictedEffect, limits: EffectLimits) -> LimitsCheck:
    """``check`` carrying ``effect``, refused (``no_closed_orbit`` / ``effect_limit``) when ``effect`` breaks
    ``limits``; the message names every limit broken."""
    result = check_effect(effect, limits)
    update: dict[str, object] = {"predicted_effect": effect}
    if not result.allowed:
        violation = "no_closed_orbit" if not effect.closed_orbit_exists else "effect_limit"
        update |= {"allowed": False, "violation": violation, "message": "; ".join(result.violations)}
    return check.model_copy(update=update)


def predict_plan(
    model: RingModel,
    writes: Mapping[str, float],
    baseline: Mapping[str, float],
    limits_for: Mapping[str, EffectLimits],
    resonance_order: int = 3,
    each: bool = True,
) -> tuple[PlanEffect, list[str]]:
    """A plan's magnet writes predicted as the whole and one by one, and the effect limits applied to both.

    Args:
        writes: channel -> A, in plan order (a channel written twice counts with its last value).
        baseline: present currents of the mapped magnets (channel -> A); every prediction starts from it.
        limits_for: channel -> its effect limits (limits database merged with policy); the whole is checked
            against the stricter of all of them (:meth:`EffectLimits.merged`), each write against its own.
        each: also predict each write alone (``per_write``); False: only the whole (one prediction, for the later
            requests of a plan whose writes were each predicted at its first).

    Returns ``(plan_effect, violations)``: one sentence per limit broken, by the whole (``"the plan as a whole
    ..."``) or by one write (``"<channel> alone: ..."``); empty when the plan passes. Blocking (pyAT: one
    closed-orbit computation per mapped write plus one for the whole)."""
    whole = EffectLimits()
    for ch in writes:
        whole = whole.merged(limits_for.get(ch))
    combined = predict_effect(
        model, dict(writes), baseline=baseline, resonance_order=resonance_order, top_bpms=1, orbit_profile=True
    )
    per: dict[str, PredictedEffect] = {}
    violations = [f"the plan as a whole ({len(writes)} writes): {v}" for v in check_effect(combined, whole).violations]
    for ch, amps in writes.items() if each else ():
        e = predict_effect(model, {ch: amps}, baseline=baseline, resonance_order=resonance_order)
        per[ch] = e
        violations += [f"{ch} alone: {v}" for v in check_effect(e, limits_for.get(ch, EffectLimits())).violations]
    plan = PlanEffect(writes=dict(writes), combined=combined, per_write=per, limits=whole, violations=violations)
    return plan, violations


def plan_verdict(
    check: LimitsCheck,
    model: RingModel,
    baseline: dict[str, float],
    plan_writes: Mapping[str, float],
    limits_for: Mapping[str, EffectLimits],
    resonance_order: int = 3,
    each: bool = True,
) -> LimitsCheck:
    """``check`` (already carrying its own prediction) with ``plan_effect`` for itself followed by the plan's later
    writes ``plan_writes``; refused (``no_closed_orbit`` when the whole leaves none, else ``effect_limit``) when the
    whole or any one write breaks its effect limits. Fewer than two mapped writes: ``check`` unchanged."""
    writes = {check.channel: check.value, **plan_writes}  # a channel written again: its last value
    if sum(1 for ch in writes if model.is_mapped(ch)) < 2:
        return check
    plan, violations = predict_plan(model, writes, baseline, limits_for, resonance_order, each)
    update: dict[str, object] = {"plan_effect": plan}
    if violations and check.allowed:
        violation = "no_closed_orbit" if not plan.combined.closed_orbit_exists else "effect_limit"
        update |= {"allowed": False, "violation": violation, "message": "; ".join(violations)}
    return check.model_copy(update=update)
