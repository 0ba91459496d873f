"""Event triggers (``tern trigger``): what starts a run without an operator asking, and what it records.

A trigger starts an agent run from a question (planned by the worker's LLM) or from a plan, when:

- ``schedule``: a cron expression or an interval fires (a Temporal Schedule; the schedule is the record);
- ``channel``: a Channel Access channel crosses a threshold (with hysteresis), changes alarm severity, or
  changes value (the trigger monitor, :mod:`starters.trigger_monitor`; definitions in PostgreSQL);
- ``webhook``: a ``POST /triggers/{name}`` signed by one of the trigger's ``key_ids`` arrives on Tern's webhook
  API (definitions in PostgreSQL).

Every triggered run carries a :class:`RunTrigger` in its input (``AgentRunRequest.trigger``) and an audit row
(``run_triggered``).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tern.models.limits import MAX_QUERY_CHARS
from tern.models.plan import Plan

TriggerKind = Literal["schedule", "channel", "webhook"]
ChannelCondition = Literal["above", "below", "severity_change", "on_change"]
TRIGGER_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,47}$")
"""Trigger names: lower-case letters, digits and dashes, 1 to 48 characters (they go into Workflow and Schedule
IDs, ``tern-trigger-<name>`` and ``trigger-<name>-...``)."""


class ChannelWatch(BaseModel):
    """What a channel trigger watches: ``channel`` and one condition.

    ``above``/``below``: fires when the value crosses ``threshold`` (engineering units) upwards/downwards, and is
    re-armed only once the value is back past ``threshold - hysteresis`` (``+`` for below); ``severity_change``:
    fires when the alarm severity (EPICS ``SEVR``: 0 NO_ALARM, 1 MINOR, 2 MAJOR, 3 INVALID) changes;
    ``on_change``: fires on any value change. The first value seen never fires (it is the reference).
    """

    model_config = ConfigDict(extra="forbid")
    channel: str = Field(min_length=1, max_length=200)
    condition: ChannelCondition
    threshold: float | None = Field(None, allow_inf_nan=False)
    hysteresis: float = Field(0.0, ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _threshold(self) -> ChannelWatch:
        if (self.condition in ("above", "below")) != (self.threshold is not None):
            raise ValueError("a threshold is given with --above or --below, and only then")
        return self

    def describe(self) -> str:
        """One line, e.g. ``SR:...:REV above 40 (hysteresis 2)``."""
        if self.condition in ("above", "below"):
            return f"{self.channel} {self.condition} {self.threshold:g} (hysteresis {self.hysteresis:g})"
        return f"{self.channel} {self.condition.replace('_', ' ')}"


class TriggerAction(BaseModel):
    """What a trigger starts: a question for the planner, or a plan; as ``user``."""

    model_config = ConfigDict(extra="forbid")
    question: str | None = Field(None, min_length=1, max_length=MAX_QUERY_CHARS)
    plan: Plan | None = None
    plan_file: str | None = Field(None, description="The plan file it was read from (for display).")
    user: str = Field(min_length=1, max_length=200)

    @model_validator(mode="after")
    def _one(self) -> TriggerAction:
        if (self.question is None) == (self.plan is None):
            raise ValueError("give exactly one of --question and --plan")
        return self

    def query(self, name: str) -> str:
        """The run's query: the question, or ``trigger <name>: plan <file>``."""
        return self.question or f"trigger {name}: plan {self.plan_file or '(inline)'}"


class TriggerDefinition(BaseModel):
    """A channel or webhook trigger as stored in PostgreSQL (table ``triggers``, migration 330)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=TRIGGER_NAME.pattern)
    kind: Literal["channel", "webhook"]
    action: TriggerAction
    watch: ChannelWatch | None = None
    key_ids: list[str] = Field(
        default_factory=list,
        max_length=32,
        description="Webhook triggers: the webhook key ids (of TERN_CHAT__WEBHOOK_SECRETS) that may fire it; none: "
        "nobody may (a definition stored before key lists existed is refused until re-added).",
    )
    paused: bool = False
    created_by: str = ""
    created_at: datetime | None = None

    @model_validator(mode="after")
    def _watch(self) -> TriggerDefinition:
        if (self.kind == "channel") != (self.watch is not None):
            raise ValueError("a channel trigger has a watch, and only it")
        if self.key_ids and self.kind != "webhook":
            raise ValueError("key ids go with a webhook trigger only")
        if any(not k.strip() or len(k) > 64 for k in self.key_ids):
            raise ValueError("a webhook key id must be 1 to 64 characters")
        return self


class RunTrigger(BaseModel):
    """The trigger that started a run and its event, in the run's input (``AgentRunRequest.trigger``).

    ``event`` for a channel trigger: ``{"channel", "value", "severity", "timestamp" (IOC time, POSIX s),
    "condition"}``; for a webhook: the posted JSON body; for a schedule: ``{"spec": "<cron or interval>"}``.
    """

    model_config = ConfigDict(extra="forbid")
    name: str
    kind: TriggerKind
    event: dict[str, Any] = Field(default_factory=dict)
    source: str = Field("", max_length=200, description="Who sent the event: a webhook's signing key id.")


def schedule_id(name: str) -> str:
    """The Temporal Schedule ID of schedule trigger ``name``: ``tern-trigger-<name>``."""
    return f"{SCHEDULE_PREFIX}{name}"


SCHEDULE_PREFIX = "tern-trigger-"
"""Prefix of the Schedule IDs Tern creates; ``tern trigger list`` lists only these."""
RUN_PREFIX = "trigger-"
"""Prefix of the Workflow IDs of runs a trigger starts: ``trigger-<name>-...``."""
