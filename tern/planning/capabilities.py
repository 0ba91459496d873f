"""The built-in capabilities (one per step kind of ``tern.models.plan``) and the default registry.

A new capability is one module with a :class:`~tern.planning.registry.Capability` and one
``REGISTRY.register(...)`` call (README "Adding a capability").
"""

from __future__ import annotations

from tern.models.channel_finder import ChannelHit
from tern.models.plan import (
    ArchiverReadStep,
    BlueskyPlanStep,
    ChannelFindStep,
    ChannelReadStep,
    ControlWriteStep,
    GatherStep,
    LogbookPublishStep,
    LogbookSearchStep,
    MemoryStep,
    OrbitCorrectStep,
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

    def one(c: ChannelHit) -> str:
        return f"{c.name} ({c.description}{', ' + c.units if c.units else ''}{', writable' if c.writable else ''})"

    meant = [c for c in r.channels if c.in_set]
    if not meant:
        return "; ".join(one(c) for c in r.channels)
    rest = [c for c in r.channels if not c.in_set]
    text = f"the request means these {len(meant)}: " + "; ".join(one(c) for c in meant)
    return text + (" | alternatives: " + "; ".join(one(c) for c in rest) if rest else "")


def _archived(r: StepResult) -> str:
    a = r.archived
    if a is None:
        return r.message
    lines = [f"{a.start:%Y-%m-%d %H:%M} to {a.end:%Y-%m-%d %H:%M} UTC, binning {a.binning or 'raw'}"]
    for x in a.series:
        lines.append(
            f"{x.channel}: {x.error or 'no data'}"
            if x.error or x.min is None or x.max is None or x.mean is None or x.last_value is None
            else f"{x.channel}: {x.count} samples, min {x.min:.4g}, max {x.max:.4g}, mean {x.mean:.4g}, last "
            f"{x.last_value:.4g} {x.units} (worst severity {x.max_severity})".rstrip()
        )
    return "\n  ".join(lines)


def _gathered(r: StepResult) -> str:
    if not r.sources:
        return r.message
    return r.message + "".join(f"\n  - {REGISTRY.summarise(x)}" for x in r.sources)


def _memories(r: StepResult) -> str:
    if not r.memories:
        return r.message or "no notes"
    return "; ".join(f"note {m.id} ({m.created_at:%Y-%m-%d}): {m.text[:300]}" for m in r.memories)


def _gather_channels(step: GatherStep) -> tuple[list[str], list[str]]:
    read = [c for src in step.sources if isinstance(src, ChannelReadStep | ArchiverReadStep) for c in src.channels]
    return read, []


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
    "current', 'the last three horizontal corrector setpoints', 'both planes of BPM 12'); returns the set of "
    "channels the request means (ordinals, first/last N, all, both planes, setpoint and readback, sectors) first, "
    "then ranked alternatives, with descriptions and units. A later channel_read takes the set (or, without one, "
    "every hit) with 'channels_from': [this step's id]. Parameters: query, limit (1-100), mode "
    "(keyword|semantic|hybrid).",
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
ARCHIVER_READ = Capability(
    kind="archiver_read",
    description="Archived history of channels (EPICS Archiver Appliance) over a time range: 'channels', and "
    "'range' as a phrase in the facility time zone ('last 6 h', 'since the trip at 03:20', 'yesterday 18:00 to "
    "22:00') or 'start'/'end' (ISO 8601); 'binning' auto (default), raw, or an operator such as mean_600. Returns "
    "per channel count, min, max, mean, last value and worst alarm severity; a python step listing this step in "
    "'inputs' gets the samples (load_series).",
    step_model=ArchiverReadStep,
    summarise=_archived,
    channels=lambda s: (list(s.channels), []),
    example={
        "id": "history",
        "kind": "archiver_read",
        "channels": ["SR:RF:CAVITY:01:POWER:REV"],
        "range": "last 6 h",
    },
)
GATHER = Capability(
    kind="gather",
    description="Several retrievals at the same time ('sources': logbook_search, channel_read and archiver_read "
    "steps), each with its own time limit ('timeout_s'); a failing source is named and the others are kept. Use "
    "it instead of consecutive retrieval steps when they do not depend on each other.",
    step_model=GatherStep,
    summarise=_gathered,
    channels=_gather_channels,
    example={
        "id": "data",
        "kind": "gather",
        "sources": [
            {"kind": "logbook_search", "query": "cavity 1 trip"},
            {"kind": "channel_read", "channels": ["SR:RF:CAVITY:01:POWER:REV"]},
        ],
    },
)
MEMORY = Capability(
    kind="memory",
    description="The asking user's own notes: action 'remember' stores 'text' (only when the user asks the agent "
    "to remember something; may wait for an approval), action 'recall' searches the notes for 'query'.",
    step_model=MemoryStep,
    summarise=_memories,
    example={"id": "notes", "kind": "memory", "action": "recall", "query": "cavity 1"},
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


ORBIT_CORRECT = Capability(
    kind="orbit_correct",
    description="Move the storage ring's closed orbit at named BPMs by given amounts in mm, one plane: 'bpms' maps "
    "BPM position channels (SR:DIAG:BPM:NN:POSITION:X or :Y) to the change wanted. Corrector currents come from "
    "the ring model's orbit response matrix; each becomes a control write with its predicted effect, approved by "
    "a human. Only when the operator asks to move or correct the orbit.",
    step_model=OrbitCorrectStep,
    needs_approval=True,
    summarise=lambda r: r.message,
    channels=lambda s: (list(s.bpms), []),
    example={
        "id": "bump",
        "kind": "orbit_correct",
        "bpms": {"SR:DIAG:BPM:07:POSITION:X": 0.5},
        "reason": "move the horizontal orbit at BPM 07 by +0.5 mm",
    },
)


def _published(r: StepResult) -> str:
    p = r.logbook
    if p is None:
        return r.message
    return f"entry {p.entry_id} in the {p.target} logbook: {p.title} (approved by {p.approved_by})"


LOGBOOK_PUBLISH = Capability(
    kind="logbook_publish",
    description="Write an entry to the electronic logbook: 'title', 'text', 'tags', 'inputs' (earlier step ids "
    "whose results the entry reports; their figures are attached) and 'attachments' (artifact ids art_... of this "
    "run). The drafted entry is shown to a human and published only when approved. Only when the user asks for a "
    "logbook entry.",
    step_model=LogbookPublishStep,
    needs_approval=True,
    summarise=_published,
    example={
        "id": "elog",
        "kind": "logbook_publish",
        "title": "RF cavity 1 reflected power check",
        "text": "Checked the reflected power after the trip.",
        "tags": ["RF"],
        "inputs": ["read"],
    },
)


def _bluesky(r: StepResult) -> str:
    b = r.bluesky
    if b is None:
        return r.message
    return f"Bluesky plan {b.exit_status}, runs {', '.join(b.run_uids) or 'none'} (queue item {b.item_uid})"


BLUESKY_PLAN = Capability(
    kind="bluesky_plan",
    description="Run a Bluesky plan (a scan or measurement) on the Bluesky queue server: 'plan' (its name, e.g. "
    "count, scan, rel_scan, list_scan), 'args' and 'kwargs' (devices by name, e.g. ['det1'], 'motor1'), 'reason'. "
    "Checked against the queue server's allowed plans and devices, then a human approves it; the step waits for the "
    "plan to end and reports its exit status and run uids. Only when the user asks for a scan or measurement.",
    step_model=BlueskyPlanStep,
    needs_approval=True,
    summarise=_bluesky,
    example={
        "id": "scan",
        "kind": "bluesky_plan",
        "plan": "scan",
        "args": [["det1"], "motor1", -1.0, 1.0, 5],
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
    return CapabilityRegistry(
        [
            LOGBOOK_SEARCH,
            CHANNEL_FIND,
            CHANNEL_READ,
            ARCHIVER_READ,
            GATHER,
            MEMORY,
            PYTHON,
            CONTROL_WRITE,
            ORBIT_CORRECT,
            LOGBOOK_PUBLISH,
            BLUESKY_PLAN,
            RESPOND,
        ]
    )


REGISTRY = default_registry()
"""The registry the planner activity uses; capabilities in other packages register here."""
