"""The template answer composer: a deterministic answer from the step results, citing entries as [#id].

It is the default behind the ``compose_answer`` activity; an LLM provider replaces it by registering an activity
under the same name. Citations are only ever ids of entries that a logbook step of this run returned.
"""

from __future__ import annotations

import re

from tern.models.activity_io import ComposedAnswer, ComposeInput

_CITE = re.compile(r"\[#([^\]\s]+)\]")


def checked_citations(answer: str, retrieved: set[str]) -> list[str]:
    """The ``[#id]`` citations in ``answer`` that name retrieved entries, in order of first appearance."""
    seen: list[str] = []
    for cid in _CITE.findall(answer):
        if cid in retrieved and cid not in seen:
            seen.append(cid)
    return seen


def _fmt(value: object, precision: int | None) -> str:
    """A float shown with the channel's EPICS display precision (PREC), else 4 significant decimals."""
    if isinstance(value, float):
        return f"{value:.{precision if precision is not None and 0 <= precision <= 12 else 4}f}"
    return str(value)


def compose(inp: ComposeInput) -> ComposedAnswer:
    """Summarise logbook hits, channel readings and writes in plain text."""
    lines: list[str] = [f"Question: {inp.query}"]
    retrieved: set[str] = set()
    flat = [r for step in inp.steps for r in [step, *(step.sources or [])]]  # a gather step's sources too
    for step in flat:
        if step.sources is not None and any(r.status != "completed" for r in step.sources):
            lines.append(f"Data sources (step {step.step_id}): {step.message}")
        if step.hits is not None:
            if step.hits:
                lines.append("Logbook entries found:")
                for h in step.hits[:5]:
                    when = h.timestamp.strftime("%Y-%m-%d %H:%M UTC") if h.timestamp else "undated"
                    lines.append(f"- [#{h.entry_id}] {h.title} ({h.author}, {when})")
                    retrieved.add(h.entry_id)
            else:
                lines.append("No logbook entries matched the search.")
        if step.readings:
            lines.append("Channel readings:")
            for r in step.readings:
                if r.error:
                    lines.append(f"- {r.channel}: unavailable ({r.error})")
                else:
                    lines.append(f"- {r.channel} = {_fmt(r.value, r.precision)} {r.units}".rstrip())
        if step.archived is not None:
            a = step.archived
            lines.append(
                f"Archived history {a.start:%Y-%m-%d %H:%M} to {a.end:%Y-%m-%d %H:%M} UTC ({a.binning or 'raw'}; "
                f"samples in artifact {a.artifact_id or '-'}):"
            )
            for sm in a.series:
                if sm.error:
                    lines.append(f"- {sm.channel}: no data ({sm.error})")
                else:
                    lines.append(
                        f"- {sm.channel}: {sm.count} points, min {_fmt(sm.min, 4)}, max {_fmt(sm.max, 4)}, "
                        f"mean {_fmt(sm.mean, 4)}, last {_fmt(sm.last_value, 4)} {sm.units}".rstrip()
                    )
        if step.python is not None:
            py = step.python
            if py.execution is not None and py.status == "completed":
                shown = {k: v for k, v in py.execution.results.items() if k != "proposed_writes"}
                lines.append(
                    f"Analysis (step {step.step_id}, sandboxed): "
                    + ", ".join(f"{k} = {_fmt(v, 4)}" for k, v in list(shown.items())[:12])
                )
                if py.execution.figures:
                    lines.append("Figures: " + ", ".join(f.artifact_id or f.name for f in py.execution.figures))
            else:
                lines.append(f"Analysis (step {step.step_id}) {py.status}: {py.message}")
        if step.kind == "control_write":
            if step.write is not None:
                w = step.write
                state = "verified" if w.verified else "NOT verified"
                lines.append(
                    f"Write: {w.channel} changed from {w.previous_value} to {w.value} "
                    f"({state}; readback {w.readback}). {w.message}"
                )
            elif step.status != "skipped":
                lines.append(f"Write to {step.check.channel if step.check else '?'} {step.status}: {step.message}")
    if inp.memories:
        lines.append(f"Your notes ({inp.user}):")
        lines.extend(f"- {m.text[:300]}" for m in inp.memories)
    answer = "\n".join(lines)
    return ComposedAnswer(answer=answer, citations=checked_citations(answer, retrieved))
