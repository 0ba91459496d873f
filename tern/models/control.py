"""Channel readings, limits verdicts and write records (values in the channel's engineering units)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from tern.models.ring import PlanEffect, PredictedEffect

VerificationLevel = Literal["none", "callback", "readback"]
Violation = Literal[
    "writes_disabled",
    "invalid_limits_database",
    "unlisted_channel",
    "read_only_channel",
    "above_max",
    "below_min",
    "step_too_large",
    "step_check_failed",
    "channel_unreachable",
    "unverifiable_change",
    "no_closed_orbit",
    "effect_limit",
    "effect_unpredictable",
]


class ChannelReading(BaseModel):
    """One Channel Access read: value with its timestamp (UTC) and metadata from the IOC."""

    channel: str
    value: float | int | str | list[float] | None
    units: str = ""
    timestamp: datetime | None = None
    severity: int | None = Field(None, description="EPICS alarm severity: 0 none, 1 minor, 2 major, 3 invalid")
    status: int | None = None
    lower_ctrl_limit: float | None = None
    upper_ctrl_limit: float | None = None
    precision: int | None = None
    connected: bool = True
    error: str | None = None
    structured: Literal["image", "table", "waveform"] | None = Field(
        None, description="A PVAccess NTNDArray, NTTable or long waveform: value is a summary, data in the artifact"
    )
    artifact_id: str | None = Field(None, description="The artifact holding a structured value's data (.npz)")


class Verification(BaseModel):
    """How a write is verified (limits database ``verification`` object)."""

    level: VerificationLevel = "callback"
    tolerance_percent: float | None = Field(None, ge=0)
    tolerance_absolute: float | None = Field(None, ge=0)


class LimitsCheck(BaseModel):
    """The outcome of checking one proposed write against the limits database and the live value."""

    channel: str
    value: float
    allowed: bool
    violation: Violation | None = None
    message: str = ""
    current_value: float | None = None
    current_readback: float | None = Field(
        None,
        description="The readback's value read with current_value, when the limits entry makes it count (max_step "
        "or readback verification; see tern.control.limits.LimitsDatabase.check).",
    )
    units: str = ""
    min_value: float | None = None
    max_value: float | None = None
    max_step: float | None = None
    verification: Verification = Field(default_factory=Verification)
    predicted_effect: PredictedEffect | None = Field(
        None, description="For a magnet of the ring model: the write's predicted effect (tern.ring), with its model."
    )
    plan_effect: PlanEffect | None = Field(
        None, description="When the plan has several magnet writes: their effect as the whole, and each alone."
    )


class WriteRecord(BaseModel):
    """A control write as executed: previous value, target, readback and whether it was verified."""

    channel: str
    previous_value: float | None
    value: float
    readback: float | None = None
    verified: bool
    verification: VerificationLevel
    message: str = ""
    written_at: datetime | None = None
    idempotency_key: str = ""
    tolerance: float | None = Field(None, description="Allowed |reading - target| the write was verified with.")
    setpoint_timestamp: datetime | None = Field(
        None, description="The setpoint's Channel Access timestamp after the put (IOC clock, UTC)."
    )
    readback_timestamp: datetime | None = Field(
        None, description="The Channel Access timestamp of the reading that verified it (IOC clock, UTC)."
    )
