"""The trigger core without servers: crossing detection with hysteresis, severity and value changes, the rate
limiter, the run ids' time buckets, and the schedule spec checks."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tern.models.trigger import ChannelWatch
from tern.triggers.detect import Detector, channel_run_id, webhook_run_id
from tern.triggers.ratelimit import RateLimiter
from tern.triggers.schedule_spec import ScheduleSpecError, check_cron, parse_every


def fired(watch: ChannelWatch, values: list[float], severities: list[int] | None = None) -> list[int]:
    d = Detector(watch)
    sev = severities or [0] * len(values)
    return [i for i, (v, s) in enumerate(zip(values, sev, strict=True)) if d.update(v, s)]


def test_above_fires_once_per_crossing_and_rearms_only_past_the_hysteresis() -> None:
    w = ChannelWatch(channel="C", condition="above", threshold=40, hysteresis=5)
    assert fired(w, [10, 45, 44, 39, 41, 36, 41, 35, 41]) == [1, 8]


def test_a_first_value_already_beyond_the_threshold_does_not_fire() -> None:
    w = ChannelWatch(channel="C", condition="above", threshold=40)
    assert fired(w, [50, 51, 30, 41]) == [3]


def test_below_mirrors_above() -> None:
    w = ChannelWatch(channel="C", condition="below", threshold=2, hysteresis=0.5)
    assert fired(w, [3, 1.9, 2.2, 1.0, 2.6, 1.5]) == [1, 5]


def test_severity_change_and_on_change() -> None:
    sev = ChannelWatch(channel="C", condition="severity_change")
    assert fired(sev, [1, 1, 1, 1], [0, 0, 2, 2]) == [2]
    chg = ChannelWatch(channel="C", condition="on_change")
    assert fired(chg, [1, 1, 2, 2, float("nan"), 3]) == [2, 5]


def test_threshold_goes_with_above_and_below_only() -> None:
    with pytest.raises(ValueError, match="threshold"):
        ChannelWatch(channel="C", condition="above")
    with pytest.raises(ValueError, match="threshold"):
        ChannelWatch(channel="C", condition="on_change", threshold=1)


def test_rate_limiter_allows_n_per_sliding_minute() -> None:
    r = RateLimiter(2)
    assert [r.allow(t) for t in (0, 1, 2, 59.9, 60.0, 61.0, 61.5)] == [True, True, False, False, True, True, False]
    assert not RateLimiter(0).allow(0)


def test_run_ids_share_a_bucket_within_the_dedup_window() -> None:
    a = channel_run_id("rf-trip", "SR:RF:CAVITY:01:POWER:REV", 1000.2, 60)
    assert a == "trigger-rf-trip-SR_RF_CAVITY_01_POWER_REV-16"
    assert channel_run_id("rf-trip", "SR:RF:CAVITY:01:POWER:REV", 1019.9, 60) == a
    assert channel_run_id("rf-trip", "SR:RF:CAVITY:01:POWER:REV", 1020.0, 60) != a
    assert webhook_run_id("h", b"{}", 5, 60) == webhook_run_id("h", b"{}", 59, 60) != webhook_run_id("h", b"[]", 5, 60)


def test_schedule_specs() -> None:
    assert check_cron("  */10  * * * * ") == "*/10 * * * *"
    assert parse_every("1h30m") == timedelta(minutes=90)
    for bad in ("* * * *", "* * * * * *", "61 * * * *"):
        with pytest.raises(ScheduleSpecError):
            check_cron(bad)
    for bad in ("", "10", "m10", "10 m", "400d"):
        with pytest.raises(ScheduleSpecError):
            parse_every(bad)
