"""Server-side binning operators of the EPICS Archiver Appliance retrieval API, and the automatic choice of one.

The Appliance applies a post-processor when the ``pv`` parameter is written ``operator_N(PV)``, ``N`` being the
bin width in seconds (Appliance documentation, "Processing of data"; source
``org.epics.archiverappliance.retrieval.postprocessors`` in archiver-appliance/epicsarchiverap). Tern uses the
operators both the Appliance and the embedded archiver implement (:data:`OPERATORS`). Each binned sample is
stamped with the start of its bin.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

OPERATORS = ("mean", "min", "max", "count", "firstSample", "lastSample", "median", "std")
"""Binning operators understood by :func:`parse_pv` (Appliance post-processor identities)."""
NICE_BINS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
_PV = re.compile(r"^(?P<op>[A-Za-z]+)_(?P<n>\d+)\((?P<pv>.+)\)$")


class BinningError(ValueError):
    """An unknown operator or a bad bin width; the message names the valid operators."""


@dataclass(frozen=True)
class Binning:
    """A binning request: ``operator`` (one of :data:`OPERATORS`) over bins of ``bin_s`` seconds (>= 1)."""

    operator: str
    bin_s: int

    def __post_init__(self) -> None:
        if self.operator not in OPERATORS:
            raise BinningError(f"unknown binning operator {self.operator!r}; known: {', '.join(OPERATORS)}")
        if self.bin_s < 1:
            raise BinningError(f"bin width must be at least 1 s, got {self.bin_s}")

    @property
    def label(self) -> str:
        """``operator_N``, e.g. ``mean_600``."""
        return f"{self.operator}_{self.bin_s}"

    def wrap(self, pv: str) -> str:
        """The Appliance ``pv`` parameter for ``pv`` binned this way, e.g. ``mean_600(SR:X)``."""
        return f"{self.label}({pv})"

    @classmethod
    def parse(cls, text: str) -> Binning:
        """``"mean_600"`` -> ``Binning("mean", 600)``. Raises ``BinningError``."""
        op, _, n = text.strip().rpartition("_")
        if not op or not n.isdigit():
            raise BinningError(f"binning must look like 'mean_600' (operator_seconds), got {text!r}")
        return cls(op, int(n))


def parse_pv(param: str) -> tuple[str, Binning | None]:
    """Split an Appliance ``pv`` parameter into the channel name and its binning (None for raw data).

    ``"mean_600(SR:X)"`` -> ``("SR:X", Binning("mean", 600))``; ``"SR:X"`` -> ``("SR:X", None)``. A channel name
    that merely contains parentheses but no known operator prefix is returned unchanged. Raises ``BinningError``
    for ``op_N(...)`` with an unknown operator."""
    m = _PV.match(param)
    if not m:
        return param, None
    return m.group("pv"), Binning(m.group("op"), int(m.group("n")))


def auto_binning(span_s: float, target_points: int, sample_period_s: float = 1.0) -> Binning | None:
    """The binning for a span: None (raw) when ``span_s / sample_period_s`` samples fit in ``target_points``,
    else ``mean`` over the smallest bin from :data:`NICE_BINS_S` (or whole days) giving at most ``target_points``
    bins. Args are seconds, a point count (>= 1) and the archiving period in seconds (1 Hz by default)."""
    if target_points < 1:
        raise BinningError("target point count must be at least 1")
    if span_s / sample_period_s <= target_points:
        return None
    need = span_s / target_points
    for b in NICE_BINS_S:
        if b >= need:
            return Binning("mean", b)
    return Binning("mean", 86400 * math.ceil(need / 86400))
