"""Archived history: what an ``archiver_read`` step returns (summaries and an artifact reference, never the
samples, so that workflow history stays small)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from tern.models.ids import WorkflowId


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


class ArchiverReadInput(BaseModel):
    """Input of the ``read_archiver`` activity: one ``archiver_read`` step, with the workflow's ``now`` as the
    reference for relative ranges (so a retried activity reads the same range)."""

    workflow_id: WorkflowId
    step_id: str
    channels: list[str] = Field(min_length=1)
    range: str | None = None
    start: str | None = None
    end: str | None = None
    binning: str = "auto"
    now: datetime


class ArchiverReadOutput(BaseModel):
    """What an ``archiver_read`` step returns: the resolved range, the binning used, one summary per channel and
    the reference of the artifact that holds the samples (gzip Appliance JSON; none when no channel had data)."""

    start: datetime
    end: datetime
    binning: str | None = Field(None, description="Operator applied to every channel, e.g. 'mean_600'; None = raw.")
    series: list[SeriesSummary] = Field(default_factory=list)
    artifact_id: str | None = None
    artifact_bytes: int = 0
    samples: int = Field(0, description="Samples stored in the artifact, all channels.")

    @property
    def failed(self) -> list[SeriesSummary]:
        """Channels without data (``error`` set)."""
        return [s for s in self.series if s.error]
