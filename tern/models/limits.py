"""Input limits: the largest (or smallest) input Tern accepts, in one place.

The models use these through ``Field`` constraints and the annotated types below; the CLI and the client check
the ones a model cannot see (file size, nesting depth) and name the limit in their error message. The README
table "Input limits" lists them; keep the two in step.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

MAX_QUERY_CHARS = 4000
"""An agent run's question (``AgentRunRequest.query``), in characters."""

MAX_SEARCH_QUERY_CHARS = 2000
"""A logbook search query (``tern ariel search``, a ``logbook_search`` step, the ARIEL API), in characters."""

MAX_CHANNEL_QUERY_CHARS = 500
"""A channel-finder query (``tern channels find``, a ``channel_find`` step), in characters."""

MAX_CHANNEL_FILE_BYTES = 200_000_000
"""A file given to ``tern channels import``, in bytes (a ChannelFinder export of a few hundred thousand channels)."""

MAX_USER_CHARS = 200
"""A user or approver name, in characters."""

MAX_COMMENT_CHARS = 4000
"""A decision's comment (``tern approve/reject --comment``), in characters; ``Decision.comment`` allows the same."""

MAX_RUN_ID_CHARS = 1000
"""A run id given to ``tern show/approve/reject/result/audit/export-history``, in characters: Temporal's longest
workflow id (dynamic config ``limit.maxIDLength``, default 1000)."""

MAX_APPROVERS = 100
"""Approver names on one run."""

MAX_PLAN_BYTES = 1_000_000
"""A plan file, in bytes. The plan travels in the run's start payload, and Temporal refuses payloads over
2 MB (Temporal docs, "Temporal Platform limits": blob size limit), so 1 MB leaves room for the rest."""

MAX_PLAN_DEPTH = 32
"""Nesting of lists and objects in a plan file (a valid plan needs 4: plan, steps, step, channels)."""

MAX_PLAN_NODES = 200_000
"""Values (lists, objects, scalars) in a parsed plan, counted through YAML aliases, so that a small file with
nested aliases ("billion laughs") is refused instead of being expanded."""

MIN_APPROVAL_TIMEOUT_S = 0.0
"""An approval wait must be longer than this, in seconds (exclusive bound)."""

MAX_APPROVAL_TIMEOUT_S = 30 * 86400.0
"""The longest approval wait, in seconds (30 days)."""


MIN_WATCH_INTERVAL_S = 60.0
"""The shortest ``tern ariel watch --every`` interval, in seconds."""

MAX_WATCH_INTERVAL_S = 366 * 86400.0
"""The longest ``tern ariel watch --every`` interval, in seconds (a year)."""


def _not_blank(name: str) -> str:
    if not name.strip():
        raise ValueError("must not be blank")
    return name


UserName = Annotated[
    str, Field(min_length=1, max_length=MAX_USER_CHARS), AfterValidator(_not_blank), AfterValidator(str.strip)
]
"""A user or approver name: 1 to ``MAX_USER_CHARS`` characters, not only whitespace; surrounding whitespace is
dropped, so "alice " is alice (the two-person rule compares names)."""
