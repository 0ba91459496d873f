"""The predicted effect of magnet writes, computed with the MODEL lattice, and the checks made with it.

:func:`predict_effect` applies the present setpoints (baseline), computes the optics, applies the plan's writes
together, computes again and reports: tune shift, closed-orbit change at every monitor (rms, max, x/y, mm) and at
named BPM channels, beta-beat rms (%), the resonance lines m*Qx + n*Qy = p (|m| + |n| <= order) the working point
crosses on the way, and whether a stable closed orbit still exists. :func:`check_effect` compares it with
:class:`tern.models.ring.EffectLimits`; :func:`compare_measured` sets measured values against predicted ones.

Resonance crossing: the fractional tune change is taken as the shortest one (|dQ| < 0.5); a line is crossed when
m*Qx + n*Qy passes an integer p between before and after (or lands on it).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Mapping

import numpy as np

from tern.models.ring import (
    EffectCheck,
    EffectLimits,
    MeasuredEffect,
    ModelChange,
    ModelReference,
    PredictedEffect,
    Resonance,
)
from tern.ring.model import Optics, RingModel

_LOCK = threading.Lock()  # one model, one lattice: predictions on it run one at a time


def _resonances(before: tuple[float, float], after: tuple[float, float], order: int) -> list[Resonance]:
    def unwrap(a: float, b: float) -> float:
        d = (b - a + 0.5) % 1.0 - 0.5
        return a + d

    qx1, qy1 = unwrap(before[0], after[0]), unwrap(before[1], after[1])
    out: list[Resonance] = []
    for m in range(-order, order + 1):
        for n in range(-order, order + 1):
            o = abs(m) + abs(n)
            if o == 0 or o > order or (m < 0 or (m == 0 and n < 0)):  # m*Qx+n*Qy and its negative: one line
                continue
            f0, f1 = m * before[0] + n * before[1], m * qx1 + n * qy1
            lo, hi = min(f0, f1), max(f0, f1)
            for p in range(math.ceil(lo), math.floor(hi) + 1):
                if lo < p <= hi or p == f1:
                    out.append(Resonance(m=m, n=n, p=p, order=o))
    return out


_BEFORE_CACHE: dict[tuple[int, tuple[tuple[str, float], ...]], Optics] = {}
_BEFORE_CACHE_SIZE = 64


def _optics_for(model: RingModel, setpoints: Mapping[str, float], cache: bool = False) -> Optics:
    model.apply(dict(setpoints))
    key = (id(model), tuple(sorted(model.setpoints.items())))
    if cache and key in _BEFORE_CACHE:
        return _BEFORE_CACHE[key]
    optics = model.optics()
    if cache:
        if len(_BEFORE_CACHE) >= _BEFORE_CACHE_SIZE:
            _BEFORE_CACHE.pop(next(iter(_BEFORE_CACHE)))
        _BEFORE_CACHE[key] = optics
    return optics


def predict_effect(
    model: RingModel,
    targets: Mapping[str, float],
    baseline: Mapping[str, float] | None = None,
    named_bpms: Iterable[str] = (),
    resonance_order: int = 3,
    top_bpms: int = 0,
    orbit_profile: bool = False,
) -> PredictedEffect:
    """Predict the effect of writing ``targets`` (channel -> A) together, from ``baseline`` (channel -> A; mapped
    magnets not in it stay at their design value).

    Args:
        model: the MODEL lattice (never the simulator's erroneous machine); it is left as it was.
        targets: the plan's writes; channels not in the mapping are listed in ``unmapped`` and not predicted.
        baseline: present setpoints of mapped magnets (unmapped names are ignored).
        named_bpms: BPM channels (``...:POSITION:X``) whose orbit change is reported one by one.
        resonance_order: highest order of resonance line checked for crossing (>= 1).
        top_bpms: also report the ``top_bpms`` mapped BPM channels of each plane whose change is largest (the
            ones measured against the prediction after the write).
        orbit_profile: also report the change at every monitor (``orbit_change_mm``, (x, y) mm, lattice order,
            rounded to 10 nm): the chat card's plot.

    Returns a :class:`PredictedEffect`; ``predicted=False`` when no written channel is mapped. Raises
    ``ValueError`` for a non-finite target or an order below 1.
    """
    if resonance_order < 1:
        raise ValueError(f"resonance_order must be >= 1, got {resonance_order}")
    for ch, v in targets.items():
        if not math.isfinite(v):
            raise ValueError(f"{ch}: target {v!r} is not finite")
    mapped = {ch: float(v) for ch, v in targets.items() if model.is_mapped(ch)}
    unmapped = sorted(ch for ch in targets if not model.is_mapped(ch))
    if not mapped:
        return PredictedEffect(
            predicted=False,
            unmapped=unmapped,
            message=f"{', '.join(unmapped) or 'nothing'} not in the ring mapping ({model.mapping.source}): "
            "no prediction",
        )
    base = {ch: float(v) for ch, v in (baseline or {}).items() if model.is_mapped(ch)}
    t0 = time.perf_counter()
    with _LOCK:
        saved = {ch: model.attribute_value(ch) for ch in model.resolved.magnets}
        saved_sp = dict(model.setpoints)
        try:
            before = _optics_for(model, base, cache=True)  # the same present state for a plan's steps
            changes = []
            for ch, cur in mapped.items():
                b = model.resolved.magnets[ch]
                cur0 = base.get(ch, b.calibration.current(b.design, b.design))
                changes.append(
                    ModelChange(
                        channel=ch,
                        element=b.family,
                        index=b.index,
                        attribute=b.attribute,
                        before=model.attribute_value(ch),
                        after=model.value_for(ch, cur),
                        current_before=cur0,
                        current_after=cur,
                    )
                )
            after = _optics_for(model, mapped)
        finally:
            from tern.ring.mapping import set_attribute

            for ch, v in saved.items():
                b = model.resolved.magnets[ch]
                set_attribute(model.ring[b.index], b.attribute, v)
            model.setpoints = saved_sp
    ref = ModelReference(
        lattice_file=str(model.lattice_path), digest=model.digest, mapping_file=model.mapping.source, changes=changes
    )
    ms = (time.perf_counter() - t0) * 1e3
    if not before.stable:
        return PredictedEffect(
            predicted=True,
            closed_orbit_exists=False,
            unmapped=unmapped,
            model=ref,
            compute_ms=ms,
            message=f"the present setpoints already leave no stable closed orbit in the model: {before.reason}",
        )
    if not after.stable:
        return PredictedEffect(
            predicted=True,
            closed_orbit_exists=False,
            unmapped=unmapped,
            model=ref,
            tune_before=before.tune,
            compute_ms=ms,
            message=f"after these writes the model has {after.reason}",
        )
    d_orbit = after.orbit_mm - before.orbit_mm
    absd = np.abs(d_orbit)
    imax = absd.argmax(axis=0)
    bb = (after.beta - before.beta) / before.beta * 100.0
    named = {}
    for ch in named_bpms:
        if ch in model.resolved.bpms:
            el, p = model.resolved.bpms[ch]
            named[ch] = float(d_orbit[model.monitor_pos[el], p])
    if top_bpms > 0:
        for plane, suffix in ((0, ":X"), (1, ":Y")):
            chans = [(ch, el) for ch, (el, p) in model.resolved.bpms.items() if p == plane and ch.endswith(suffix)]
            chans.sort(key=lambda c: -abs(d_orbit[model.monitor_pos[c[1]], plane]))
            for ch, el in chans[:top_bpms]:
                named[ch] = float(d_orbit[model.monitor_pos[el], plane])
    dq = [((a - b + 0.5) % 1.0) - 0.5 for a, b in zip(after.tune, before.tune, strict=True)]
    return PredictedEffect(
        predicted=True,
        unmapped=unmapped,
        tune_before=before.tune,
        tune_after=after.tune,
        dq_x=dq[0],
        dq_y=dq[1],
        orbit_rms_mm=(float(np.sqrt(np.mean(d_orbit[:, 0] ** 2))), float(np.sqrt(np.mean(d_orbit[:, 1] ** 2)))),
        orbit_max_mm=(float(absd[imax[0], 0]), float(absd[imax[1], 1])),
        orbit_max_at=(int(model.monitors[imax[0]]), int(model.monitors[imax[1]])),
        at_bpms=named,
        beta_beat_rms_pct=(float(np.sqrt(np.mean(bb[:, 0] ** 2))), float(np.sqrt(np.mean(bb[:, 1] ** 2)))),
        resonance_order=resonance_order,
        resonances_crossed=_resonances(before.tune, after.tune, resonance_order),
        model=ref,
        compute_ms=ms,
        orbit_change_mm=[(round(float(x), 5), round(float(y), 5)) for x, y in d_orbit] if orbit_profile else None,
    )


def check_effect(effect: PredictedEffect, limits: EffectLimits) -> EffectCheck:
    """Check ``effect`` against ``limits``: no stable closed orbit always refuses; each limit broken adds one
    sentence. An effect that was not predicted (unmapped channel) passes: there is nothing to check."""
    if not effect.predicted:
        return EffectCheck(allowed=True)
    if not effect.closed_orbit_exists:
        return EffectCheck(allowed=False, violations=[f"no closed orbit: {effect.message}"])
    v: list[str] = []
    if limits.max_orbit_change_mm is not None and effect.orbit_max_mm is not None:
        worst = max(effect.orbit_max_mm)
        if worst > limits.max_orbit_change_mm:
            v.append(f"predicted orbit change {worst:.3f} mm exceeds max_orbit_change_mm {limits.max_orbit_change_mm}")
    if limits.max_tune_shift is not None and effect.dq_x is not None and effect.dq_y is not None:
        worst = max(abs(effect.dq_x), abs(effect.dq_y))
        if worst > limits.max_tune_shift:
            v.append(f"predicted tune shift {worst:.5f} exceeds max_tune_shift {limits.max_tune_shift}")
    if limits.forbid_resonance_order is not None:
        bad = [r for r in effect.resonances_crossed if r.order <= limits.forbid_resonance_order]
        if bad:
            lines = ", ".join(f"{r.m}Qx{r.n:+d}Qy={r.p}" for r in bad)
            v.append(f"the working point crosses {lines} (forbid_resonance_order {limits.forbid_resonance_order})")
    return EffectCheck(allowed=not v, violations=v)


def compare_measured(
    effect: PredictedEffect,
    measured_bpm_change: Mapping[str, float],
    measured_dq: tuple[float, float] | None,
    max_ratio: float = 0.5,
    floor_mm: float = 0.05,
    floor_tune: float = 2e-3,
) -> MeasuredEffect:
    """Measured against predicted, per quantity. A quantity counts toward ``unexpected`` when its prediction is
    above the noise floor (``floor_mm`` for orbit, ``floor_tune`` for tune) and |measured - predicted| /
    |predicted| exceeds ``max_ratio``."""
    q: dict[str, tuple[float, float]] = {}
    ratios: list[float] = []
    for ch, pred in effect.at_bpms.items():
        if ch in measured_bpm_change:
            meas = float(measured_bpm_change[ch])
            q[ch] = (pred, meas)
            if abs(pred) >= floor_mm:
                ratios.append(abs(meas - pred) / abs(pred))
    if measured_dq is not None and effect.dq_x is not None and effect.dq_y is not None:
        for name, pred, meas in (("dQx", effect.dq_x, measured_dq[0]), ("dQy", effect.dq_y, measured_dq[1])):
            q[name] = (pred, float(meas))
            if abs(pred) >= floor_tune:
                ratios.append(abs(meas - pred) / abs(pred))
    worst = max(ratios) if ratios else None
    unexpected = worst is not None and worst > max_ratio
    parts = [
        f"{k}: predicted {p:+.3f} mm, measured {m:+.3f} mm"
        if k.startswith("SR:") or "BPM" in k
        else f"{k}: predicted {p:+.5f}, measured {m:+.5f}"
        for k, (p, m) in q.items()
    ]
    msg = "; ".join(parts) or "nothing measured to compare"
    if unexpected:
        msg = f"EFFECT UNEXPECTED (worst deviation {worst:.0%} of prediction > {max_ratio:.0%}): " + msg
    return MeasuredEffect(quantities=q, worst_ratio=worst, unexpected=unexpected, message=msg)
