"""Arguments of the MCP server's tools (``tern mcp``, ``starters.mcp_server``): one model per tool.

Each model refuses unknown fields (``extra="forbid"``), and its JSON Schema (``additionalProperties: false``) is
the tool's ``inputSchema``, so an MCP client sees exactly what a tool takes and a misspelt argument is refused
by name instead of being dropped. Limits are the CLI's (``tern.models.limits``); the plan of ``run_plan`` is
the ``Plan`` that ``tern run --plan`` reads.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from tern.models.channel_finder import ChannelFindMode
from tern.models.limits import (
    MAX_APPROVERS,
    MAX_CHANNEL_QUERY_CHARS,
    MAX_QUERY_CHARS,
    MAX_RUN_ID_CHARS,
    MAX_SEARCH_QUERY_CHARS,
    UserName,
)
from tern.models.plan import ARCHIVER_BINNING, ChannelName, Plan

RunId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_RUN_ID_CHARS,
        description="Workflow ID of the run (tern-run-...), as ask, run_plan or propose_write returned it.",
    ),
]
Approvers = Annotated[
    list[UserName],
    Field(
        default_factory=list,
        max_length=MAX_APPROVERS,
        description="Narrow who may approve (the worker's approval policy decides; this can never widen it).",
    ),
]
RequestKey = Annotated[
    str | None,
    Field(
        None,
        min_length=1,
        max_length=200,
        description="A key of this request, e.g. your tool call's id: sent again with the same key, no second run "
        "starts (the first one's id comes back); the answer then carries the run's first progress.",
    ),
]
MAX_READ_CHANNELS = 100
"""Most channels one ``read_channels`` call reads."""
MAX_ARCHIVER_CHANNELS = 50
"""Most channels one ``archiver_read`` call reads (as an ``archiver_read`` step)."""


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AskArgs(_Args):
    """``ask``: start a run that plans a question with the worker's LLM."""

    question: str = Field(min_length=1, max_length=MAX_QUERY_CHARS, description="The operator's question.")
    approvers: Approvers
    context: str = Field("", max_length=4000, description="Context for the planner (role, what is known).")
    plan_approval: bool | None = Field(
        None,
        description="Ask a human approver for the plan before any step runs "
        "(default: the setting TERN_LLM__PLAN_APPROVAL).",
    )
    request_key: RequestKey


class RunPlanArgs(_Args):
    """``run_plan``: start a run with an explicit plan (the plan file of ``tern run --plan``, as JSON)."""

    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS, description="The question the plan answers.")
    plan: Plan
    approvers: Approvers
    request_key: RequestKey


class RunIdArgs(_Args):
    """``run_status`` and ``run_result``: one run."""

    workflow_id: RunId


class PendingArgs(_Args):
    """``pending_approvals``: every run waiting for a human decision, or only the one named."""

    workflow_id: RunId | None = None


class SearchLogbookArgs(_Args):
    """``search_logbook``: an ARIEL search with the filters of ``tern ariel search``."""

    query: str = Field(
        min_length=1,
        max_length=MAX_SEARCH_QUERY_CHARS,
        description='Full text ("phrase", or, -term) with author:, tag:, date: operators.',
    )
    mode: Literal["keyword", "semantic", "hybrid", "rag"] = Field(
        "keyword", description="Search mode; without embeddings, semantic parts degrade to keyword (see notice)."
    )
    limit: int = Field(10, ge=1, le=100, description="Most hits returned.")
    author: str | None = Field(None, max_length=200, description="Only entries whose author contains this.")
    tags: list[str] = Field(default_factory=list, max_length=50, description="Only entries with one of these tags.")
    since: datetime | None = Field(None, description="Only entries at or after this time (ISO 8601; naive = UTC).")
    until: datetime | None = Field(None, description="Only entries before this time (ISO 8601; naive = UTC).")


class FindChannelsArgs(_Args):
    """``find_channels``: the channel finder (``tern channels find``)."""

    query: str = Field(
        min_length=1,
        max_length=MAX_CHANNEL_QUERY_CHARS,
        description='A description ("cavity 1 forward power"), a name or an alias.',
    )
    mode: ChannelFindMode = Field("keyword", description="keyword, semantic or hybrid.")
    limit: int = Field(10, ge=1, le=100, description="Most channels returned.")


class ReadChannelsArgs(_Args):
    """``read_channels``: live Channel Access reads (value, units, alarm state, limits)."""

    channels: list[ChannelName] = Field(
        min_length=1, max_length=MAX_READ_CHANNELS, description="Channel (PV) names, e.g. SR:RF:CAVITY:01:POWER:FWD."
    )


class ArchiverReadArgs(_Args):
    """``archiver_read``: archived history over a time range (the fields of an ``archiver_read`` plan step)."""

    channels: list[ChannelName] = Field(min_length=1, max_length=MAX_ARCHIVER_CHANNELS, description="Channel names.")
    range: str | None = Field(
        None,
        max_length=200,
        description="Time range phrase in the facility time zone: 'last 6 h', 'since 03:20', "
        "'yesterday 18:00 to 22:00'. Give this or 'start'.",
    )
    start: str | None = Field(None, max_length=64, description="Start: ISO 8601, 'now', '6 h ago', 'yesterday 18:00'.")
    end: str | None = Field(None, max_length=64, description="End (same forms as start); default now.")
    binning: str = Field(
        "auto",
        pattern=ARCHIVER_BINNING.pattern,
        description="'auto', 'raw', or operator_seconds: mean_600, max_60, firstSample_3600, ...",
    )


class ProposeWriteArgs(_Args):
    """``propose_write``: a run whose only step writes ``value`` to ``channel`` after a human approves it."""

    channel: ChannelName = Field(description="The setpoint channel, e.g. SR:RF:CAVITY:01:VOLTAGE:SP.")
    value: float = Field(
        strict=True, allow_inf_nan=False, description="Absolute target value in the channel's engineering units."
    )
    reason: str = Field(min_length=1, max_length=2000, description="Why the write is proposed, shown to the approver.")
    approvers: Approvers
    request_key: RequestKey
