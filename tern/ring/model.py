"""A storage-ring model on a pyAT lattice: magnet setpoints in, tunes, closed orbit and beta functions out.

:class:`RingModel` holds one lattice (its own copy) with a resolved mapping (:mod:`tern.ring.mapping`). Setpoints
(A) go through each channel's calibration to an element attribute; :meth:`RingModel.optics` computes, with pyAT's
``get_optics`` (``linopt6`` on the 4D lattice, ``disable_6d()``), the fractional tunes, the closed orbit (mm) and
the beta functions (m) at every monitor, and optionally the chromaticity. An unstable lattice or one whose closed
orbit is not found gives an :class:`Optics` with ``stable=False`` and the reason, never an exception.

:func:`machine_with_errors` builds the simulator's "real machine": the same lattice with seeded, documented errors
(:class:`MachineErrors`: relative quadrupole gradient errors and transverse quadrupole misalignments, Gaussian,
rms given), so model and machine differ as they do in a control room; BPM noise is added by the simulator at read.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tern.ring.mapping import ResolvedMapping, RingMapping, get_attribute, load_mapping, set_attribute


class RingModelError(ValueError):
    """The lattice cannot be loaded or a setpoint cannot be applied; the message says which."""


@dataclass(frozen=True)
class Optics:
    """Linear optics of the ring at one set of setpoints.

    ``tune``: fractional (Qx, Qy); ``orbit_mm``: closed orbit at every monitor, shape (n_monitors, 2) x/y in mm;
    ``beta``: beta functions at the monitors, shape (n_monitors, 2), m; ``chromaticity``: (x, y) or None;
    ``stable``: False when no stable closed orbit exists (``reason`` says why; the arrays are then empty).
    """

    stable: bool
    tune: tuple[float, float] = (math.nan, math.nan)
    orbit_mm: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    beta: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    chromaticity: tuple[float, float] | None = None
    reason: str = ""


def lattice_digest(path: Path) -> str:
    """``sha256:<hex>`` of the lattice file's bytes (what the approval's ``model`` reference names)."""
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def load_lattice(path: Path) -> Any:
    """Load a lattice with ``at.load_lattice`` and switch it to 4D (``disable_6d()``, which returns None).
    Raises :class:`RingModelError` if pyAT cannot read it."""
    import at

    try:
        ring = at.load_lattice(str(path))
    except Exception as e:  # pyAT raises many types for a bad file
        raise RingModelError(f"pyAT cannot load lattice {path}: {e}") from e
    ring.disable_6d()
    return ring


class RingModel:
    """A lattice plus its mapping; setpoints applied through the calibrations.

    Args:
        mapping: a validated :class:`RingMapping` (default: :func:`load_mapping` of the shipped file).
        lattice: an already loaded pyAT lattice to copy instead of reading ``mapping``'s file (tests, errors).

    Raises :class:`RingModelError` / :class:`tern.ring.mapping.MappingError` for a lattice or mapping that does
    not load or fit.
    """

    def __init__(self, mapping: RingMapping | None = None, lattice: Any = None) -> None:
        self.mapping = mapping if mapping is not None else load_mapping()
        self.lattice_path = self.mapping.lattice_path()
        self.digest = lattice_digest(self.lattice_path)
        self.ring = (lattice if lattice is not None else load_lattice(self.lattice_path)).deepcopy()
        self.resolved: ResolvedMapping = self.mapping.resolve(self.ring)
        import at

        self.monitors = self.ring.get_uint32_index(at.Monitor)
        self.monitor_pos = {int(el): k for k, el in enumerate(self.monitors)}
        self.setpoints: dict[str, float] = {}
        # True while the lattice is the mapping's file changed only through :meth:`apply` (so the lattice digest,
        # the mapping and the setpoints say all there is to say about it: what caches may key on); False for a
        # lattice given by the caller or changed otherwise (``machine_with_errors``).
        self.exact_file = lattice is None

    def copy(self) -> RingModel:
        """An independent copy (lattice and setpoints)."""
        new = RingModel.__new__(RingModel)
        new.__dict__.update(self.__dict__)
        new.ring = self.ring.deepcopy()
        new.setpoints = dict(self.setpoints)
        return new

    def is_mapped(self, channel: str) -> bool:
        """Whether ``channel`` is a magnet setpoint of the mapping."""
        return channel in self.resolved.magnets

    def attribute_value(self, channel: str) -> float:
        """The current attribute value (K m^-2 or kick rad) of the element behind magnet ``channel``."""
        b = self.resolved.magnets[channel]
        return get_attribute(self.ring[b.index], b.attribute)

    def value_for(self, channel: str, current: float) -> float:
        """The attribute value that setpoint ``current`` (A) of ``channel`` gives (calibration on design)."""
        b = self.resolved.magnets[channel]
        return b.calibration.value(b.design, current)

    def apply(self, setpoints: dict[str, float]) -> None:
        """Apply magnet setpoints (channel -> A). Raises :class:`RingModelError` for an unmapped channel or a
        value that is not finite."""
        for ch, cur in setpoints.items():
            b = self.resolved.magnets.get(ch)
            if b is None:
                raise RingModelError(f"{ch} is not a magnet of the ring mapping {self.mapping.source}")
            if not math.isfinite(cur):
                raise RingModelError(f"{ch}: setpoint {cur!r} is not finite")
            set_attribute(self.ring[b.index], b.attribute, b.calibration.value(b.design, float(cur)))
            self.setpoints[ch] = float(cur)

    def optics(self, chromaticity: bool = False) -> Optics:
        """Tunes, closed orbit (mm) and beta at the monitors; ``stable=False`` with a reason when the one-turn map
        is unstable or the closed-orbit search fails (pyAT ``get_optics``, which finds the orbit itself)."""
        from at import AtError, AtWarning

        with warnings.catch_warnings():
            warnings.simplefilter("error", AtWarning)  # "orbit not converged" is a failure here, not a warning
            try:
                # get_optics searches the closed orbit itself (find_orbit4); a search that does not converge warns
                # (an error here) and an unstable one-turn map raises
                _, rd, el = self.ring.get_optics(refpts=self.monitors, get_chrom=chromaticity)
            except (AtError, AtWarning, np.linalg.LinAlgError, ValueError, FloatingPointError) as e:
                return Optics(stable=False, reason=f"no stable closed orbit: {e}")
        tune = tuple(float(t) for t in rd.tune[:2])
        beta = np.asarray(el["beta"], dtype=float)
        if not all(math.isfinite(t) for t in tune) or not np.all(np.isfinite(beta)):
            return Optics(stable=False, reason="unstable one-turn map (tunes or beta not real)")
        orbit = np.asarray(el["closed_orbit"], dtype=float)[:, [0, 2]] * 1e3
        if not np.all(np.isfinite(orbit)) or np.max(np.abs(orbit)) > 50.0:
            return Optics(stable=False, reason="no closed orbit (search diverged)")
        chrom = tuple(float(c) for c in rd.chromaticity[:2]) if chromaticity else None
        return Optics(stable=True, tune=(tune[0], tune[1]), orbit_mm=orbit, beta=beta, chromaticity=chrom)  # type: ignore[arg-type]

    def orbit_mm(self) -> np.ndarray | None:
        """Closed orbit (mm) at every monitor, shape (n_monitors, 2) x/y, from ``find_orbit4`` alone (no optics:
        ~5x faster, for response matrices); None when no closed orbit is found."""
        from at import AtError, AtWarning

        with warnings.catch_warnings():
            warnings.simplefilter("error", AtWarning)
            try:
                _, orbit = self.ring.find_orbit4(refpts=self.monitors)
            except (AtError, AtWarning, np.linalg.LinAlgError, ValueError, FloatingPointError):
                return None
        if not np.all(np.isfinite(orbit)) or np.max(np.abs(orbit[:, :4])) > 0.05:
            return None
        return np.asarray(orbit, dtype=float)[:, [0, 2]] * 1e3

    def bpm_readings(self, optics: Optics) -> dict[str, float]:
        """Mapped BPM channel -> closed orbit (mm) from ``optics`` (empty when unstable)."""
        if not optics.stable:
            return {}
        return {ch: float(optics.orbit_mm[self.monitor_pos[el], p]) for ch, (el, p) in self.resolved.bpms.items()}


@dataclass(frozen=True)
class MachineErrors:
    """The simulator machine's errors against the model (Gaussian, seeded).

    ``gradient_rms``: relative quadrupole gradient error (dK/K); ``misalign_rms_m``: transverse quadrupole
    misalignment (x and y), m (pyAT ``shift_elem``: a shifted quadrupole kicks the orbit); ``bpm_noise_mm``: rms
    noise added to every BPM reading, mm; ``seed``: numpy ``default_rng`` seed. Defaults: 1e-3, 10 um, 1 um, 23:
    tunes differ by ~1e-3, the orbit by a few 0.1 mm, as in a commissioned ring.
    """

    gradient_rms: float = 1e-3
    misalign_rms_m: float = 10e-6
    bpm_noise_mm: float = 1e-3
    seed: int = 23

    def scaled(self, factor: float) -> MachineErrors:
        """The same errors (same seed) ``factor`` times larger."""
        return MachineErrors(
            self.gradient_rms * factor, self.misalign_rms_m * factor, self.bpm_noise_mm * factor, self.seed
        )


def machine_with_errors(model: RingModel, errors: MachineErrors) -> RingModel:
    """A copy of ``model`` with ``errors`` applied to every quadrupole (gradient scaled, element shifted).
    The calibrations act on the erroneous design value (a quadrupole that is 0.1 % strong stays 0.1 % strong)."""
    import at

    machine = model.copy()
    rng = np.random.default_rng(errors.seed)
    quads = machine.ring.get_uint32_index(at.Quadrupole)
    for el in quads:
        elem = machine.ring[el]
        elem.PolynomB[1] = elem.PolynomB[1] * (1 + errors.gradient_rms * rng.standard_normal())
        dx, dy = errors.misalign_rms_m * rng.standard_normal(2)
        at.shift_elem(elem, float(dx), float(dy))
    machine.resolved = machine.mapping.resolve(machine.ring)  # design values now the erroneous ones
    machine.exact_file = False  # no longer the file's lattice: never served from a cache keyed on its digest
    return machine
