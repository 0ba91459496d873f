"""Reading the ring's present state over Channel Access for the model: magnet readbacks (the currents the magnets
hold, the model's baseline), BPM positions and tunes (for measured against predicted). Blocking (pyepics); callers
in an event loop run these in a thread."""

from __future__ import annotations

import math

from tern.control.channel_access import read_channels, readback_name
from tern.ring.model import RingModel


class LiveReadError(RuntimeError):
    """A channel the model needs did not give a finite number; the message lists them."""


def _read(names: list[str], timeout_s: float) -> dict[str, float]:
    out: dict[str, float] = {}
    bad: list[str] = []
    for r in read_channels(names, timeout_s=timeout_s):
        v = r.value
        if isinstance(v, int | float) and math.isfinite(float(v)):
            out[r.channel] = float(v)
        else:
            bad.append(f"{r.channel} ({r.error or 'no finite value'})")
    if bad:
        raise LiveReadError(f"{len(bad)} channel(s) unreadable: {', '.join(bad[:5])}")
    return out


def read_baseline(model: RingModel, timeout_s: float = 2.0) -> dict[str, float]:
    """Setpoint channel -> present current (A) of every mapped magnet, read from its readback (what the magnet
    holds, not what was asked). Raises :class:`LiveReadError` if any does not read (fail closed: a prediction
    from a guessed state is no prediction)."""
    rb = {readback_name(sp): sp for sp in model.resolved.magnets}
    values = _read(list(rb), timeout_s)
    return {rb[name]: v for name, v in values.items()}


def read_bpms(channels: list[str], timeout_s: float = 2.0) -> dict[str, float]:
    """BPM channel -> position (mm). Raises :class:`LiveReadError` for an unreadable one."""
    return _read(channels, timeout_s)


def read_tunes(model: RingModel, timeout_s: float = 2.0) -> tuple[float, float]:
    """The measured fractional tunes from the mapping's tune channels. Raises :class:`LiveReadError`."""
    d = model.mapping.diagnostics
    v = _read([d.tune_x, d.tune_y], timeout_s)
    return v[d.tune_x], v[d.tune_y]
