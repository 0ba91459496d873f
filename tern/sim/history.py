"""The simulated accelerator's past: archived history generated from its model, for the embedded archiver's
first start (so the demo has a week to analyse).

Every channel follows the simulator's model (:meth:`SimulatedAccelerator.model`: start value, drift step per
second, bounds) as a bounded random walk seeded by the channel name, so the same call gives the same history.
RF cavity 1 carries the events of the demo logbook (``tern/data/demo_logbook.json``, entries DEMO-026 to
DEMO-028), placed relative to ``end`` as the demo adapter places entries (``days_ago`` before ``end``'s UTC date,
times in UTC):

- three thermal excursions of the cavity body (normal 25-28 degC): two that peak at 32.4 and 33.1 degC, and the
  one of DEMO-026 four days ago, from 01:00 to 34.2 degC, whose reflected power climbs from 5 kW to over 80 kW
  until the reflected-power interlock trips at 03:15 (forward and reflected power drop to zero; beam back at
  04:00, the body then cools over an hour);
- after the cooling manifold repair (DEMO-028, two days ago 14:00) the body runs a degree cooler.

Alarm severity follows the values: body temperature above 32 degC is MINOR (status HIGH), reflected power
above 40 kW MAJOR (status HIHI); EPICS alarm codes from ``alarm.h`` (HIHI 3, HIGH 4; MINOR 1, MAJOR 2).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

import numpy as np

from tern.sim.accelerator import SimulatedAccelerator

CAVITY1 = "SR:RF:CAVITY:01"
TEMP_NORMAL_DEGC = 27.0
REV_NORMAL_KW = 5.0
FWD_NORMAL_KW = 450.0
HIGH, HIHI, MINOR, MAJOR = 4, 3, 1, 2


@dataclass(frozen=True)
class Excursion:
    """A thermal excursion of cavity 1: the body warms from ``start`` to ``peak_degC`` at ``peak``; with
    ``trip`` the reflected-power interlock trips at the peak and power returns at ``recovered``."""

    start: datetime
    peak: datetime
    peak_degC: float
    trip: bool = False
    recovered: datetime | None = None


def demo_events(end: datetime) -> tuple[list[Excursion], datetime]:
    """The cavity-1 excursions and the manifold-repair time for a history ending at ``end`` (see module
    docstring)."""
    day = end.astimezone(UTC).date()

    def at(days_ago: int, hh: int, mm: int = 0) -> datetime:
        return datetime.combine(day - timedelta(days=days_ago), time(hh, mm), tzinfo=UTC)

    return [
        Excursion(at(6, 14), at(6, 16), 32.4),
        Excursion(at(5, 7), at(5, 9), 33.1),
        Excursion(at(4, 1), at(4, 3, 15), 34.2, trip=True, recovered=at(4, 4)),
    ], at(2, 14)


def _walk(name: str, n: int, period_s: float, start: float, step: float, low: float, high: float) -> np.ndarray:
    if step == 0 or n == 0:
        return np.full(n, start, dtype=float)
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    steps = rng.uniform(-step, step, n) * np.sqrt(period_s)
    out = np.empty(n)
    v = start
    for i in range(n):  # bounded walk (reflects at the bounds); n is at most a few hundred thousand
        v = min(high, max(low, v + steps[i]))
        out[i] = v
    return out


def history(
    sim: SimulatedAccelerator, name: str, start: datetime, end: datetime, period_s: float
) -> list[tuple[int, int, float, int, int]]:
    """Samples of channel ``name`` every ``period_s`` seconds in ``[start, end)``, as ``(secs, nanos, value,
    severity, status)``. Empty for a channel the simulator does not serve."""
    model = sim.model(name)
    if model is None:
        return []
    t = np.arange(start.timestamp(), end.timestamp(), period_s)
    value, step, low, high = model
    sev = np.zeros(len(t), dtype=int)
    st = np.zeros(len(t), dtype=int)
    if name.startswith(CAVITY1 + ":"):
        vals = _cavity1(name, t, end, period_s)
        if vals is not None:
            if name.endswith(":TEMPERATURE:RB"):
                hot = vals > 32.0
                sev[hot], st[hot] = MINOR, HIGH
            if name.endswith(":POWER:REV"):
                hot = vals > 40.0
                sev[hot], st[hot] = MAJOR, HIHI
            return _rows(t, vals, sev, st)
    vals = _walk(name, len(t), period_s, value, step, low, high)
    return _rows(t, vals, sev, st)


def _rows(t: np.ndarray, vals: np.ndarray, sev: np.ndarray, st: np.ndarray) -> list[tuple[int, int, float, int, int]]:
    secs = np.floor(t).astype(np.int64)
    nanos = np.round((t - secs) * 1e9).astype(np.int64)
    return list(zip(secs.tolist(), nanos.tolist(), np.round(vals, 4).tolist(), sev.tolist(), st.tolist(), strict=True))


def _cavity1(name: str, t: np.ndarray, end: datetime, period_s: float) -> np.ndarray | None:
    excursions, repair = demo_events(end)
    noise = _walk(name, len(t), period_s, 0.0, 0.02, -0.3, 0.3)
    temp = np.where(t >= repair.timestamp(), TEMP_NORMAL_DEGC - 1.0, TEMP_NORMAL_DEGC) + noise
    off = np.zeros(len(t), dtype=bool)
    for ex in excursions:
        a, p = ex.start.timestamp(), ex.peak.timestamp()
        rise = (t >= a) & (t < p)
        frac = (t[rise] - a) / (p - a)
        temp[rise] += (ex.peak_degC - TEMP_NORMAL_DEGC) * frac**2  # warms slowly, then faster as it detunes
        cool = t >= p
        temp[cool] += (ex.peak_degC - TEMP_NORMAL_DEGC) * np.exp(-(t[cool] - p) / 1200.0)  # ~20 min time constant
        if ex.trip and ex.recovered is not None:
            off |= (t >= p) & (t < ex.recovered.timestamp())
    excess = np.clip((temp - TEMP_NORMAL_DEGC) / (34.2 - TEMP_NORMAL_DEGC), 0, None)
    rev = REV_NORMAL_KW + 78.0 * excess**1.5 + noise
    fwd = FWD_NORMAL_KW + 2 * noise
    rev[off], fwd[off] = 0.0, 0.0
    if name.endswith(":TEMPERATURE:RB"):
        return temp
    if name.endswith(":POWER:REV"):
        return rev
    if name.endswith(":POWER:FWD"):
        return fwd
    if name.endswith(":POWER:NET"):
        return fwd - rev
    return None
