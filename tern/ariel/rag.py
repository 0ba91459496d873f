"""Retrieval-augmented answers: a bounded context of retrieved logbook entries, a prompt asking for
``[#entry_id]`` citations, and a check of every citation against the context."""

from __future__ import annotations

import re
from collections.abc import Sequence

from tern.ariel.models import LogbookEntry
from tern.llm import ChatMessage

CITATION = re.compile(r"\[#([^\]\s]+)\]")

SYSTEM_PROMPT = (
    "You answer questions from accelerator operators using only the logbook entries given. "
    "Cite every statement with the entry it comes from as [#ENTRY_ID], using the ids exactly as given. "
    "If the entries do not answer the question, say so. Be brief and factual."
)


def build_context(
    entries: Sequence[LogbookEntry], total_chars: int = 12_000, entry_chars: int = 2_000
) -> tuple[str, list[str]]:
    """Entries as ``[#id] title (time, author)`` blocks, at most ``entry_chars`` each and ``total_chars`` in
    all (characters); stops before the block that would overflow. Returns ``(context, ids included)``."""
    blocks: list[str] = []
    ids: list[str] = []
    used = 0
    for e in entries:
        head = f"[#{e.entry_id}] {e.title} ({e.timestamp:%Y-%m-%d %H:%M} UTC, {e.author or 'unknown'})\n"
        block = (head + e.raw_text)[:entry_chars]
        if used + len(block) + 2 > total_chars:
            break
        blocks.append(block)
        ids.append(e.entry_id)
        used += len(block) + 2
    return "\n\n".join(blocks), ids


def messages(question: str, context: str) -> list[ChatMessage]:
    return [
        ChatMessage(role="system", content=SYSTEM_PROMPT),
        ChatMessage(role="user", content=f"Logbook entries:\n\n{context}\n\nQuestion: {question}"),
    ]


def check_citations(answer: str, context_ids: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(valid, invalid)`` citation ids of ``answer``, each once, in order of appearance; valid ids are those
    present in the context given to the LLM."""
    allowed = set(context_ids)
    valid: list[str] = []
    invalid: list[str] = []
    for cid in CITATION.findall(answer):
        target = valid if cid in allowed else invalid
        if cid not in target:
            target.append(cid)
    return valid, invalid
