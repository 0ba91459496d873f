"""The mapping file: which channel drives which lattice element, with which calibration (TOML, validated by pydantic).

The default is ``tern/data/ring_mapping.toml`` (the Australian Synchrotron ring shipped with pyAT, named as the
limits database names the storage ring); its comments document the format. :func:`load_mapping` validates the file
and :meth:`RingMapping.resolve` binds it to a loaded lattice (element indices), failing with a
:class:`MappingError` that names the entry for anything that does not fit (no such family, too few elements, an
attribute the element lacks).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DEFAULT_MAPPING = Path(__file__).resolve().parent.parent / "data" / "ring_mapping.toml"
"""The mapping shipped with Tern (the Australian Synchrotron lattice, the limits database's storage-ring names)."""

ATTRIBUTES = ("K", "KickAngle.x", "KickAngle.y")
"""Element attributes a magnet entry may drive: a quadrupole's K (m^-2) or a corrector's kick in x or y (rad)."""


class MappingError(ValueError):
    """The mapping file is missing, invalid, or does not fit the lattice; the message names the entry."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Select(_Strict):
    """Which lattice elements an entry's numbers walk through: by FamName (``family``) or by pyAT class."""

    family: str | list[str] | None = None
    class_: str | None = Field(None, alias="class")
    pick: Literal["first", "spread"] = "first"

    @model_validator(mode="after")
    def _one(self) -> Select:
        if (self.family is None) == (self.class_ is None):
            raise ValueError("select needs exactly one of 'family' or 'class'")
        return self


class Calibration(_Strict):
    """Setpoint (A) -> attribute value. ``linear``: design + gain*(I - current0); ``scale``: design*I/current0."""

    kind: Literal["linear", "scale"]
    gain: float | None = None
    current0: float | list[float] = Field(0.0, description="A; a list gives one per number of the entry.")

    @model_validator(mode="after")
    def _complete(self) -> Calibration:
        if self.kind == "linear" and self.gain is None:
            raise ValueError("a linear calibration needs 'gain' (attribute units per A)")
        c0 = self.current0 if isinstance(self.current0, list) else [self.current0]
        if self.kind == "scale" and any(c == 0 for c in c0):
            raise ValueError("a scale calibration needs a non-zero 'current0' (A)")
        return self

    def for_number(self, k: int) -> Calibration:
        """The calibration of the entry's k-th channel (0-based): ``current0`` taken from the list if it is one."""
        if not isinstance(self.current0, list):
            return self
        return self.model_copy(update={"current0": self.current0[k]})

    @property
    def _c0(self) -> float:
        if isinstance(self.current0, list):
            raise MappingError("a per-number calibration must be taken with for_number() first")
        return self.current0

    def value(self, design: float, current: float) -> float:
        """The attribute value at setpoint ``current`` (A) for an element whose lattice value is ``design``."""
        if self.kind == "linear":
            assert self.gain is not None
            return design + self.gain * (current - self._c0)
        return design * current / self._c0

    def current(self, design: float, value: float) -> float:
        """The inverse of :meth:`value`: the setpoint (A) that gives attribute ``value``. Raises
        :class:`MappingError` where the calibration cannot be inverted (a scale magnet with design 0)."""
        if self.kind == "linear":
            assert self.gain is not None
            if self.gain == 0:
                raise MappingError("a calibration with gain 0 cannot be inverted")
            return self._c0 + (value - design) / self.gain
        if design == 0:
            raise MappingError("a scale calibration of an element with design value 0 cannot be inverted")
        return value * self._c0 / design


class _Numbered(_Strict):
    channel: str
    numbers: tuple[int, int]
    select: Select

    @model_validator(mode="after")
    def _range(self) -> _Numbered:
        lo, hi = self.numbers
        if lo < 0 or hi < lo:
            raise ValueError(f"numbers {list(self.numbers)} must be [first, last] with 0 <= first <= last")
        return self


class MagnetEntry(_Numbered):
    """Magnet setpoint channels ``channel.format(n=...)`` for n in ``numbers`` (inclusive)."""

    attribute: Literal["K", "KickAngle.x", "KickAngle.y"]
    calibration: Calibration

    @model_validator(mode="after")
    def _per_number(self) -> MagnetEntry:
        c0 = self.calibration.current0
        count = self.numbers[1] - self.numbers[0] + 1
        if isinstance(c0, list) and len(c0) != count:
            raise ValueError(f"{self.channel}: current0 has {len(c0)} values for {count} numbers")
        return self


class BpmEntry(_Numbered):
    """BPM readback channels ``channel.format(n=..., plane="X"|"Y")``: the closed orbit at a monitor, mm."""


class Diagnostics(_Strict):
    """Channels of whole-ring quantities the simulator serves (fractional tunes, chromaticity)."""

    tune_x: str = "SR:DIAG:TUNE:X"
    tune_y: str = "SR:DIAG:TUNE:Y"
    chromaticity_x: str | None = None
    chromaticity_y: str | None = None


class LatticeRef(_Strict):
    """The lattice file: a path (relative to the mapping file) or ``pyat:NAME`` from pyAT's machine_data."""

    file: str


class RingMapping(_Strict):
    """A validated mapping file (see ``tern/data/ring_mapping.toml`` for the format)."""

    lattice: LatticeRef
    magnet: list[MagnetEntry] = Field(default_factory=list)
    bpm: list[BpmEntry] = Field(default_factory=list)
    diagnostics: Diagnostics = Field(default_factory=Diagnostics)
    source: str = ""

    def lattice_path(self) -> Path:
        """The lattice file this mapping names, resolved. Raises :class:`MappingError` if it does not exist."""
        ref = self.lattice.file
        if ref.startswith("pyat:"):
            import machine_data  # pyAT's lattices (top-level package of the accelerator-toolbox wheel)

            path = Path(machine_data.__file__).parent / ref[len("pyat:") :]
        else:
            path = Path(ref)
            if not path.is_absolute() and self.source:
                path = Path(self.source).parent / path
        if not path.is_file():
            raise MappingError(f"lattice file {ref!r} ({path}) does not exist")
        return path

    def resolve(self, lattice: Any) -> ResolvedMapping:
        """Bind the entries to ``lattice`` (a pyAT ``Lattice``): channel -> element index. Raises
        :class:`MappingError` naming the entry that does not fit."""
        magnets: dict[str, MagnetBinding] = {}
        bpms: dict[str, tuple[int, int]] = {}
        for i, m in enumerate(self.magnet):
            idx = _indices(lattice, m, f"magnet[{i}] {m.channel}")
            for n, el in idx.items():
                name = m.channel.format(n=n)
                elem = lattice[el]
                try:
                    design = _get(elem, m.attribute)
                except AttributeError as e:
                    raise MappingError(f"magnet[{i}] {name}: element {el} ({elem.FamName}) has no {m.attribute}") from e
                if name in magnets:
                    raise MappingError(f"magnet[{i}]: channel {name} is mapped twice")
                cal = m.calibration.for_number(n - m.numbers[0])
                magnets[name] = MagnetBinding(name, el, str(elem.FamName), m.attribute, design, cal)
        for i, b in enumerate(self.bpm):
            idx = _indices(lattice, b, f"bpm[{i}] {b.channel}")
            for n, el in idx.items():
                for plane, p in (("X", 0), ("Y", 1)):
                    bpms[b.channel.format(n=n, plane=plane)] = (el, p)
        return ResolvedMapping(magnets=magnets, bpms=bpms, diagnostics=self.diagnostics)


@dataclass(frozen=True)
class MagnetBinding:
    """One magnet channel bound to one lattice element: index, FamName, attribute, design value, calibration."""

    channel: str
    index: int
    family: str
    attribute: str
    design: float
    calibration: Calibration


@dataclass(frozen=True)
class ResolvedMapping:
    """A mapping bound to a lattice: magnet channel -> binding; BPM channel -> (element index, plane 0=x 1=y)."""

    magnets: dict[str, MagnetBinding]
    bpms: dict[str, tuple[int, int]]
    diagnostics: Diagnostics


def _get(elem: Any, attribute: str) -> float:
    if attribute == "K":
        if not hasattr(elem, "PolynomB") or len(elem.PolynomB) < 2:
            raise AttributeError(attribute)
        return float(elem.PolynomB[1])
    return float(elem.KickAngle[0 if attribute.endswith(".x") else 1])


def set_attribute(elem: Any, attribute: str, value: float) -> None:
    """Set ``attribute`` (one of :data:`ATTRIBUTES`) of pyAT element ``elem`` to ``value`` (m^-2 or rad)."""
    if attribute == "K":
        elem.PolynomB[1] = value  # a Quadrupole's K is PolynomB[1] (pyAT)
    else:
        elem.KickAngle[0 if attribute.endswith(".x") else 1] = value


def get_attribute(elem: Any, attribute: str) -> float:
    """The value of ``attribute`` (one of :data:`ATTRIBUTES`) of pyAT element ``elem``."""
    return _get(elem, attribute)


def _indices(lattice: Any, entry: _Numbered, what: str) -> dict[int, int]:
    import at

    sel = entry.select
    if sel.family is not None:
        fams = {sel.family} if isinstance(sel.family, str) else set(sel.family)
        matches = [i for i, e in enumerate(lattice) if e.FamName in fams]
    else:
        cls = getattr(at, sel.class_ or "", None)
        if not isinstance(cls, type):
            raise MappingError(f"{what}: pyAT has no element class {sel.class_!r}")
        matches = [i for i, e in enumerate(lattice) if isinstance(e, cls)]
    lo, hi = entry.numbers
    count = hi - lo + 1
    if len(matches) < count:
        raise MappingError(f"{what}: {count} numbers but the lattice has only {len(matches)} matching elements")
    if sel.pick == "first":
        return {lo + k: matches[k] for k in range(count)}
    return {lo + k: matches[round(k * len(matches) / count)] for k in range(count)}


def load_mapping(path: Path | str | None = None) -> RingMapping:
    """Read and validate a mapping file (default :data:`DEFAULT_MAPPING`). Raises :class:`MappingError` naming
    the file and the first problem."""
    p = Path(path) if path is not None else DEFAULT_MAPPING
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise MappingError(f"ring mapping {p}: cannot read: {e}") from e
    except tomllib.TOMLDecodeError as e:
        raise MappingError(f"ring mapping {p}: not TOML: {e}") from e
    try:
        return RingMapping.model_validate({**raw, "source": str(p)})
    except ValidationError as e:
        raise MappingError(f"ring mapping {p}: {e}") from e
