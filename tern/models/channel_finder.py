"""Channel-finder results as they travel through workflow history: names, scores and descriptions (small).

A ``channel_find`` step's result is ``StepResult.channels``: a ranked list of :class:`ChannelHit`. A later step
that needs "the channels step X found" takes ``[h.name for h in result.channels]``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

ChannelFindMode = Literal["keyword", "semantic", "hybrid"]
CHANNEL_FIND_MODES: tuple[ChannelFindMode, ...] = ("keyword", "semantic", "hybrid")
HIERARCHY_LEVELS = ("area", "system", "family", "device", "field", "signal")
"""Levels of the channel hierarchy, top first (the bundled names ``AREA:SYSTEM:FAMILY:DEVICE:FIELD:SIGNAL``)."""


class ChannelHit(BaseModel):
    """One ranked channel. ``score`` is mode-specific, higher is better: the weighted term-match score for
    keyword (pg_trgm similarity for the typo fallback), cosine similarity for semantic, the RRF sum for hybrid."""

    name: str
    score: float = 0.0
    description: str = ""
    units: str = ""
    writable: bool = False


class ChannelFindResponse(BaseModel):
    """The answer of one channel search: ``mode`` asked, ``mode_used`` what ran, ``notice`` why they differ."""

    query: str
    mode: ChannelFindMode
    mode_used: ChannelFindMode
    hits: list[ChannelHit] = Field(default_factory=list)
    notice: str = ""


class HierarchyNode(BaseModel):
    """One child in hierarchical navigation: ``path`` (``SR:RF:CAVITY``), its last ``segment``, the ``level``
    it sits at (one of ``HIERARCHY_LEVELS``, or ``levelN`` beyond them), how many channels lie under it, and a
    description of the segment (from the naming tables; for a leaf, the channel's own description)."""

    path: str
    segment: str
    level: str
    channels: int
    description: str = ""
    leaf: bool = False
