"""Archived history: what an ``archiver_read`` step returns (summaries and an artifact reference, never the
samples, so that workflow history stays small)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class SeriesSummary(BaseModel):
    """Summary of one channel's archived series over the requested range."""

    channel: str
    count: int = Field(description="Samples (or bins) returned.")
    first: datetime | None = Field(None, description="Time of the first sample (UTC).")
    last: datetime | None = Field(None, description="Time of the last sample (UTC).")
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    last_value: float | None = None
    max_severity: int = Field(0, description="Worst EPICS alarm severity seen (0 NO_ALARM .. 3 INVALID).")
    binning: str | None = Field(None, description="Server-side operator applied, e.g. 'mean_600'; None = raw.")
    units: str = ""
    error: str | None = Field(None, description="Why this channel has no data (unknown channel, empty range).")
