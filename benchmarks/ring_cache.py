"""The orbit response-matrix cache (issue 23): ``correct_orbit`` with the cache emptied before each call (the
baseline: the matrix computed, 32 closed-orbit searches) against the same call served from the cache, in the same
run, as a ratio; plus one call after a magnet current changed (computed anew: the cache must not serve it).

``python -m benchmarks.ring_cache [--repeat 5] [--json FILE]``. Wall-clock on this machine: compare the ratio,
not the milliseconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5, help="calls per case (each case's median is reported)")
    ap.add_argument("--json", type=Path, default=None, help="write the figures here as JSON too")
    a = ap.parse_args(argv)
    if a.repeat < 1:
        ap.error("--repeat must be at least 1")

    from tern.ring.correct import clear_response_cache, correct_orbit
    from tern.ring.model import RingModel

    model = RingModel()
    bpm = "SR:DIAG:BPM:07:POSITION:X"
    lims = {ch: (-12.0, 12.0) for ch in model.resolved.magnets}

    def timed(baseline: dict[str, float] | None, clear: bool) -> tuple[float, dict[str, float]]:
        if clear:
            clear_response_cache()
        t = time.perf_counter()
        c = correct_orbit(model, {bpm: 0.5}, baseline=baseline, limits=lims)
        return (time.perf_counter() - t) * 1e3, c.writes

    cold, warm, changed = [], [], []
    for k in range(a.repeat):
        print(f"repetition {k + 1}/{a.repeat} ...", file=sys.stderr)
        ms, w_cold = timed(None, clear=True)
        cold.append(ms)
        ms, w_warm = timed(None, clear=False)
        warm.append(ms)
        if w_warm != w_cold:
            print("the cached matrix gave other currents than the computed one", file=sys.stderr)
            return 1
        ms, _ = timed({"SR:MAG:QF:03:CURRENT:SP": 374.0 + 0.01 * k}, clear=False)  # a current changed: anew
        changed.append(ms)
    out = {
        "repeat": a.repeat,
        "uncached_ms_p50": statistics.median(cold),
        "cached_ms_p50": statistics.median(warm),
        "current_changed_ms_p50": statistics.median(changed),
    }
    out["speedup_p50"] = out["uncached_ms_p50"] / out["cached_ms_p50"]
    out["current_changed_ratio_p50"] = out["current_changed_ms_p50"] / out["uncached_ms_p50"]
    print(json.dumps(out, indent=2))
    if a.json is not None:
        a.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
