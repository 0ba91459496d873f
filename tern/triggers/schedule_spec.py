"""Schedule triggers' timing, checked before anything is created: a cron expression (five fields, minute hour
day-of-month month day-of-week, as Temporal Schedules' ``cron_expressions`` read them) or an interval such as
``10m``, ``90s``, ``1h30m``, ``2d``.

Cron syntax is checked with croniter (https://github.com/pallets-eco/croniter, ``croniter.is_valid``).
"""

from __future__ import annotations

import re
from datetime import timedelta

from croniter import croniter

MIN_INTERVAL = timedelta(seconds=1)
MAX_INTERVAL = timedelta(days=366)
_PART = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class ScheduleSpecError(ValueError):
    """A cron expression or interval that does not parse; the message says what is wrong."""


def check_cron(expr: str) -> str:
    """``expr`` stripped, if it is a valid five-field cron expression; else :class:`ScheduleSpecError`."""
    text = " ".join(expr.split())
    fields = text.split(" ") if text else []
    if len(fields) != 5:
        raise ScheduleSpecError(
            f"cron expression {expr!r} has {len(fields)} fields; it needs 5 (minute hour day-of-month month "
            "day-of-week), e.g. '*/10 * * * *'"
        )
    if not croniter.is_valid(text):
        raise ScheduleSpecError(f"cron expression {expr!r} does not parse (croniter)")
    return text


def parse_every(text: str) -> timedelta:
    """``10m`` -> 10 minutes: one or more ``<integer><s|m|h|d>`` parts, between ``MIN_INTERVAL`` (1 s) and
    ``MAX_INTERVAL`` (366 days). Raises :class:`ScheduleSpecError`."""
    compact = text.strip().lower()
    if not compact or _PART.sub("", compact):
        raise ScheduleSpecError(f"interval {text!r} does not parse: use e.g. 30s, 10m, 1h30m, 2d")
    total = timedelta()
    for number, unit in _PART.findall(compact):
        total += timedelta(**{_UNITS[unit]: int(number)})
    if not MIN_INTERVAL <= total <= MAX_INTERVAL:
        raise ScheduleSpecError(f"interval {text!r} is outside 1s .. 366d")
    return total
