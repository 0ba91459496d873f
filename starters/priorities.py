"""Task-queue priorities and fairness keys of what Tern starts (Temporal ``Priority``, honoured by the server's
matching service when tasks back up on a queue; Temporal Server 1.32 here, no configuration needed).

Lower ``priority_key`` goes first: an operator's question or plan (CLI, chat, MCP) before a trigger's run, both
before logbook ingestion and re-embedding. A workflow's priority is inherited by its activities, its child
workflows (a python step) and its continue-as-new runs, so an hour of re-embedding never holds an operator's write
or approval behind it on a busy queue. Within one priority, ``fairness_key`` shares dispatch between keys (per user,
per trigger, per logbook source) instead of first come first served, when the server's fairness is on (dynamic
config ``matching.enableFairness``; without it the keys are carried and ignored).
"""

from __future__ import annotations

from temporalio.common import Priority

from tern.models import AgentRunRequest

OPERATOR_PRIORITY = 1
"""An operator's run: a question or a plan started by a person (``tern ask``/``run``, chat, MCP)."""
TRIGGER_PRIORITY = 3
"""A run a trigger started (schedule, channel condition, webhook). 3 is also the server's default (unset)."""
BACKGROUND_PRIORITY = 5
"""Logbook ingestion and re-embedding: hours of work that can wait (5 is the lowest of the server's default 5)."""
MAX_FAIRNESS_KEY_BYTES = 64
"""Temporal's limit on a fairness key."""


def fairness_key(key: str) -> str:
    """``key`` cut to :data:`MAX_FAIRNESS_KEY_BYTES` bytes of UTF-8 (whole characters)."""
    return key.encode()[:MAX_FAIRNESS_KEY_BYTES].decode(errors="ignore")


def run_priority(request: AgentRunRequest) -> Priority:
    """The priority of an agent run: :data:`TRIGGER_PRIORITY` with fairness key ``trigger:<name>`` when a
    trigger started it, else :data:`OPERATOR_PRIORITY` with the requesting user as fairness key."""
    if request.trigger is not None:
        return Priority(priority_key=TRIGGER_PRIORITY, fairness_key=fairness_key(f"trigger:{request.trigger.name}"))
    return Priority(priority_key=OPERATOR_PRIORITY, fairness_key=fairness_key(request.user))


def background_priority(source: str) -> Priority:
    """The priority of ingestion or re-embedding of ``source`` (an adapter and path, a model): lowest, with the
    source as fairness key (two logbooks ingest side by side, neither starves)."""
    return Priority(priority_key=BACKGROUND_PRIORITY, fairness_key=fairness_key(source))
