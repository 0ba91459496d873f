"""The simulator's storage ring: magnet and diagnostic channels served from one erroneous pyAT lattice.

The "real machine" is :func:`tern.ring.model.machine_with_errors` of the mapping's lattice (seeded quadrupole
gradient and alignment errors, :class:`tern.ring.model.MachineErrors`). A mapped magnet acts on the lattice when its
readback follows its setpoint (the magnet's field follows its current); BPM positions (mm) are the machine's closed
orbit at the mapped monitors plus Gaussian noise (``bpm_noise_mm``) drawn at every publish; ``SR:DIAG:TUNE:X/Y``
are its fractional tunes and ``SR:DIAG:CHROM:X/Y`` its chromaticity. An optics change is computed in a worker
thread (pyAT takes ~0.1 s; the CA event loop keeps serving), at most once per ``min_interval_s``; a lattice left
without a stable closed orbit keeps the BPMs at their last values and publishes NaN tunes (no beam to measure).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from pathlib import Path

import numpy as np

from tern.ring.mapping import load_mapping
from tern.ring.model import MachineErrors, Optics, RingModel, machine_with_errors

log = logging.getLogger(__name__)


class RingSimulation:
    """The erroneous machine behind the simulator's ring channels.

    Args:
        mapping_path: the mapping file (None: the shipped one).
        errors: the machine's errors against the model.
        min_interval_s: shortest time between two optics recomputations, s (rate limit).
    """

    def __init__(
        self, mapping_path: Path | None = None, errors: MachineErrors | None = None, min_interval_s: float = 0.2
    ) -> None:
        self.errors = errors or MachineErrors()
        self.model = RingModel(load_mapping(mapping_path))
        self.machine = machine_with_errors(self.model, self.errors)
        self.min_interval_s = min_interval_s
        self._rng = np.random.default_rng(self.errors.seed + 1)
        self._dirty = False
        self._last = 0.0
        self._pending: dict[str, float] = {}
        self.optics: Optics = self.machine.optics(chromaticity=True)
        self.recomputes = 0
        self._chrom = self.optics.chromaticity

    @property
    def diagnostics(self) -> dict[str, str]:
        """quantity ("tune_x", ...) -> channel name, for the channels the mapping names."""
        d = self.model.mapping.diagnostics
        named = {"tune_x": d.tune_x, "tune_y": d.tune_y, "chrom_x": d.chromaticity_x, "chrom_y": d.chromaticity_y}
        return {k: v for k, v in named.items() if v}

    def is_magnet(self, channel: str) -> bool:
        """Whether setpoint ``channel`` drives an element of the lattice."""
        return self.model.is_mapped(channel)

    def is_bpm(self, channel: str) -> bool:
        """Whether ``channel`` is a BPM position the lattice serves."""
        return channel in self.model.resolved.bpms

    def set_current(self, channel: str, current: float) -> None:
        """Queue magnet ``channel`` at ``current`` (A); the next :meth:`step` applies it."""
        if math.isfinite(current):
            self._pending[channel] = current
            self._dirty = True

    def _recompute(self, setpoints: dict[str, float]) -> Optics:
        self.machine.apply(setpoints)
        return self.machine.optics(chromaticity=True)

    async def step(self) -> bool:
        """Recompute the optics in a thread if a magnet changed and the rate limit allows; True if recomputed."""
        if not self._dirty or time.monotonic() - self._last < self.min_interval_s:
            return False
        setpoints, self._pending, self._dirty = self._pending, {}, False
        self._last = time.monotonic()
        try:
            optics = await asyncio.to_thread(self._recompute, setpoints)
        except Exception:  # never let a model failure stop the IOC
            log.exception("ring: optics recomputation failed")
            return False
        self.recomputes += 1
        if optics.stable:
            self.optics = optics
            self._chrom = optics.chromaticity
        else:
            log.warning("ring: the machine has no stable closed orbit now (%s)", optics.reason)
            self.optics = Optics(stable=False, orbit_mm=self.optics.orbit_mm, reason=optics.reason)
        return True

    def readings(self) -> dict[str, float]:
        """Channel -> value to publish now: BPM positions (closed orbit + noise, mm), tunes, chromaticity."""
        out: dict[str, float] = {}
        o = self.optics
        if o.orbit_mm.size:
            for ch, (el, p) in self.model.resolved.bpms.items():
                noise = float(self._rng.normal(0.0, self.errors.bpm_noise_mm)) if self.errors.bpm_noise_mm else 0.0
                out[ch] = float(o.orbit_mm[self.model.monitor_pos[el], p]) + noise
        diag = self.diagnostics
        values = {
            "tune_x": o.tune[0] if o.stable else math.nan,
            "tune_y": o.tune[1] if o.stable else math.nan,
            "chrom_x": self._chrom[0] if self._chrom and o.stable else math.nan,
            "chrom_y": self._chrom[1] if self._chrom and o.stable else math.nan,
        }
        for k, ch in diag.items():
            out[ch] = float(values[k])
        return out
