"""The ring model (tern.ring) on the real pyAT Australian Synchrotron lattice: predictions checked against pyAT
computed independently here (the lattice loaded anew, the element changed by hand from the mapping's documented
calibration), effect limits, a plan without a closed orbit, an unmapped channel, mapping errors."""

from __future__ import annotations

import os
from pathlib import Path

import at  # pyAT: a dependency of Tern, never skipped
import machine_data
import numpy as np
import pytest

from tern.models.ring import EffectLimits
from tern.ring.effect import check_effect, compare_measured, predict_effect
from tern.ring.mapping import MappingError, load_mapping
from tern.ring.model import MachineErrors, RingModel, machine_with_errors

LATTICE = os.path.join(os.path.dirname(machine_data.__file__), "australian_synchrotron.m")


@pytest.fixture(scope="module")
def model() -> RingModel:
    return RingModel()


def _independent_ring():
    ring = at.load_lattice(LATTICE)
    ring.disable_6d()
    return ring


def test_quadrupole_tune_shift_matches_independent_pyat(model: RingModel) -> None:
    # QF 03 drives the third QFB quadrupole; calibration "scale": K = K_design * I / 373.4871 A (its band's middle)
    target = 375.0
    effect = predict_effect(model, {"SR:MAG:QF:03:CURRENT:SP": target})
    ring = _independent_ring()
    q0 = ring.get_tune()
    qfb = [e for e in ring if e.FamName == "QFB"][2]
    qfb.PolynomB[1] = qfb.PolynomB[1] * target / 373.4871
    q1 = ring.get_tune()
    assert effect.predicted and effect.closed_orbit_exists
    assert abs(effect.dq_x - (q1[0] - q0[0])) < 1e-4
    assert abs(effect.dq_y - (q1[1] - q0[1])) < 1e-4
    assert abs(q1[0] - q0[0]) > 1e-3  # the change is big enough for the comparison to mean something
    change = effect.model.changes[0]
    assert change.element == "QFB" and change.attribute == "K" and ring[change.index] is qfb
    assert effect.model.digest.startswith("sha256:") and effect.model.lattice_file.endswith("australian_synchrotron.m")


def test_corrector_orbit_change_matches_independent_pyat(model: RingModel) -> None:
    # HCM 05 = the 5th Corrector element, 20 urad per A; BPM 07 = monitor round(6 * 98 / 72) = 8
    bpm = "SR:DIAG:BPM:07:POSITION:X"
    effect = predict_effect(model, {"SR:MAG:HCM:05:CURRENT:SP": 6.0}, named_bpms=[bpm])
    ring = _independent_ring()
    mons = ring.get_uint32_index(at.Monitor)
    _, o0 = ring.find_orbit4(refpts=mons)
    cor = [e for e in ring if isinstance(e, at.Corrector)][4]
    cor.KickAngle[0] = 6.0 * 2.0e-5
    _, o1 = ring.find_orbit4(refpts=mons)
    d = (o1[:, 0] - o0[:, 0]) * 1e3
    assert effect.at_bpms[bpm] == pytest.approx(d[8], abs=1e-6)
    assert effect.orbit_max_mm[0] == pytest.approx(np.abs(d).max(), abs=1e-6)
    assert effect.orbit_rms_mm[0] == pytest.approx(np.sqrt(np.mean(d**2)), abs=1e-6)
    assert effect.orbit_max_mm[1] < 1e-9  # a horizontal kick in an uncoupled ring leaves y alone
    assert abs(d[8]) > 0.05
    assert "SR:DIAG:BPM:07:POSITION:X" in effect.summary()


def test_plan_is_predicted_as_a_whole(model: RingModel) -> None:
    a = predict_effect(model, {"SR:MAG:HCM:05:CURRENT:SP": 4.0})
    b = predict_effect(model, {"SR:MAG:HCM:05:CURRENT:SP": 4.0, "SR:MAG:HCM:06:CURRENT:SP": -4.0})
    assert len(b.model.changes) == 2
    assert b.orbit_rms_mm != a.orbit_rms_mm
    # the model is left as it was: the same single write predicts the same again
    assert predict_effect(model, {"SR:MAG:HCM:05:CURRENT:SP": 4.0}).orbit_rms_mm == a.orbit_rms_mm


def test_effect_limits_refuse(model: RingModel) -> None:
    effect = predict_effect(model, {"SR:MAG:HCM:05:CURRENT:SP": 6.0})
    assert check_effect(effect, EffectLimits(max_orbit_change_mm=10.0)).allowed
    refused = check_effect(effect, EffectLimits(max_orbit_change_mm=0.1))
    assert not refused.allowed and "max_orbit_change_mm" in refused.violations[0]
    quad = predict_effect(model, {"SR:MAG:QF:03:CURRENT:SP": 400.0})
    by_tune = check_effect(quad, EffectLimits(max_tune_shift=0.01))
    assert not by_tune.allowed and "max_tune_shift" in by_tune.violations[0]
    # Qx 0.290 -> ~0.357 crosses 3Qx = 1 (a third-order line) by independent arithmetic
    assert 0.29 < 1 / 3 < quad.tune_after[0]
    by_res = check_effect(quad, EffectLimits(forbid_resonance_order=3))
    assert not by_res.allowed and any("3Qx+0Qy=1" in v for v in by_res.violations)
    assert check_effect(quad, EffectLimits(forbid_resonance_order=2)).allowed is (
        not any(r.order <= 2 for r in quad.resonances_crossed)
    )


def test_no_closed_orbit_refuses(model: RingModel) -> None:
    effect = predict_effect(model, {"SR:MAG:QD:03:CURRENT:SP": 489.0})  # within its limits, twice the design K
    ring = _independent_ring()
    qda = [e for e in ring if e.FamName == "QDA"][2]
    qda.PolynomB[1] *= 489.0 / 247.5648
    m = at.find_m44(ring)[0]
    assert max(abs(np.trace(m[:2, :2])), abs(np.trace(m[2:, 2:]))) > 2  # unstable by independent check
    assert effect.predicted and not effect.closed_orbit_exists
    check = check_effect(effect, EffectLimits())
    assert not check.allowed and "no closed orbit" in check.violations[0]
    assert "NO CLOSED ORBIT" in effect.summary()


def test_unmapped_channel_gets_no_prediction_and_says_so(model: RingModel) -> None:
    effect = predict_effect(model, {"SR:MAG:HCM:60:CURRENT:SP": 1.0})
    assert not effect.predicted and effect.unmapped == ["SR:MAG:HCM:60:CURRENT:SP"]
    assert "not in the ring mapping" in effect.message and "no prediction" in effect.summary()
    assert check_effect(effect, EffectLimits(max_orbit_change_mm=0.001)).allowed


def test_machine_differs_from_model_by_seeded_errors(model: RingModel) -> None:
    m1 = machine_with_errors(model, MachineErrors(seed=5)).optics()
    m2 = machine_with_errors(model, MachineErrors(seed=5)).optics()
    design = model.optics()
    assert m1.tune == m2.tune  # seeded
    assert 1e-4 < abs(m1.tune[0] - design.tune[0]) < 0.05
    assert np.abs(m1.orbit_mm).max() > 0.01  # misaligned quadrupoles distort the orbit
    assert np.abs(design.orbit_mm).max() < 1e-9


def test_compare_measured_flags_a_discrepancy(model: RingModel) -> None:
    bpm = "SR:DIAG:BPM:07:POSITION:X"
    effect = predict_effect(model, {"SR:MAG:HCM:05:CURRENT:SP": 6.0}, named_bpms=[bpm])
    pred = effect.at_bpms[bpm]
    good = compare_measured(effect, {bpm: pred * 0.9}, None, max_ratio=0.5)
    assert not good.unexpected and good.worst_ratio == pytest.approx(0.1)
    bad = compare_measured(effect, {bpm: -pred}, None, max_ratio=0.5)
    assert bad.unexpected and "EFFECT UNEXPECTED" in bad.message


def test_mapping_errors_name_the_entry(tmp_path: Path) -> None:
    bad = tmp_path / "m.toml"
    bad.write_text(
        '[lattice]\nfile = "pyat:australian_synchrotron.m"\n[[magnet]]\nchannel = "Q:{n}:SP"\nnumbers = [1, 40]\n'
        'select = { family = "QFA" }\nattribute = "K"\ncalibration = { kind = "scale", current0 = 1.0 }\n'
    )
    with pytest.raises(MappingError, match=r"magnet\[0\].*only 28 matching"):
        RingModel(load_mapping(bad))
    bad.write_text('[lattice]\nfile = "nowhere.m"\n')
    with pytest.raises(MappingError, match="does not exist"):
        RingModel(load_mapping(bad))
    bad.write_text('[lattice]\nfile = "pyat:australian_synchrotron.m"\nbogus = 1\n')
    with pytest.raises(MappingError, match="bogus"):
        load_mapping(bad)


def test_orbit_correction_moves_the_named_bpm_by_the_requested_amount(model: RingModel) -> None:
    from tern.ring.correct import correct_orbit

    bpm = "SR:DIAG:BPM:07:POSITION:X"
    c = correct_orbit(model, {bpm: 0.5}, limits={ch: (-12.0, 12.0) for ch in model.resolved.magnets})
    assert c.plane == "x" and c.writes and all(ch.startswith("SR:MAG:HCM:") for ch in c.writes)
    # independent check: the writes applied to the lattice by hand (20 urad per A), orbit from pyAT directly
    ring = _independent_ring()
    mons = ring.get_uint32_index(at.Monitor)
    _, o0 = ring.find_orbit4(refpts=mons)
    cors = [e for e in ring if isinstance(e, at.Corrector)]
    for ch, amps in c.writes.items():
        cors[int(ch.split(":")[3]) - 1].KickAngle[0] = amps * 2.0e-5
    _, o1 = ring.find_orbit4(refpts=mons)
    moved = (o1[8, 0] - o0[8, 0]) * 1e3  # BPM 07 = monitor 8 (spread)
    assert moved == pytest.approx(0.5, abs=0.05)
    assert moved == pytest.approx(c.expected[bpm], abs=2e-3)  # rounding the currents to 1 mA
    with pytest.raises(ValueError, match="outside its limits"):
        correct_orbit(model, {bpm: 50.0}, limits={ch: (-12.0, 12.0) for ch in model.resolved.magnets})
    with pytest.raises(ValueError, match="not a BPM"):
        correct_orbit(model, {"SR:MAG:HCM:01:CURRENT:SP": 1.0})


def test_response_matrix_is_cached_and_recomputed_when_lattice_mapping_or_currents_change(
    model: RingModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The orbit response matrix is computed once per (lattice digest, mapping digest, magnet currents): a second
    call is served from the cache (no new computation), a change of any magnet current, of the mapping or of the
    lattice (an erroneous machine) computes it anew; values checked against pyAT directly."""
    from tern.ring import correct

    computed: list[str] = []
    real = correct._response_matrix

    def counting(m, plane, baseline, delta_a):
        computed.append(plane)
        return real(m, plane, baseline, delta_a)

    monkeypatch.setattr(correct, "_response_matrix", counting)
    correct.clear_response_cache()
    r1, bpms, cors = correct.response_matrix(model, "x")
    # independent: HCM 01 (first corrector, 20 urad per A) kicked by 1 A in a freshly loaded lattice
    ring = _independent_ring()
    mons = ring.get_uint32_index(at.Monitor)
    _, o0 = ring.find_orbit4(refpts=mons)
    next(e for e in ring if isinstance(e, at.Corrector)).KickAngle[0] = 2.0e-5
    _, o1 = ring.find_orbit4(refpts=mons)
    rows = [model.monitor_pos[model.resolved.bpms[ch][0]] for ch in bpms]
    assert cors[0] == "SR:MAG:HCM:01:CURRENT:SP"
    np.testing.assert_allclose(r1[:, 0], (o1[rows, 0] - o0[rows, 0]) * 1e3, atol=1e-6)
    r1[:, 0] = 0.0  # the caller's copy: the cache keeps its own
    r2, _, _ = correct.response_matrix(model, "x")
    assert computed == ["x"] and np.abs(r2[:, 0]).max() > 0.1  # served from the cache, unchanged
    quad = "SR:MAG:QF:03:CURRENT:SP"
    r3, _, _ = correct.response_matrix(model, "x", {quad: 375.0})  # a magnet current changed: computed anew
    assert computed == ["x", "x"] and not np.allclose(r3, r2, atol=1e-6)
    correct.response_matrix(model, "x", {quad: 375.0})
    assert computed == ["x", "x"]
    text = Path(model.mapping.source).read_text().replace("gain = 2.0e-5", "gain = 4.0e-5")
    (tmp_path / "mapping.toml").write_text(text)
    other = RingModel(load_mapping(tmp_path / "mapping.toml"))
    assert other.digest == model.digest  # same lattice file, another mapping: computed anew, twice the gain
    r4, _, _ = correct.response_matrix(other, "x")
    assert computed == ["x", "x", "x"]
    np.testing.assert_allclose(r4, 2 * r2, rtol=1e-2, atol=2e-3)  # finite differences: not exactly linear
    machine = machine_with_errors(model, MachineErrors(seed=5))  # another lattice: never served from the cache
    r5, _, _ = correct.response_matrix(machine, "x")
    r6, _, _ = correct.response_matrix(machine, "x")
    assert computed == ["x"] * 5 and not np.allclose(r5, r2, atol=1e-6) and np.allclose(r5, r6)


def test_orbit_profile_is_every_monitor_and_absent_from_the_dump_when_not_asked(model: RingModel) -> None:
    """``orbit_change_mm`` (the chat card's plot) holds (x, y) at all 98 monitors, as pyAT computes it here
    independently; an effect predicted without it serializes exactly as before the field existed (the request
    digest binds that dump)."""
    from tern.identity.statement import sha256_hex

    channel = "SR:MAG:VCM:09:CURRENT:SP"  # ninth corrector, vertical plane, 20 urad per A
    with_profile = predict_effect(model, {channel: -6.0}, orbit_profile=True)
    without = predict_effect(model, {channel: -6.0})
    assert "orbit_change_mm" not in without.model_dump() and "orbit_change_mm" not in without.model_dump_json()
    assert sha256_hex(without.model_dump_json()) == sha256_hex(
        with_profile.model_copy(update={"orbit_change_mm": None, "compute_ms": without.compute_ms}).model_dump_json()
    )
    ring = _independent_ring()
    mons = ring.get_uint32_index(at.Monitor)
    _, o0 = ring.find_orbit4(refpts=mons)
    [e for e in ring if isinstance(e, at.Corrector)][8].KickAngle[1] = -6.0 * 2.0e-5
    _, o1 = ring.find_orbit4(refpts=mons)
    profile = with_profile.orbit_change_mm
    assert profile is not None and len(profile) == len(mons) == 98
    np.testing.assert_allclose([p[1] for p in profile], (o1[:, 2] - o0[:, 2]) * 1e3, atol=1e-4)
    np.testing.assert_allclose([p[0] for p in profile], (o1[:, 0] - o0[:, 0]) * 1e3, atol=1e-4)
    assert max(abs(p[1]) for p in profile) > 0.3
