"""Time ranges for archived history, parsed deterministically from a fixed ``now`` in the facility's time zone.

No natural-language library is used: ``dateparser`` is not installed here and its results depend on
locale settings and on the current date unless every option is pinned, so Tern keeps a small grammar over
:mod:`datetime` instead. The grammar (case-insensitive, surrounding words such as "the trip" ignored where
shown):

range  := "last" N UNIT | "past" N UNIT          -> (now - N UNIT, now)
        | "since" [words "at"] POINT              -> (POINT, now)
        | [DAY] CLOCK ("to" | "-" | "until") [DAY] CLOCK  -> both clocks on DAY (default today); the end on
                                                     the next day when it would fall before the start
        | POINT ("to" | "until") POINT
        | "today" | "yesterday"                    -> that whole local day (yesterday: its midnight to midnight)
POINT  := ISO 8601 date-time (a naive one is facility time) | "now" | N UNIT "ago" | [DAY] CLOCK
DAY    := "today" | "yesterday" | N "days ago" | an ISO date (2026-11-19)
CLOCK  := HH:MM[:SS]; without DAY the most recent past occurrence (today, or yesterday when later than now)
UNIT   := s | sec | second(s) | m | min | minute(s) | h | hr | hour(s) | d | day(s) | w | week(s)

Every function takes ``now`` (aware) and the zone explicitly, so the same text and ``now`` always give the same
range. Results are aware datetimes in UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class TimeRangeError(ValueError):
    """A time range that cannot be parsed, is reversed, empty, or longer than allowed; the message says which."""


_UNITS = {
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
}  # fmt: skip
_N_UNIT = r"(\d+(?:\.\d+)?)\s*([a-z]+)"
_CLOCK = r"(\d{1,2}):(\d{2})(?::(\d{2}))?"
_DAY = r"(today|yesterday|\d{1,4}\s*d(?:ays?)?\s+ago|\d{4}-\d{2}-\d{2})"


def zone(name: str) -> tzinfo:
    """The ``zoneinfo`` zone called ``name`` (IANA name such as ``Europe/Berlin``, or ``UTC``).

    Raises ``TimeRangeError`` for an unknown name."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise TimeRangeError(f"unknown time zone {name!r} (an IANA name such as 'UTC' or 'Europe/Berlin')") from exc


def _duration(n: str, unit: str, text: str) -> timedelta:
    seconds = _UNITS.get(unit)
    if seconds is None:
        raise TimeRangeError(f"unknown time unit {unit!r} in {text!r} (use s, min, h, d or w)")
    return timedelta(seconds=float(n) * seconds)


def _day(word: str | None, now_local: datetime) -> date | None:
    if word is None:
        return None
    if word == "today":
        return now_local.date()
    if word == "yesterday":
        return now_local.date() - timedelta(days=1)
    if m := re.fullmatch(r"(\d+)\s*d(?:ays?)?\s+ago", word):
        return now_local.date() - timedelta(days=int(m.group(1)))
    return date.fromisoformat(word)


def _clock(h: str, m: str, s: str | None, text: str) -> time:
    try:
        return time(int(h), int(m), int(s or 0))
    except ValueError as exc:
        raise TimeRangeError(f"bad clock time in {text!r}: {exc}") from None


def parse_point(text: str, now: datetime, tz: tzinfo) -> datetime:
    """One instant from ``text`` (the POINT of the module grammar), as an aware UTC datetime.

    Args:
        text: ISO 8601 date-time, ``now``, ``N UNIT ago``, or ``[today|yesterday|YYYY-MM-DD] HH:MM[:SS]``.
        now: the reference instant (aware).
        tz: the facility time zone, used for naive ISO times and clock times.
    Raises:
        TimeRangeError: the text matches no form of the grammar.
    """
    t = text.strip().lower()
    now_local = now.astimezone(tz)
    if t == "now":
        return now.astimezone(UTC)
    if m := re.fullmatch(_N_UNIT + r"\s+ago", t):
        return (now - _duration(m.group(1), m.group(2), text)).astimezone(UTC)
    if m := re.fullmatch(rf"(?:{_DAY}\s+)?{_CLOCK}", t):
        day = _day(m.group(1), now_local)
        clock = _clock(m.group(2), m.group(3), m.group(4), text)
        local = datetime.combine(day or now_local.date(), clock, tzinfo=tz)
        if day is None and local > now_local:
            local -= timedelta(days=1)  # a bare clock time is its most recent past occurrence
        return local.astimezone(UTC)
    try:
        parsed = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise TimeRangeError(
            f"cannot read {text!r} as a time: use ISO 8601 (2026-11-19T03:20), 'now', '6 h ago', "
            "'HH:MM' or 'yesterday HH:MM'"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return parsed.astimezone(UTC)


def parse_range(text: str, now: datetime, tz: tzinfo) -> tuple[datetime, datetime]:
    """A ``(start, end)`` range (aware UTC) from one phrase of the module grammar, e.g. ``last 6 h``,
    ``since the trip at 03:20``, ``yesterday 18:00 to 22:00``, ``2026-11-19T01:00 to 2026-11-19T04:00``.

    Raises ``TimeRangeError`` when the phrase matches no form (ranges are not checked for order here: see
    :func:`check_range`)."""
    t = " ".join(text.strip().lower().split())
    now_local = now.astimezone(tz)
    if m := re.fullmatch(r"(?:last|past)\s+" + _N_UNIT, t):
        return (now - _duration(m.group(1), m.group(2), text)).astimezone(UTC), now.astimezone(UTC)
    if t in ("today", "yesterday"):
        day = _day(t, now_local)
        assert day is not None
        start = datetime.combine(day, time(0), tzinfo=tz)
        end = now_local if t == "today" else datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
        return start.astimezone(UTC), end.astimezone(UTC)
    if m := re.fullmatch(r"since\s+(?:.*\bat\s+)?(.+)", t):
        return parse_point(m.group(1), now, tz), now.astimezone(UTC)
    if m := re.fullmatch(rf"(?:{_DAY}\s+)?{_CLOCK}\s*(?:to|until|-)\s*(?:{_DAY}\s+)?{_CLOCK}", t):
        d1, d2 = _day(m.group(1), now_local), _day(m.group(5), now_local)
        c1 = _clock(m.group(2), m.group(3), m.group(4), text)
        c2 = _clock(m.group(6), m.group(7), m.group(8), text)
        if d1 is None:  # "03:00 to 05:00": the most recent past occurrence of the start
            d1 = parse_point(f"{c1:%H:%M:%S}", now, tz).astimezone(tz).date()
        start = datetime.combine(d1, c1, tzinfo=tz)
        end = datetime.combine(d2 or d1, c2, tzinfo=tz)
        if d2 is None and end <= start:
            end += timedelta(days=1)  # "22:00 to 02:00" crosses midnight
        return start.astimezone(UTC), end.astimezone(UTC)
    parts = re.split(r"\s+(?:to|until)\s+", text.strip(), maxsplit=1, flags=re.IGNORECASE)
    if len(parts) == 2:
        return parse_point(parts[0], now, tz), parse_point(parts[1], now, tz)
    raise TimeRangeError(
        f"cannot read {text!r} as a time range: use 'last 6 h', 'since 03:20', 'yesterday 18:00 to 22:00' or "
        "'<ISO time> to <ISO time>'"
    )


def check_range(start: datetime, end: datetime, max_span: timedelta | None = None) -> None:
    """Raise ``TimeRangeError`` when ``end`` is not after ``start`` or the span exceeds ``max_span``."""
    if end <= start:
        raise TimeRangeError(f"time range is reversed or empty: {start.isoformat()} is not before {end.isoformat()}")
    if max_span is not None and end - start > max_span:
        raise TimeRangeError(
            f"time range of {(end - start).total_seconds() / 3600:g} h exceeds the maximum of "
            f"{max_span.total_seconds() / 3600:g} h (setting archiver_max_span_h)"
        )


def resolve(
    *,
    range_text: str | None = None,
    start: str | None = None,
    end: str | None = None,
    now: datetime,
    tz: tzinfo,
    max_span: timedelta | None = None,
) -> tuple[datetime, datetime]:
    """Resolve either a phrase (``range_text``) or a ``start``/``end`` pair (``end`` defaults to ``now``) to a
    checked ``(start, end)`` in UTC. Raises ``TimeRangeError`` for bad, reversed or too long ranges."""
    if range_text:
        if start or end:
            raise TimeRangeError("give either a range phrase or start/end times, not both")
        a, b = parse_range(range_text, now, tz)
    elif start:
        a = parse_point(start, now, tz)
        b = parse_point(end, now, tz) if end else now.astimezone(UTC)
    else:
        raise TimeRangeError("a time range is required (a phrase such as 'last 6 h', or start and end)")
    check_range(a, b, max_span)
    return a, b
