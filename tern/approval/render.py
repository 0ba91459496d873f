"""Markdown for a run's "current details" in the Temporal Web UI: what waits for a decision and how to decide it.

Pure functions (no Temporal import): the approval gate and the workflows call them and pass the text to
``workflow.set_current_details``. The Web UI (2.x) shows that text on the workflow's page, rendered as Markdown
in a sandboxed frame with HTML stripped (temporalio/ui ``markdown.svelte``, ``/render?content=``), so only plain
Markdown is used here: headings, lists, bold, inline code, fenced code blocks and links, no tables or HTML.
Text that comes from a plan or a user (reasons, objectives, summaries) is escaped so it cannot fake structure
or a link.

The decision body shown is the JSON form of :class:`tern.models.Decision`; the UI's "Send an Update" dialog
sends it as a ``json/plain`` payload that the worker's pydantic data converter decodes.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from tern.identity.statement import short_digest
from tern.models.approval import ApprovalRecord, ApprovalRequest
from tern.models.control import LimitsCheck
from tern.models.logbook import LogbookDraft
from tern.models.plan import Plan

UPDATE_NAME = "decide"
SIGNAL_NAME = "decide_signal"
APPROVER_PLACEHOLDER = "YOUR-NAME"
"""Stands in the shown body for the approver's name; sent unchanged it is refused (not an approver)."""
MAX_CODE_LINES = 80
MAX_CODE_CHARS = 6000

_SPECIAL = re.compile(r"([\\`*_\[\]{}<>#|~!])")


def md_text(text: str) -> str:
    """``text`` as inline Markdown: special characters backslash-escaped, line breaks turned into spaces."""
    return _SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def md_code(text: str) -> str:
    """``text`` as an inline code span (the fence is longer than any backtick run inside)."""
    text = " ".join(str(text).split())
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _block(text: str, lang: str = "") -> str:
    longest = max((len(m) for m in re.findall(r"`{3,}", text)), default=2)
    fence = "`" * (longest + 1)
    return f"{fence}{lang}\n{text.rstrip()}\n{fence}"


def workflow_link(namespace: str, workflow_id: str) -> str:
    """Path of a workflow's page in the Web UI (relative to its base URL): ``/namespaces/NS/workflows/ID``."""
    return f"/namespaces/{quote(namespace, safe='')}/workflows/{quote(workflow_id, safe='')}"


def decision_body(
    request_id: str,
    *,
    approver: str = APPROVER_PLACEHOLDER,
    approved: bool = True,
    comment: str = "",
    indent: int | None = None,
) -> str:
    """The ``decide`` Update / ``decide_signal`` Signal body for ``request_id`` as JSON (one line unless
    ``indent`` is given). The fields are those of :class:`tern.models.Decision`, ``surface`` left out."""
    return json.dumps(
        {"request_id": request_id, "approver": approver, "approved": approved, "comment": comment}, indent=indent
    )


def _utc(when: datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(delta: timedelta) -> str:
    s = max(int(delta.total_seconds()), 0)
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60} min"


def exact_number(value: float) -> str:
    """``value`` exactly as written: the shortest text that reads back as the same float (``repr``), with a
    trailing ``.0`` dropped (``500.0`` -> ``500``, ``499.6544`` -> ``499.6544``, ``1e-07`` stays ``1e-07``).

    Every surface where an approver sees a value to be written uses this, never ``:g`` (six significant
    digits: ``499.6544`` would show as ``499.654`` while ``499.6544`` is written)."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def exact_change(value: float, current: float) -> str:
    """The signed difference ``value - current`` of the two numbers as shown by :func:`exact_number`, computed in
    decimal so it is exact for what the approver reads (``499.6544 - 499`` is ``+0.6544``, not the float
    subtraction's ``0.6544000000000096``)."""
    if not (math.isfinite(value) and math.isfinite(current)):
        return f"{value - current:+}"
    diff = Decimal(exact_number(value)) - Decimal(exact_number(current))
    return format(diff, "+f")


def _num(value: float | None, units: str) -> str:
    return "unknown" if value is None else f"{exact_number(value)}{' ' + units if units else ''}"


def _write_lines(w: LimitsCheck) -> list[str]:
    units = w.units
    change = (
        ""
        if w.current_value is None
        else f" (change {exact_change(w.value, w.current_value)}{' ' * bool(units)}{units})"
    )
    limits = [
        f"min {_num(w.min_value, units)}" if w.min_value is not None else "",
        f"max {_num(w.max_value, units)}" if w.max_value is not None else "",
        f"max step {_num(w.max_step, units)}" if w.max_step is not None else "",
    ]
    v = w.verification
    tol = (
        f" within {exact_number(v.tolerance_percent)} %"
        if v.tolerance_percent is not None
        else f" within {_num(v.tolerance_absolute, units)}"
        if v.tolerance_absolute is not None
        else ""
    )
    verification = {
        "none": "none (the write is not checked)",
        "callback": "put callback from the IOC",
        "readback": f"readback{tol}",
    }.get(v.level, md_text(v.level))
    return [
        f"- **Channel**: {md_code(w.channel)}",
        f"- **Current value**: {_num(w.current_value, units)}"
        + ("" if w.current_readback is None else f" (readback {_num(w.current_readback, units)})"),
        f"- **Target**: **{_num(w.value, units)}**{change}",
        f"- **Limits**: {', '.join(x for x in limits if x) or 'none listed'} (checked: "
        f"{'within limits' if w.allowed else md_text(w.message or 'refused')})",
        f"- **Verification**: {verification}",
        *_effect_lines(w),
    ]


def _effect_lines(w: LimitsCheck) -> list[str]:
    """The predicted effect on the ring (tern.ring), one short block, and the plan's as the whole when it has several
    magnet writes; nothing for a write without one."""
    e = w.predicted_effect
    lines: list[str] = []
    if e is not None and not e.predicted:
        lines = [f"- **Predicted effect**: none ({md_text(e.message)})"]
    elif e is not None:
        lines = ["- **Predicted effect** (model, not measurement):", "", _block(e.summary())]
    if w.plan_effect is not None:  # the plan's writes together, and each alone
        lines += ["- **Predicted effect of the plan as the whole** (model):", "", _block(w.plan_effect.summary())]
    return lines


def _code_lines(request: ApprovalRequest, workflow_id: str) -> list[str]:
    c = request.code
    assert c is not None
    lines = [
        f"- **Risk**: **{md_text(c.risk)}**",
        f"- **Analysis**: {md_text(c.analysis) or 'no findings'}",
        f"- **Objective**: {md_text(c.objective) or 'none given'}",
        f"- **Expected results**: {', '.join(md_code(k) for k in c.expected_keys) or 'none'}",
        f"- **Attempt**: {c.attempt}",
        "",
    ]
    code = c.code
    code_lines = code.splitlines()
    cut = len(code_lines) > MAX_CODE_LINES or len(code) > MAX_CODE_CHARS
    if cut:
        code = "\n".join(code_lines[:MAX_CODE_LINES])[:MAX_CODE_CHARS]
    lines.append(_block(code, "python"))
    if cut:
        lines.append(
            f"Code shortened here ({len(code_lines)} lines in all): `tern show {workflow_id}` prints all of it."
        )
    return lines


def _who_lines(request: ApprovalRequest, now: datetime | None) -> list[str]:
    approvers = ", ".join(f"**{md_text(a)}**" for a in request.approvers) or "nobody"
    need = request.min_approvals
    rule = md_text(request.policy_rule or "the run's approvers")
    version = f", policy version {md_code(request.policy_version)}" if request.policy_version else ""
    lines = [
        f"- **Approvers**: {approvers} ({rule}{version})",
        f"- **Approvals needed**: {need} different approver{'s' if need > 1 else ''}"
        + (f"; approved so far: {', '.join(md_text(a) for a in request.approved_by)}" if request.approved_by else ""),
    ]
    if not request.allow_self_approval:
        lines.append(
            f"- **Not {md_text(request.requested_by)}**: the requester may not approve their own "
            f"{request.kind} request (two-person rule); they may still reject it"
        )
    left = f" (in {_duration(request.expires_at - now)})" if now is not None else ""
    lines.append(f"- **Expires**: {_utc(request.expires_at)}{left}; a request that expires is rejected")
    return lines


def _step_params(step: Any) -> str:
    params = step.model_dump(mode="json", exclude={"id", "kind"}, exclude_none=True, exclude_defaults=True)
    return json.dumps(params)[:1000]


def plan_lines(plan: Plan) -> list[str]:
    """One line per step of ``plan``: id, kind and its parameters (JSON, at most 1,000 characters), for an
    approver to read."""
    return [f"{step.id} ({step.kind}): {_step_params(step)}" for step in plan.steps]


def pending_markdown(request: ApprovalRequest, *, workflow_id: str, now: datetime | None = None) -> str:
    """The current details of a run waiting for ``request``: what is asked, who may decide, until when, and
    the exact ``decide`` Update (name and JSON body with the request id filled in) to send from the Web UI.

    Args:
        request: the pending request (``write`` set for ``control_write``, ``code`` for ``python``).
        workflow_id: the workflow id the request belongs to (the page it is shown on; for the CLI hint).
        now: the current time (``workflow.now()``), to say how long is left; omitted, only the deadline is shown.

    Returns Markdown (no HTML), a few hundred to a few thousand characters; python code beyond
    ``MAX_CODE_LINES`` lines or ``MAX_CODE_CHARS`` characters is shortened with a pointer to ``tern show``.
    """
    if request.identity == "proven":
        return "\n".join(
            [
                f"## Waiting for approval: {request_title(request)}",
                "",
                *request_lines(request, workflow_id=workflow_id, now=now),
                "### How to decide",
                "",
                "This deployment needs **proven identity** (`approval.identity = proven`): a name typed into an "
                "Update here is only a declaration that anybody could make, so it is refused and audited. Decide "
                "with a signed decision from a shell (SSH key or `tern login`), after checking that it shows "
                f"digest {md_code(short_digest(request.digest))}:",
                "",
                _block(f"tern approve {workflow_id} --request {request.request_id} --key ~/.ssh/id_ed25519", "bash"),
                "",
                f"or {md_code(f'tern reject {workflow_id} --request {request.request_id} --comment WHY')}, or from a "
                "chat room whose bridge the policy lets vouch for you.",
            ]
        )
    lines = [
        f"## Waiting for approval: {request_title(request)}",
        "",
        *request_lines(request, workflow_id=workflow_id, now=now),
        "### How to decide here",
        "",
        f"**More Actions → Send an Update**, Update name {md_code(UPDATE_NAME)}, with this body. Put your own "
        f'name in place of {md_code(APPROVER_PLACEHOLDER)}; `"approved": false` rejects; say why in '
        "`comment`:",
        "",
        _block(decision_body(request.request_id, indent=2), "json"),
        "",
        "The reply is the audited decision, or the reason it was refused (nothing is decided then). "
        f"Without Updates: **Send a Signal** {md_code(SIGNAL_NAME)} with the same body (no reply: watch this page; "
        "a refused decision is audited and ignored). "
        f"From a shell: {md_code(f'tern approve {workflow_id} --as NAME')} or {md_code(f'tern reject {workflow_id}')}.",
    ]
    return "\n".join(lines)


def request_title(request: ApprovalRequest) -> str:
    """What is asked, in a few words of Markdown: ``write `CHANNEL` ``, ``run Python code``, or the kind."""
    return {
        "control_write": f"write {md_code(request.write.channel)}" if request.write else "a control write",
        "python": "run Python code",
        "plan": "the run's plan",
        "bluesky": "run a Bluesky plan",
        "memory": f"store a note in {md_text(request.requested_by)}'s memory",
        "logbook": f"publish a logbook entry to the {md_text(request.entry.target)} logbook"
        if request.entry
        else "publish a logbook entry",
    }.get(request.kind, md_text(request.kind))


def request_lines(request: ApprovalRequest, *, workflow_id: str, now: datetime | None = None) -> list[str]:
    """The request in full as Markdown lines, shared by the Web UI's details and the chat cards
    (:mod:`tern.chat.cards`): summary, requester, step and request id, reason, the write (current value,
    target, limits, verification), the code (risk, analysis, the code shortened past ``MAX_CODE_LINES``) or the
    plan's steps, and who may decide until when. Ends with an empty line."""
    lines = [
        f"**{md_text(request.summary)}**",
        "",
        f"Requested by **{md_text(request.requested_by)}** at {_utc(request.requested_at)} for step "
        f"{md_code(request.step_id)} ({request.kind}). Request id {md_code(request.request_id)}"
        + (f", digest {md_code(short_digest(request.digest))}." if request.digest else "."),
        "",
    ]
    if request.reason and not (request.code and request.code.objective == request.reason) and not request.entry:
        lines += [f"Reason: {md_text(request.reason)}", ""]
    if request.write is not None:
        lines += [*_write_lines(request.write), ""]
    if request.code is not None:
        lines += [*_code_lines(request, workflow_id), ""]
    if request.plan is not None:
        lines += ["### Plan", ""]
        for n, step in enumerate(request.plan.steps, start=1):
            lines.append(f"{n}. {md_code(step.id)} ({md_text(step.kind)}): {md_code(_step_params(step))}")
        lines.append("")
    if request.plan_effect is not None:
        lines += ["- **Predicted effect of the plan's writes** (model):", "", _block(request.plan_effect.summary()), ""]
    if request.entry is not None:
        lines += [*_entry_lines(request.entry), ""]
    lines += ["### Who may decide", "", *_who_lines(request, now), ""]
    return lines


def _entry_lines(entry: LogbookDraft) -> list[str]:
    """A drafted logbook entry as the approver reads it: title, author, tags, text (quoted), attachments."""
    tags = f" · tags {', '.join(md_code(t) for t in entry.tags)}" if entry.tags else ""
    lines = [
        "### Logbook entry",
        "",
        f"**{md_text(entry.title)}** by {md_text(entry.author)} to the {md_text(entry.target)} logbook{tags}",
        "",
        *[f"> {md_text(line)}" if line.strip() else ">" for line in entry.text[:MAX_CODE_CHARS].splitlines()],
    ]
    if len(entry.text) > MAX_CODE_CHARS:
        lines += ["", f"(the first {MAX_CODE_CHARS} of {len(entry.text)} characters; `tern show` has the whole entry)"]
    if entry.attachments:
        lines += ["", "Attachments:"]
        lines += [
            f"- {md_code(a.artifact_id)} {md_text(a.name)} ({md_text(a.media_type)}, {a.size_bytes} bytes)"
            for a in entry.attachments
        ]
    return lines


def decided_markdown(record: ApprovalRecord) -> str:
    """One line saying how an approval request ended: approved or rejected (by whom, how), expired, or refused
    by the approval policy."""
    head = f"Approval request {md_code(record.request_id)} ({record.kind}, step {md_code(record.step_id)}): "
    comment = f": {md_text(record.comment)}" if record.comment else ""
    if record.via == "timeout":
        return f"{head}**expired** at {_utc(record.decided_at)}{comment}"
    if record.via == "policy":
        return f"{head}**refused by the approval policy**{comment}"
    who = md_text(", ".join(record.approved_by) or record.approver or "unknown")
    return f"{head}**{record.decision}** by {who} (via {record.via}) at {_utc(record.decided_at)}{comment}"


def step_markdown(step_id: str, kind: str, *, number: int, total: int, child: tuple[str, str] | None = None) -> str:
    """The current details of a run that is not waiting: which step runs now.

    Args:
        step_id, kind: the step.
        number, total: its position (1-based) and the number of steps known so far.
        child: ``(namespace, workflow id)`` of the child workflow that runs the step (python steps), linked so
            an approver can open the page where its code request waits.
    """
    text = f"**Running** step {number} of {total}: {md_code(step_id)} ({md_text(kind)})"
    if child is not None:
        ns, wid = child
        text += (
            f"\n\nIt runs as the child workflow [{md_text(wid)}]({workflow_link(ns, wid)}): its code "
            "approval waits on that page."
        )
    return text


def finished_markdown(status: str, message: str = "", approvals: Sequence[ApprovalRecord] = ()) -> str:
    """The current details of a run (or python step) that has finished with ``status``: the message, then one
    line per approval request and how it ended (:func:`decided_markdown`)."""
    head = f"**Finished: {md_text(status)}**" + (f". {md_text(message)}" if message else "")
    return "\n\n".join([head, *(f"- {decided_markdown(a)}" for a in approvals)])
