"""Search filters, and the filter operators an operator may type inside a query.

Operators (case-insensitive, anywhere in the query; values with spaces in double quotes):
``author:NAME`` (author contains NAME), ``tag:TAG`` (repeatable: any of the tags), ``source:SYSTEM``,
``logbook:NAME``, ``after:YYYY-MM-DD``, ``before:YYYY-MM-DD`` (exclusive) and ``date:YYYY-MM-DD`` (that UTC
day). The rest of the query is full text in web-search syntax: ``"quoted phrase"``, ``or``, ``-excluded``.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta

from pydantic import BaseModel, Field, field_validator


class QueryError(ValueError):
    """A filter operator's value cannot be understood (the message names the operator and the value)."""


class SearchFilters(BaseModel):
    """Restrictions applied before ranking. Times are UTC; ``until`` is exclusive; tags match any."""

    author: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    tags: list[str] = Field(default_factory=list)
    source_system: str | None = None
    logbook: str | None = None

    @field_validator("since", "until")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            return v.replace(tzinfo=UTC)
        return v

    def merged(self, other: SearchFilters) -> SearchFilters:
        """These filters with ``other``'s set values taking precedence (tags are united)."""
        data = self.model_dump()
        for k, v in other.model_dump().items():
            if k == "tags":
                data["tags"] = sorted(set(data["tags"]) | set(v))
            elif v is not None:
                data[k] = v
        return SearchFilters.model_validate(data)

    @property
    def empty(self) -> bool:
        return self == SearchFilters()


_OP = re.compile(r'(?i)(?<!\S)(author|tag|source|logbook|after|before|date):("([^"]*)"|\S+)')


def _day(op: str, value: str) -> datetime:
    try:
        return datetime.combine(date.fromisoformat(value), time(0), tzinfo=UTC)
    except ValueError as exc:
        raise QueryError(f"{op}: expects a date YYYY-MM-DD, got {value!r}") from exc


def parse_query(query: str) -> tuple[str, SearchFilters]:
    """Split operators out of ``query``: returns ``(full_text, filters)``. Raises ``QueryError`` on bad dates."""
    f = SearchFilters()
    tags: list[str] = []

    def take(m: re.Match[str]) -> str:
        op = m.group(1).lower()
        value = m.group(3) if m.group(3) is not None else m.group(2)
        if op == "author":
            f.author = value
        elif op == "tag":
            tags.append(value)
        elif op == "source":
            f.source_system = value.lower()
        elif op == "logbook":
            f.logbook = value
        elif op == "after":
            f.since = _day(op, value)
        elif op == "before":
            f.until = _day(op, value)
        else:  # date
            f.since = _day(op, value)
            f.until = f.since + timedelta(days=1)
        return " "

    text = _OP.sub(take, query)
    f.tags = tags
    return " ".join(text.split()), f
