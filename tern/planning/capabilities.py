"""The built-in capabilities (one per step kind of ``tern.models.plan``) and the default registry.

A new capability is one module with a :class:`~tern.planning.registry.Capability` and one
``REGISTRY.register(...)`` call (README "Adding a capability").
"""

from __future__ import annotations

from tern.models.plan import (
    ChannelFindStep,
    ChannelReadStep,
    ControlWriteStep,
    LogbookSearchStep,
    PythonStep,
    RespondStep,
)
from tern.models.run import StepResult
from tern.planning.registry import Capability, CapabilityRegistry

SNIPPET_CHARS = 300  # of each logbook hit, shown to the next LLM call


def _hits(r: StepResult) -> str:
    if not r.hits:
        return "no entries found"
    lines = []
    for h in r.hits:
        when = h.timestamp.strftime("%Y-%m-%d") if h.timestamp else "undated"
        text = " ".join((h.snippet or "").replace("**", "").split())[:SNIPPET_CHARS]  # without search highlights
        lines.append(f"[#{h.entry_id}] {h.title} ({when}): {text}")
    return "\n  ".join(lines)


def _readings(r: StepResult) -> str:
    if not r.readings:
        return r.message
    return "; ".join(
        f"{x.channel} unavailable ({x.error})" if x.error else f"{x.channel} = {x.value} {x.units}".rstrip()
        for x in r.readings
    )


def _found(r: StepResult) -> str:
    if not r.channels:
        return r.message or "no channels found"
    return "; ".join(
        f"{c.name} ({c.description}{', ' + c.units if c.units else ''}{', writable' if c.writable else ''})"
        for c in r.channels
    )


def _python(r: StepResult) -> str:
    py = r.python
    if py is None or py.execution is None or py.status != "completed":
        return r.message
    items = list(py.execution.results.items())[:12]
    return ", ".join(f"{k} = {v!r}"[:200] for k, v in items) or "no results"


def _write(r: StepResult) -> str:
    if r.write is not None:
        w = r.write
        return f"{w.channel}: {w.previous_value} -> {w.value} ({'verified' if w.verified else 'NOT verified'})"
    return r.message


LOGBOOK_SEARCH = Capability(
    kind="logbook_search",
    description="Search the electronic logbook (ARIEL) for entries about the question; returns entries with ids "
    "that the answer cites as [#ENTRY-ID]. Parameters: query (words), limit (1-100), mode "
    "(keyword|semantic|hybrid|rag).",
    step_model=LogbookSearchStep,
    summarise=_hits,
    example={"id": "search", "kind": "logbook_search", "query": "RF cavity 1 trip", "limit": 5},
)
CHANNEL_FIND = Capability(
    kind="channel_find",
    description="Find control-system channels by a description in plain words ('cavity 1 forward power', 'beam "
    "current'); returns channel names ranked with their descriptions and units. A later channel_read takes them "
    "with 'channels_from': [this step's id]. Parameters: query, limit (1-100), mode (keyword|semantic|hybrid).",
    step_model=ChannelFindStep,
    summarise=_found,
    example={"id": "find", "kind": "channel_find", "query": "cavity 1 reflected power", "limit": 5},
)
CHANNEL_READ = Capability(
    kind="channel_read",
    description="Read the live value, units and alarm state of control-system channels: 'channels' (exact names "
    "from the channel database or the channel candidates) and/or 'channels_from' (ids of earlier steps that found "
    "channels, e.g. a channel finder).",
    step_model=ChannelReadStep,
    summarise=_readings,
    channels=lambda s: (list(s.channels), []),
    example={"id": "read", "kind": "channel_read", "channels": ["SR:RF:CAVITY:01:VOLTAGE:RB"]},
)
PYTHON = Capability(
    kind="python",
    description="Run analysis code in a sandbox (no network, no control-system access) on earlier steps' "
    "results: 'inputs' lists earlier step ids; give 'objective' (code is generated) or 'code'. The code may "
    "propose writes, which become approval-gated control_write steps.",
    step_model=PythonStep,
    needs_approval=True,
    summarise=_python,
    example={"id": "analyse", "kind": "python", "inputs": ["read"], "objective": "mean of the readings"},
)
CONTROL_WRITE = Capability(
    kind="control_write",
    description="Write an absolute value to a writable setpoint channel. Checked against the limits database "
    "and the master switch, then a human approves it. Only propose a write the operator asked for.",
    step_model=ControlWriteStep,
    needs_approval=True,
    summarise=_write,
    channels=lambda s: ([], [s.channel]),
    example={
        "id": "set",
        "kind": "control_write",
        "channel": "SR:RF:CAVITY:01:VOLTAGE:SP",
        "value": 2.5,
        "reason": "...",
    },
)
RESPOND = Capability(
    kind="respond",
    description="Compose the answer to the question from the earlier steps' results, citing logbook entries as "
    "[#ENTRY-ID]. Always the last step.",
    step_model=RespondStep,
    summarise=lambda r: r.answer or r.message,
    example={"id": "answer", "kind": "respond"},
)


def default_registry() -> CapabilityRegistry:
    """A registry holding the built-in capabilities (a fresh object: callers may register more)."""
    return CapabilityRegistry([LOGBOOK_SEARCH, CHANNEL_FIND, CHANNEL_READ, PYTHON, CONTROL_WRITE, RESPOND])


REGISTRY = default_registry()
"""The registry the planner activity uses; capabilities in other packages register here."""
