"""The ring model's figures (issue 23): prediction latency as a ratio to pyAT's own get_optics, prediction quality
against the erroneous machine (and how it degrades as the errors grow), and the orbit-correction residual.

``python -m benchmarks.ring [--samples 100] [--latency 30] [--json FILE]``. Everything runs on the shipped mapping
(Australian Synchrotron lattice). Timings are wall-clock on this machine, reported with the floor measured in the
same run (``get_optics`` at the monitors): compare ratios, not milliseconds, across machines.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=100, help="random changes for the quality figures")
    ap.add_argument("--latency", type=int, default=30, help="repetitions for the latency figures")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)

    from tern.control.limits import LimitsDatabase
    from tern.ring.correct import correct_orbit
    from tern.ring.effect import _BEFORE_CACHE, predict_effect
    from tern.ring.model import MachineErrors, RingModel, machine_with_errors

    rng = random.Random(a.seed)
    model = RingModel()
    limits = LimitsDatabase.load(Path(__file__).resolve().parents[1] / "tern" / "data" / "channel_limits.json")
    cors = [ch for ch, b in model.resolved.magnets.items() if b.attribute.startswith("KickAngle")]
    quads = [ch for ch, b in model.resolved.magnets.items() if b.attribute == "K"]

    def random_change(ch: str) -> float:
        lim = limits.channels[ch]
        b = model.resolved.magnets[ch]
        c0 = b.calibration.current(b.design, b.design)
        if ch in cors:
            return rng.uniform(-3.0, 3.0)  # within +-12 A; a quarter of the range keeps the orbit change linear
        span = 0.01 * c0  # +-1 % of a quadrupole's current: a tune-trim sized change, inside its band
        assert lim.min_value is not None and lim.max_value is not None
        return min(lim.max_value, max(lim.min_value, c0 + rng.uniform(-span, span)))

    # --- latency ----------------------------------------------------------------------------------------
    print("latency ...", file=sys.stderr)
    floor = []
    for _ in range(a.latency):
        t = time.perf_counter()
        model.ring.get_optics(refpts=model.monitors)
        floor.append((time.perf_counter() - t) * 1e3)
    one, ten, cold = [], [], []
    for k in range(a.latency):
        w = {rng.choice(cors + quads): 0.0}
        w = {ch: random_change(ch) for ch in w}
        t = time.perf_counter()
        predict_effect(model, w)
        one.append((time.perf_counter() - t) * 1e3)
        plan = {ch: random_change(ch) for ch in rng.sample(cors, 7) + rng.sample(quads, 3)}
        t = time.perf_counter()
        predict_effect(model, plan)
        ten.append((time.perf_counter() - t) * 1e3)
        _BEFORE_CACHE.clear()
        t = time.perf_counter()
        predict_effect(model, w, baseline={quads[0]: random_change(quads[0]) + 1e-6 * k})
        cold.append((time.perf_counter() - t) * 1e3)
    f50 = _pct(floor, 50)
    latency = {
        "get_optics_ms_p50": f50,
        "get_optics_ms_p95": _pct(floor, 95),
        "one_write_ms_p50": _pct(one, 50),
        "one_write_ms_p95": _pct(one, 95),
        "ten_writes_ms_p50": _pct(ten, 50),
        "ten_writes_ms_p95": _pct(ten, 95),
        "one_write_new_baseline_ms_p50": _pct(cold, 50),
        "one_write_new_baseline_ms_p95": _pct(cold, 95),
    }
    latency |= {f"{k[:-7]}ratio_p50": latency[k] / f50 for k in list(latency) if k.endswith("_ms_p50")}

    # --- quality: model vs erroneous machine ----------------------------------------------------------
    bpm_channels = list(model.resolved.bpms)

    def quality(scale: float, samples: int) -> dict[str, float]:
        errors = MachineErrors().scaled(scale)
        machine = machine_with_errors(model, errors)
        m0 = machine.optics()
        noise = np.random.default_rng(a.seed)
        pred_all, meas_all, dq_err = [], [], []
        for _ in range(samples):
            ch = rng.choice(cors + quads)
            v = random_change(ch)
            e = predict_effect(model, {ch: v}, named_bpms=bpm_channels)
            b = machine.resolved.magnets[ch]
            machine.apply({ch: v})
            m1 = machine.optics()
            machine.apply({ch: b.calibration.current(b.design, b.design)})  # back to the start
            if not e.closed_orbit_exists or not m1.stable:
                continue
            for bch in bpm_channels:
                el, p = model.resolved.bpms[bch]
                k = model.monitor_pos[el]
                pred_all.append(e.at_bpms[bch])
                # two noisy readings (before, after): noise sqrt(2) times the BPM noise
                meas_all.append(m1.orbit_mm[k, p] - m0.orbit_mm[k, p] + noise.normal(0, errors.bpm_noise_mm * 1.4142))
            dq_meas = [((x - y + 0.5) % 1) - 0.5 for x, y in zip(m1.tune, m0.tune, strict=True)]
            assert e.dq_x is not None and e.dq_y is not None
            dq_err += [abs(e.dq_x - dq_meas[0]), abs(e.dq_y - dq_meas[1])]
        pred, meas = np.asarray(pred_all), np.asarray(meas_all)
        big = np.abs(pred) > 0.05
        return {
            "error_scale": scale,
            "changes": len(dq_err) // 2,
            "orbit_correlation": float(np.corrcoef(pred, meas)[0, 1]),
            "orbit_ratio_measured_to_predicted": float(np.dot(meas, pred) / np.dot(pred, pred)),
            "orbit_abs_error_p95_mm_where_predicted_above_0.05": _pct(list(np.abs(meas - pred)[big]), 95)
            if big.any()
            else 0.0,
            "tune_shift_error_p50": _pct(dq_err, 50),
            "tune_shift_error_p95": _pct(dq_err, 95),
        }

    print("quality ...", file=sys.stderr)
    qual = [quality(1.0, a.samples)] + [quality(s, max(1, a.samples // 2)) for s in (3.0, 10.0)]

    # --- orbit correction residual --------------------------------------------------------------------
    print("correction ...", file=sys.stderr)
    machine = machine_with_errors(model, MachineErrors())
    corr = []
    lims = {ch: (limits.channels[ch].min_value, limits.channels[ch].max_value) for ch in cors}
    for n, bump in ((7, 0.5), (20, -0.3), (41, 0.5), (41, 1.0)):
        bpm = f"SR:DIAG:BPM:{n:02d}:POSITION:X"
        try:
            c = correct_orbit(model, {bpm: bump}, limits=lims)
        except ValueError as exc:  # beyond the correctors' limits: refused, as the activity would
            corr.append({"bpm": bpm, "requested_mm": bump, "refused": str(exc)})
            continue
        el = model.resolved.bpms[bpm][0]
        m = machine.copy()
        o0 = m.optics()
        m.apply(c.writes)
        got = m.optics().orbit_mm[m.monitor_pos[el], 0] - o0.orbit_mm[m.monitor_pos[el], 0]
        corr.append(
            {
                "bpm": bpm,
                "requested_mm": bump,
                "model_expects_mm": c.expected[bpm],
                "machine_moved_mm": float(got),
                "residual_after_one_iteration_mm": float(bump - got),
                "correctors": len(c.writes),
                "other_bpms_rms_mm": c.residual_rms_mm,
            }
        )
    out = {"latency": latency, "quality": qual, "correction": corr}
    text = json.dumps(out, indent=2)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
