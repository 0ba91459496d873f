"""Time ranges and binning choices: pure functions of the text, a fixed ``now`` and the facility zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tern.archiver.binning import Binning, BinningError, auto_binning, parse_pv
from tern.models.timerange import TimeRangeError, parse_point, parse_range, resolve, zone

BERLIN = zone("Europe/Berlin")
NOW = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)  # 17:00 in Berlin (CET, UTC+1)


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("last 6 h", utc(2026, 11, 23, 10), NOW),
        ("past 30 min", utc(2026, 11, 23, 15, 30), NOW),
        ("Last 2 days", utc(2026, 11, 21, 16), NOW),
        ("since 03:20", utc(2026, 11, 23, 2, 20), NOW),  # 03:20 Berlin today
        ("since the trip at 03:20", utc(2026, 11, 23, 2, 20), NOW),
        ("since 18:00", utc(2026, 11, 22, 17), NOW),  # later than now: yesterday's 18:00
        ("yesterday 18:00 to 22:00", utc(2026, 11, 22, 17), utc(2026, 11, 22, 21)),
        ("yesterday 22:00 to 02:00", utc(2026, 11, 22, 21), utc(2026, 11, 23, 1)),
        ("yesterday", utc(2026, 11, 21, 23), utc(2026, 11, 22, 23)),
        ("2026-11-19T01:00 to 2026-11-19T04:00", utc(2026, 11, 19, 0), utc(2026, 11, 19, 3)),
        ("2026-11-19T01:00Z until 2026-11-19T04:00+00:00", utc(2026, 11, 19, 1), utc(2026, 11, 19, 4)),
        ("6 h ago to now", utc(2026, 11, 23, 10), NOW),
        ("4 days ago 01:00 to 03:30", utc(2026, 11, 19, 0), utc(2026, 11, 19, 2, 30)),
        ("4 days ago 23:00 to 3 days ago 01:00", utc(2026, 11, 19, 22), utc(2026, 11, 20, 0)),
    ],
)
def test_phrases(text: str, start: datetime, end: datetime) -> None:
    assert parse_range(text, NOW, BERLIN) == (start, end)


def test_same_text_same_now_same_range() -> None:
    assert parse_range("since 03:20", NOW, BERLIN) == parse_range("since 03:20", NOW, BERLIN)
    assert parse_range("since 03:20", NOW + timedelta(days=1), BERLIN)[0] == utc(2026, 11, 24, 2, 20)


def test_points() -> None:
    assert parse_point("now", NOW, BERLIN) == NOW
    assert parse_point("2026-11-19", NOW, BERLIN) == utc(2026, 11, 18, 23)
    assert parse_point("2026-11-19 03:20", NOW, BERLIN) == utc(2026, 11, 19, 2, 20)
    assert parse_point("4 days ago 03:15", NOW, UTC) == utc(2026, 11, 19, 3, 15)
    assert parse_point("4 d ago", NOW, UTC) == NOW - timedelta(days=4)


@pytest.mark.parametrize("text", ["next tuesday", "last 6 parsecs", "25:00 to 26:00", "", "since"])
def test_unparsable(text: str) -> None:
    with pytest.raises(TimeRangeError):
        parse_range(text, NOW, BERLIN)


def test_resolve_checks_order_and_span() -> None:
    with pytest.raises(TimeRangeError, match="reversed"):
        resolve(start="2026-11-20T00:00Z", end="2026-11-19T00:00Z", now=NOW, tz=UTC)
    with pytest.raises(TimeRangeError, match="exceeds the maximum"):
        resolve(range_text="last 10 d", now=NOW, tz=UTC, max_span=timedelta(days=7))
    with pytest.raises(TimeRangeError, match="not both"):
        resolve(range_text="last 1 h", start="now", now=NOW, tz=UTC)
    assert resolve(start="2 h ago", now=NOW, tz=UTC) == (NOW - timedelta(hours=2), NOW)
    with pytest.raises(TimeRangeError, match="unknown time zone"):
        zone("Mars/Olympus")


def test_binning() -> None:
    assert parse_pv("mean_600(SR:RF:CAVITY:01:POWER:REV)") == ("SR:RF:CAVITY:01:POWER:REV", Binning("mean", 600))
    assert parse_pv("SR:X") == ("SR:X", None)
    with pytest.raises(BinningError, match="unknown binning operator"):
        parse_pv("avg_600(SR:X)")
    with pytest.raises(BinningError):
        Binning.parse("mean")
    assert Binning.parse("firstSample_60").wrap("A") == "firstSample_60(A)"
    assert auto_binning(1800, 2000) is None  # half an hour of 1 Hz fits
    assert auto_binning(3600, 2000) == Binning("mean", 2)
    assert auto_binning(86400, 2000) == Binning("mean", 60)  # a day: 1440 one-minute bins
    assert auto_binning(7 * 86400, 2000) == Binning("mean", 600)  # a week: 1008 ten-minute bins
    assert auto_binning(400 * 86400, 100) == Binning("mean", 4 * 86400)
