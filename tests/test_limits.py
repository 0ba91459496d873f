"""The limits database on its own: inheritance, comments, every violation, fail-closed loading."""

from __future__ import annotations

import json

import pytest

from tern import DATA_DIR
from tern.control.limits import LimitsDatabase, LimitsDatabaseError

SMALL = {
    "_comment": "x",
    "defaults": {"writable": True, "verification": {"level": "callback"}},
    "A:SP": {"min_value": 0.0, "max_value": 10.0, "max_step": 2.0},
    "B:SP": {"min_value": -1, "max_value": 1, "verification": {"tolerance_percent": 0.5}},
    "A:RB": {"writable": False},
}


def test_shared_database_loads_with_396_writable_setpoints() -> None:
    db = LimitsDatabase.load(DATA_DIR / "channel_limits.json")
    assert len(db.channels) == 2908
    assert len(db.writable_channels()) == 396
    assert all(name.endswith(":SP") for name in db.writable_channels())


@pytest.mark.parametrize(
    ("channel", "value", "current", "violation"),
    [
        ("A:SP", 11.0, 9.5, "above_max"),
        ("A:SP", -0.5, 0.5, "below_min"),
        ("A:SP", 9.0, 5.0, "step_too_large"),
        ("A:SP", 6.0, None, "step_check_failed"),
        ("A:RB", 1.0, 1.0, "read_only_channel"),
        ("C:SP", 1.0, 1.0, "unlisted_channel"),
        ("A:SP", float("nan"), 5.0, "step_check_failed"),
    ],
)
def test_violations(channel, value, current, violation) -> None:
    check = LimitsDatabase.from_mapping(SMALL).check(channel, value, current)
    assert not check.allowed and check.violation == violation and check.message


def test_allowed_write_inherits_defaults_and_merges_verification() -> None:
    db = LimitsDatabase.from_mapping(SMALL)
    ok = db.check("A:SP", 6.0, 5.0)
    assert ok.allowed and ok.verification.level == "callback"
    assert db.channels["B:SP"].verification.level == "callback"
    assert db.channels["B:SP"].verification.tolerance_percent == 0.5


def test_unlisted_allowed_only_when_configured() -> None:
    assert LimitsDatabase.from_mapping(SMALL, allow_unlisted=True).check("C:SP", 1.0, 0.0).allowed


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "top level must be an object"),
        ({"A:SP": 3}, "'A:SP' must map to an object"),
        ({"A:SP": {"min_value": 2, "max_value": 1}}, "min_value 2.0 > max_value 1.0"),
        ({"A:SP": {"max_step": -1}}, "max_step"),
        ({"A:SP": {"verification": {"level": "maybe"}}}, "verification.level"),
    ],
)
def test_invalid_database_names_the_problem(doc, message) -> None:
    with pytest.raises(LimitsDatabaseError, match=message):
        LimitsDatabase.from_mapping(doc)


def test_unreadable_files(tmp_path) -> None:
    with pytest.raises(LimitsDatabaseError, match="not found"):
        LimitsDatabase.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(LimitsDatabaseError, match="unreadable"):
        LimitsDatabase.load(bad)
    bad.write_text(json.dumps({"A:SP": {"writable": "perhaps"}}))
    with pytest.raises(LimitsDatabaseError, match="writable"):
        LimitsDatabase.load(bad)


def test_step_must_hold_from_the_setpoint_and_from_the_readback() -> None:
    db = LimitsDatabase.from_mapping(SMALL)
    assert db.check("A:SP", 6.0, 5.5).allowed  # the setpoint alone
    stale = db.check("A:SP", 6.0, 5.5, readback=3.0)  # the readback is 3 from the target
    assert not stale.allowed and stale.violation == "step_too_large"
    assert stale.message == "change 3 from the readback 3 exceeds max_step 2"
    assert not db.check("A:SP", 6.0, 3.0, readback=5.5).allowed  # either one too far refuses
    assert db.check("A:SP", 6.0, 5.5, readback=4.5).allowed
    nan = db.check("A:SP", 6.0, 5.5, readback=float("nan"))
    assert not nan.allowed and nan.violation == "step_check_failed"
    assert db.reads_readback("A:SP") and not db.reads_readback("B:SP")  # max_step / callback level, no step


def test_small_change_reference_is_the_nearer_previous_value_at_readback_level() -> None:
    from tern.control.verification import reference
    from tern.models import Verification

    rb_level, cb_level = Verification(level="readback"), Verification(level="callback")
    assert reference(100.0, 90.0, 99.0, rb_level) == 99.0  # the readback already reads about the target
    assert reference(100.0, 99.5, 90.0, rb_level) == 99.5
    assert reference(100.0, 90.0, 99.0, cb_level) == 90.0  # callback verification reads the setpoint only
    assert reference(100.0, None, 99.0, rb_level) == 99.0
    assert reference(100.0, None, None, rb_level) is None


@pytest.mark.parametrize("allow_unlisted", [False, True])
def test_the_value_field_of_a_listed_record_is_checked_as_the_record(allow_unlisted: bool) -> None:
    """Issue 22: with allow_unlisted, ``A:SP.VAL`` wrote without limits (it is not a listed name)."""
    db = LimitsDatabase.from_mapping(SMALL, allow_unlisted=allow_unlisted)
    for value, current, violation in ((11.0, 9.5, "above_max"), (-0.5, 0.5, "below_min"), (9.0, 5.0, "step_too_large")):
        check = db.check("A:SP.VAL", value, current)
        assert not check.allowed and check.violation == violation, check
    ok = db.check("A:SP.VAL", 6.0, 5.0)
    assert ok.allowed and ok.max_value == 10.0 and ok.verification.level == "callback"
    assert db.check("A:RB.VAL", 1.0, 1.0).violation == "read_only_channel"
    assert db.reads_readback("A:SP.VAL")  # max_step: the readback is read as for A:SP


@pytest.mark.parametrize("field", ["DRVH", "DRVL", "HOPR", "DISA", "PROC", "SCAN", "val", "VAL$", ""])
@pytest.mark.parametrize("allow_unlisted", [False, True])
def test_other_fields_of_a_listed_record_are_refused(field: str, allow_unlisted: bool) -> None:
    db = LimitsDatabase.from_mapping(SMALL, allow_unlisted=allow_unlisted)
    check = db.check(f"A:SP.{field}", 5.0, 5.0)
    assert not check.allowed and check.violation == "read_only_channel"
    assert f"field {field!r} of the listed record A:SP" in (check.message or "")
    assert not db.reads_readback(f"A:SP.{field}")


def test_fields_of_unlisted_records_follow_allow_unlisted() -> None:
    assert LimitsDatabase.from_mapping(SMALL, allow_unlisted=True).check("C:SP.DRVH", 1.0, 0.0).allowed
    assert LimitsDatabase.from_mapping(SMALL).check("C:SP.DRVH", 1.0, 0.0).violation == "unlisted_channel"


def test_the_value_field_has_the_records_readback() -> None:
    from tern.control.channel_access import readback_name

    assert readback_name("A:SP.VAL") == readback_name("A:SP") == "A:RB"
    assert readback_name("A:SP.DRVH") == "A:SP.DRVH"
