"""Orbit correction from the model: the orbit response matrix and an SVD solve with a documented cut.

Response matrix ``R`` (mm per A): column j is the change of the closed orbit at the plane's mapped BPMs when
corrector j's current grows by ``delta_a`` (finite difference on the MODEL lattice, around the present setpoints).
A request "move the orbit at these BPMs by these amounts" is the target vector ``t`` (mm) with the named BPMs at
their requested change and every other BPM of the plane at 0, weighted ``hold_weight`` (default 0.1) against 1 for
the named ones: a bump that is as local as the correctors allow. The currents solve ``min |W (R dI - t)|`` by the
pseudo-inverse from the SVD ``R = U S V^T`` keeping only the singular
values ``s_i >= cut * s_max`` (default cut 1e-2: modes 100 times weaker than the strongest are dropped, so noise-like
modes do not ask for large currents; Numerical Recipes 2.6, "SVD of a square matrix ... zero the small w_j").

The result lists the corrector writes (A, absolute, rounded to 1 mA) and the residual the model expects: each of
those writes is then checked, predicted and approved like any other.

``R`` costs one closed-orbit search per corrector (32 on the shipped mapping); it is cached per process, keyed by
the lattice file's digest, the mapping's digest, the plane, ``delta_a`` and every magnet current applied (so a
change of any of them computes it anew). Only a model whose lattice is its file's (``RingModel.exact_file``) is
cached: an erroneous machine copy never is.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np
from pydantic import BaseModel, Field

from tern.ring.model import RingModel, RingModelError


class OrbitCorrection(BaseModel):
    """The corrector writes for a requested orbit change, and what the model expects of them."""

    plane: str
    writes: dict[str, float] = Field(description="Corrector setpoint channel -> new current, A (absolute).")
    requested: dict[str, float] = Field(description="BPM channel -> requested orbit change, mm.")
    expected: dict[str, float] = Field(description="BPM channel -> orbit change the model expects, mm.")
    residual_rms_mm: float = Field(description="rms of (expected - target) over the plane's mapped BPMs.")
    singular_values_kept: int
    singular_values_total: int
    cut: float


RESPONSE_CACHE_SIZE = 32  # matrices kept (LRU); one is 72 x 32 floats: 18 kB
_response_cache: OrderedDict[tuple[object, ...], tuple[np.ndarray, list[str], list[str]]] = OrderedDict()
_response_lock = threading.Lock()  # the activity calls from worker threads (asyncio.to_thread)


def mapping_digest(model: RingModel) -> str:
    """``sha256:<hex>`` of the model's mapping (every entry, calibration and the file it came from)."""
    return "sha256:" + hashlib.sha256(model.mapping.model_dump_json().encode()).hexdigest()


def clear_response_cache() -> None:
    """Forget every cached response matrix (benchmarks; a process that reloads its lattice files in place)."""
    with _response_lock:
        _response_cache.clear()


def response_matrix(
    model: RingModel, plane: str, baseline: Mapping[str, float] | None = None, delta_a: float = 1.0
) -> tuple[np.ndarray, list[str], list[str]]:
    """``(R, bpm_channels, corrector_channels)``: R in mm per A, shape (n_bpm, n_corrector), for plane ``"x"`` or
    ``"y"``, from the model around ``baseline`` (channel -> A). Cached (see the module docstring); each call gets
    its own copy. Raises :class:`RingModelError` when the model has no stable closed orbit there."""
    if plane not in ("x", "y"):
        raise ValueError(f"plane must be 'x' or 'y', got {plane!r}")
    if not model.exact_file:
        return _response_matrix(model, plane, baseline, delta_a)
    currents = {**model.setpoints, **{ch: float(v) for ch, v in (baseline or {}).items() if model.is_mapped(ch)}}
    key = (model.digest, mapping_digest(model), plane, float(delta_a), tuple(sorted(currents.items())))
    with _response_lock:
        hit = _response_cache.get(key)
        if hit is not None:
            _response_cache.move_to_end(key)
    if hit is None:
        hit = _response_matrix(model, plane, baseline, delta_a)
        with _response_lock:
            _response_cache[key] = hit
            while len(_response_cache) > RESPONSE_CACHE_SIZE:
                _response_cache.popitem(last=False)
    r, bpms, cors = hit
    return r.copy(), list(bpms), list(cors)


def _response_matrix(
    model: RingModel, plane: str, baseline: Mapping[str, float] | None, delta_a: float
) -> tuple[np.ndarray, list[str], list[str]]:
    p = 0 if plane == "x" else 1
    attr = f"KickAngle.{plane}"
    cors = [ch for ch, b in model.resolved.magnets.items() if b.attribute == attr]
    bpms = [ch for ch, (_, q) in model.resolved.bpms.items() if q == p]
    rows = [model.monitor_pos[model.resolved.bpms[ch][0]] for ch in bpms]
    m = model.copy()
    m.apply(dict(baseline or {}))
    if not m.optics().stable:
        raise RingModelError("no response matrix: the model has no stable closed orbit at these setpoints")
    o0 = m.orbit_mm()
    assert o0 is not None
    cols = []
    for ch in cors:
        i0 = m.setpoints.get(ch, 0.0)
        m.apply({ch: i0 + delta_a})
        o1 = m.orbit_mm()
        m.apply({ch: i0})
        if o1 is None:
            raise RingModelError(f"no response matrix: {ch} + {delta_a} A leaves no closed orbit")
        cols.append((o1[rows, p] - o0[rows, p]) / delta_a)
    return np.column_stack(cols), bpms, cors


def correct_orbit(
    model: RingModel,
    requested: Mapping[str, float],
    baseline: Mapping[str, float] | None = None,
    cut: float = 1e-2,
    hold_weight: float = 0.1,
    limits: Mapping[str, tuple[float | None, float | None]] | None = None,
) -> OrbitCorrection:
    """Corrector currents that move the orbit at the ``requested`` BPM channels (channel -> mm, one plane) by the
    amounts given, others held (see the module docstring).

    Args:
        model: the model lattice; left unchanged.
        requested: BPM position channels (``...:POSITION:X``) -> change in mm; all in one plane.
        baseline: present magnet currents (channel -> A); correctors not in it are at their design 0 A.
        cut: relative singular value cut, 0 < cut < 1.
        hold_weight: weight of "no change" at the plane's other BPMs against 1 at the named ones (0: only the
            named BPMs count, minimum-norm currents; larger: a more local bump, less of the requested change).
        limits: corrector channel -> (min, max) A; a solution outside them raises ``ValueError`` naming it.

    Raises ``ValueError`` for an unknown BPM, mixed planes, a bad cut or currents out of limits.
    """
    if not 0 < cut < 1:
        raise ValueError(f"cut must be between 0 and 1, got {cut}")
    if not requested:
        raise ValueError("nothing requested: give at least one BPM channel and its orbit change in mm")
    planes = set()
    for ch in requested:
        if ch not in model.resolved.bpms:
            raise ValueError(f"{ch} is not a BPM of the ring mapping")
        planes.add(model.resolved.bpms[ch][1])
    if len(planes) != 1:
        raise ValueError("requested BPMs must all be in one plane (X or Y)")
    plane = "x" if planes.pop() == 0 else "y"
    base = dict(baseline or {})
    r, bpms, cors = response_matrix(model, plane, base)
    if hold_weight < 0:
        raise ValueError(f"hold_weight must be >= 0, got {hold_weight}")
    target = np.zeros(len(bpms))
    weight = np.full(len(bpms), hold_weight)
    for ch, v in requested.items():
        target[bpms.index(ch)] = v
        weight[bpms.index(ch)] = 1.0
    rows = weight > 0
    a = r[rows] * weight[rows, None]
    u, s, vt = np.linalg.svd(a, full_matrices=False)
    keep = s >= cut * s[0]
    d_i = vt[keep].T @ ((u[:, keep].T @ (target[rows] * weight[rows])) / s[keep])
    expected_all = r @ d_i
    writes: dict[str, float] = {}
    for ch, d in zip(cors, d_i, strict=True):
        if abs(d) < 5e-4:
            continue
        new = round(base.get(ch, 0.0) + float(d), 3)
        lo, hi = (limits or {}).get(ch, (None, None))
        if (lo is not None and new < lo) or (hi is not None and new > hi):
            raise ValueError(f"the correction needs {ch} = {new} A, outside its limits [{lo}, {hi}]")
        writes[ch] = new
    return OrbitCorrection(
        plane=plane,
        writes=writes,
        requested=dict(requested),
        expected={ch: float(expected_all[bpms.index(ch)]) for ch in requested},
        residual_rms_mm=float(np.sqrt(np.mean((expected_all - target) ** 2))),
        singular_values_kept=int(keep.sum()),
        singular_values_total=len(s),
        cut=cut,
    )
