"""The approval card a bridge posts for a request, and the line it adds when the request ends.

Markdown built from :func:`tern.approval.render.request_lines` (the same text the Web UI shows), with the chat
way to decide instead of the Web UI's; :func:`card_html` renders it for clients that show HTML (Matrix
``formatted_body``, spec "m.room.message msgtypes": ``format: org.matrix.custom.html``).
"""

from __future__ import annotations

from datetime import datetime

from markdown_it import MarkdownIt

from tern.approval.render import md_code, md_text, request_lines, request_title
from tern.chat.commands import reaction_allowed
from tern.models import ApprovalRequest

_MD = MarkdownIt("commonmark", {"html": False})


def card_markdown(request: ApprovalRequest, *, workflow_id: str, outcome: str = "", now: datetime | None = None) -> str:
    """The card for ``request`` of workflow ``run_id``: the request in full, how to decide from chat, and
    ``outcome`` (Markdown, from :func:`outcome_markdown`) at the top once the request has ended.

    Returns Markdown of a few hundred to a few thousand characters (code shortened as in the Web UI)."""
    how = "Reply to this message with `approve [comment]` or `reject <reason>`."
    if reaction_allowed(request):
        how += " Low-risk code: a ✅ or ❌ reaction also decides."
    lines = [
        *([outcome, ""] if outcome else []),
        f"## Approval needed: {request_title(request)}",
        "",
        f"Run {md_code(workflow_id)}.",
        "",
        *request_lines(request, workflow_id=workflow_id, now=now),
    ]
    if not outcome:
        lines += [f"**How to decide**: {how}"]
    return "\n".join(lines)


def card_html(markdown: str) -> str:
    """``markdown`` as HTML (CommonMark, raw HTML in the text escaped, not passed through)."""
    return _MD.render(markdown)


def outcome_markdown(
    decision: str,
    *,
    by: str | None = None,
    comment: str = "",
    readback: str = "",
) -> str:
    """The line at the top of an ended card: ``decision`` is ``approved``, ``rejected``, ``timed_out`` or
    ``cancelled``; ``by`` who decided, ``comment`` why, ``readback`` the write's verified readback text."""
    word = {
        "approved": "✅ Approved",
        "rejected": "❌ Rejected",
        "timed_out": "⌛ Expired",
        "cancelled": "🚫 Cancelled",
    }
    text = f"**{word.get(decision, md_text(decision))}**"
    if by:
        text += f" by **{md_text(by)}**"
    if comment:
        text += f": {md_text(comment)}"
    if readback:
        text += f"\n\n{readback}"
    return text
