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
from pathlib import Path

from tern.models.control import LimitsCheck
from tern.models.ring import EffectLimits, PredictedEffect
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
