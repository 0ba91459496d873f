"""Parsing what a person types (or reacts) in reply to an approval card.

Grammar (case-insensitive verb, the rest is free text)::

    approve [comment]        approve the request on the card
    reject <reason>          reject it; the reason is required (the audit says why); also ``rejected``, ``no``
    run <plan name>          start a run of a bundled plan (``tern/plans/<name>.json``), addressed to the bot
    freeze <reason>          freeze every control write of the facility (``tern freeze``), addressed to the bot
    thaw <reason>            thaw it (``tern thaw``; the approval policy's ``freeze_thaw`` says who may)

Only the exact word ``approve`` approves (``yes``, ``ok``, ``approved``, ``lgtm`` do not), and only without a
condition: a comment holding a conditional or qualifying word (``but``, ``only``, ``after``, ``if``, ``unless``,
``once``, ``when``, ``until``, ``not``...; :data:`QUALIFIERS`) or a question mark is not an approval, since
"approve, but only after the beam dump" asks for something the gate cannot hold the write to. Such a reply is
refused (:class:`ConditionalApproval`), answered with what to type, and audited like any refused attempt.
Fail closed: a harmless comment that happens to use such a word is refused too; ``approve`` alone always works.

Reactions: ✅ (U+2705) approves, ❌ (U+274C) rejects; bridges accept them only for low-risk requests
(:func:`reaction_allowed`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from tern.models import ApprovalRequest
from tern.models.limits import MAX_COMMENT_CHARS

APPROVE_REACTIONS = frozenset({"\u2705", "\u2714\ufe0f", "\u2714"})
REJECT_REACTIONS = frozenset({"\u274c", "\u2716\ufe0f", "\u2716"})
_PLAN_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")

QUALIFIERS = frozenset(
    """but only after before if unless once when whenever until till til provided providing assuming assume
    except pending wait waiting later not no never dont don't cannot can't shouldn't won't hold tomorrow tonight
    first then condition conditional conditionally maybe perhaps should might probably unsure""".split()
)
"""Words that make an ``approve`` reply conditional or qualified (compared in lower case, ASCII apostrophes)."""
NOT_APPROVE_WORDS = frozenset(
    "approve approved yes y ok okay lgtm sure fine go accept accepted granted confirm confirmed".split()
)
"""First words that look like consent but are not the command (``approve?`` included): answered, never taken."""
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


class CommandError(ValueError):
    """The text is not a command the bridge understands; the message tells the person what to type."""


class ConditionalApproval(CommandError):
    """An ``approve`` with a condition or a question in it: not an approval (the message says what to type)."""


@dataclass(frozen=True)
class Command:
    """A parsed command: ``verb`` and its free text (comment, reason or plan name)."""

    verb: Literal["approve", "reject", "run", "freeze", "thaw"]
    text: str = ""

    @property
    def approved(self) -> bool:
        """True for ``approve``."""
        return self.verb == "approve"


USAGE = "reply to the card with `approve [comment]` or `reject <reason>`"


def parse_command(text: str) -> Command:
    """Parse one message body (the quoted fallback of a rich reply, lines starting with ``>``, is dropped).

    Raises :class:`CommandError` for anything else, for ``reject``, ``freeze`` or ``thaw`` without a reason, for a
    comment longer than ``MAX_COMMENT_CHARS`` and for a plan name that is not ``[a-z0-9_-]``.
    """
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith(">")]
    body = " ".join(" ".join(lines).split())
    verb, _, rest = body.partition(" ")
    verb = verb.lower().rstrip(":,.!")
    rest = rest.strip()
    if len(rest) > MAX_COMMENT_CHARS:
        raise CommandError(f"comment too long ({len(rest)} characters, at most {MAX_COMMENT_CHARS})")
    if verb == "approve":
        _refuse_conditions(body, rest)
        return Command("approve", rest)
    if verb in ("reject", "rejected", "no"):
        if not rest:
            raise CommandError("a rejection needs a reason: `reject <reason>`")
        return Command("reject", rest)
    if verb == "run":
        if not _PLAN_NAME.match(rest):
            raise CommandError("`run <plan name>` needs the name of a bundled plan, e.g. `run demo`")
        return Command("run", rest)
    if verb in ("freeze", "thaw"):
        if not rest:
            raise CommandError(f"`{verb}` needs a reason (it is audited): `{verb} <reason>`")
        return Command("freeze" if verb == "freeze" else "thaw", rest)
    if verb.rstrip("?") in NOT_APPROVE_WORDS:
        raise ConditionalApproval(
            f"{body[:80]!r} is not an approval: only the exact word `approve` approves; nothing is decided. "
            "Reply `approve [comment]` or `reject <reason>`"
        )
    raise CommandError(f"not a command: {body[:60]!r}; {USAGE}")


def _refuse_conditions(body: str, comment: str) -> None:
    """Raise :class:`ConditionalApproval` when an approval's ``comment`` carries a condition: a word of
    :data:`QUALIFIERS` or a question mark."""
    lowered = comment.lower().replace("\u2019", "'")
    found = "?" if "?" in lowered else next((w for w in _WORD.findall(lowered) if w in QUALIFIERS), None)
    if found is None:
        return
    raise ConditionalApproval(
        f"{body[:80]!r} is not an unconditional approval ({found!r} sets a condition or asks a question); nothing "
        "is decided. The approval takes effect at once, so approve only when the write may happen now: reply "
        "exactly `approve` (a comment must not set a condition), or `reject <reason>`"
    )


def parse_reaction(key: str) -> Command | None:
    """The command a reaction stands for (✅ approve, ❌ reject with reason "rejected by reaction"), else None."""
    key = key.strip()
    if key in APPROVE_REACTIONS:
        return Command("approve", "approved by reaction")
    if key in REJECT_REACTIONS:
        return Command("reject", "rejected by reaction")
    return None


def reaction_allowed(request: ApprovalRequest) -> bool:
    """Whether a reaction may decide ``request``: only python code the policy analysis rates low risk. A
    control write (or anything else) needs a reply, so that the decision is a deliberate sentence."""
    return request.kind == "python" and request.code is not None and request.code.risk == "low"
