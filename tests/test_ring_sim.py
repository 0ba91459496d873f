"""The simulator's storage ring over real Channel Access (the session's caproto IOC, pyepics client): tunes served,
a corrector write moves the BPMs as the erroneous machine says, close to the model's prediction but not equal."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from tern.control.channel_access import read_value
from tern.ring.effect import predict_effect
from tern.ring.live import read_baseline
from tern.ring.model import MachineErrors, RingModel, machine_with_errors

CORRECTOR = "SR:MAG:HCM:09:CURRENT:SP"  # no other test writes it
BPMS = [f"SR:DIAG:BPM:{n:02d}:POSITION:X" for n in range(1, 73)]


def _bpms() -> np.ndarray:
    return np.array([read_value(ch, timeout_s=2.0) for ch in BPMS])


def _put(channel: str, value: float) -> None:
    import epics

    assert epics.caput(channel, value, wait=True, timeout=5.0) == 1


def test_tunes_and_bpms_come_from_the_lattice(ca_sim: int) -> None:
    qx, qy = read_value("SR:DIAG:TUNE:X"), read_value("SR:DIAG:TUNE:Y")
    model = RingModel()
    model.apply(read_baseline(model))  # what other tests left in the session's IOC
    present = model.optics()
    # the machine's tunes: the model's at the present currents, shifted by the seeded gradient errors (small)
    assert math.isfinite(qx) and abs(qx - present.tune[0]) < 0.02 and abs(qy - present.tune[1]) < 0.02
    assert read_value("SR:DIAG:CHROM:X") == pytest.approx(1.3, abs=1.0)


def test_corrector_write_moves_the_orbit_as_predicted(ca_sim: int) -> None:
    model = RingModel()
    baseline = read_baseline(model)  # what other tests left in the session's IOC
    target = 8.0
    effect = predict_effect(model, {CORRECTOR: target}, baseline=baseline, named_bpms=BPMS)
    assert effect.closed_orbit_exists, effect.message
    predicted = np.array([effect.at_bpms[ch] for ch in BPMS])
    # what the erroneous machine does, computed here independently of the IOC process
    machine = machine_with_errors(model, MachineErrors())
    machine.apply(baseline)
    m0 = machine.optics()
    machine.apply({CORRECTOR: target})
    m1 = machine.optics()
    idx = [machine.monitor_pos[machine.resolved.bpms[ch][0]] for ch in BPMS]
    expect = m1.orbit_mm[idx, 0] - m0.orbit_mm[idx, 0]
    assert np.abs(expect - predicted).max() > 1e-4  # model and machine differ: prediction is not measurement

    before = np.mean([_bpms() for _ in range(3)], axis=0)
    _put(CORRECTOR, target)
    try:
        deadline = time.monotonic() + 30
        while True:  # wait on the condition: the served orbit has become the machine's (BPM noise 1 um rms)
            change = _bpms() - before
            if np.abs(change - expect).max() < 0.02 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert np.abs(change - expect).max() < 0.02
        corr = np.corrcoef(change, predicted)[0, 1]
        ratio = float(np.dot(change, predicted) / np.dot(predicted, predicted))
        assert corr > 0.95, (corr, ratio)
        assert 0.8 < ratio < 1.2, ratio
    finally:
        _put(CORRECTOR, 0.0)
