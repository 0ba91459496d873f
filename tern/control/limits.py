"""The limits database: which channels may be written, within which bounds, verified how.

Format (Osprey's ``channel_limits.json``): an object with optional ``defaults`` and one object per channel with
``min_value``, ``max_value``, ``max_step`` (largest allowed change from the current value: from the setpoint's
value *and* from its readback's, what the machine actually holds; see :meth:`LimitsDatabase.check`), ``writable`` and
``verification: {level: none|callback|readback, tolerance_percent | tolerance_absolute}``, and for a magnet of the
ring model the effect limits ``max_orbit_change_mm``, ``max_tune_shift``, ``forbid_resonance_order`` (checked on the
predicted effect, :mod:`tern.ring.effect`). Keys starting with
``_`` are comments. Channels inherit ``defaults`` field by field.

Fail closed: a database that does not load or validate blocks every write (:class:`LimitsDatabaseError`), and
any doubt in :meth:`LimitsDatabase.check` refuses the write.

Field names: a Channel Access name may end in ``.FIELD`` (EPICS Application Developer's Guide, "Database
Definition": record names hold no ``.``, so the first ``.`` starts the field; a bare record name means its
``VAL`` field). A name that is a listed record plus a field is that record's business, whatever
``allow_unlisted`` says: ``X:SP.VAL`` is checked as ``X:SP`` (same value, same limits); any other field
(``.DRVH``/``.DRVL`` drive limits, ``.HOPR``, ``.DISA``, ``.PROC``, ``.SCAN``...) changes how the record
behaves rather than its value and is refused.

Protocols: an entry may say ``"protocol": "pva"`` (default ``"ca"``): a bare name of that channel is then reached over
PVAccess. Lookups take addresses as well as names: ``pva://X:SP`` and ``ca://X:SP`` are checked as ``X:SP`` (one set
of rules per device, whichever protocol reaches it; :mod:`tern.control.addressing`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tern.control.addressing import ChannelAddressError, Protocol, parse_address
from tern.models import LimitsCheck, Verification
from tern.models.ring import EffectLimits


class LimitsDatabaseError(ValueError):
    """The limits database is missing or invalid; every write is refused while this is so."""


class ChannelLimits(BaseModel):
    """Write rules for one channel (values in the channel's engineering units)."""

    model_config = ConfigDict(extra="ignore")
    writable: bool = False
    min_value: float | None = None
    max_value: float | None = None
    max_step: float | None = Field(None, gt=0)
    verification: Verification = Field(default_factory=Verification)
    units: str = ""
    protocol: Protocol = "ca"
    max_orbit_change_mm: float | None = Field(None, gt=0)
    max_tune_shift: float | None = Field(None, gt=0)
    forbid_resonance_order: int | None = Field(None, ge=1)

    def effect_limits(self) -> EffectLimits:
        """This channel's limits on a write's predicted effect on the ring (all None: none set)."""
        return EffectLimits(
            max_orbit_change_mm=self.max_orbit_change_mm,
            max_tune_shift=self.max_tune_shift,
            forbid_resonance_order=self.forbid_resonance_order,
        )

    @model_validator(mode="after")
    def _bounds(self) -> ChannelLimits:
        for name in ("min_value", "max_value", "max_step"):
            v = getattr(self, name)
            if v is not None and not math.isfinite(v):
                raise ValueError(f"{name} must be finite")
        if self.min_value is not None and self.max_value is not None and self.min_value > self.max_value:
            raise ValueError(f"min_value {self.min_value} > max_value {self.max_value}")
        return self


VALUE_FIELD = "VAL"
"""The field a bare record name reads and writes."""


def split_field(channel: str) -> tuple[str, str | None]:
    """``"X:SP.DRVH"`` -> ``("X:SP", "DRVH")``; ``"X:SP"`` -> ``("X:SP", None)``. The first ``.`` starts the
    field (EPICS record names hold no ``.``)."""
    record, dot, field = channel.partition(".")
    return (record, field) if dot else (channel, None)


def _bare(channel: str) -> str:
    """The limits key of a name or address (``pva://X:SP`` -> ``X:SP``); an unparseable address stays as it is
    (it matches no entry, so it is unlisted and refused)."""
    if "://" not in channel:
        return channel
    try:
        return parse_address(channel).name
    except ChannelAddressError:
        return channel


def _strip_comments(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip_comments(v) for k, v in obj.items() if not str(k).startswith("_")}
    return obj


class LimitsDatabase:
    """A validated limits database. Build with :meth:`load` or :meth:`from_mapping`."""

    def __init__(self, channels: dict[str, ChannelLimits], *, allow_unlisted: bool = False, source: str = ""):
        self.channels = channels
        self.allow_unlisted = allow_unlisted
        self.source = source

    @classmethod
    def from_mapping(cls, raw: Any, *, allow_unlisted: bool = False, source: str = "<mapping>") -> LimitsDatabase:
        """Validate a parsed JSON document. Raises :class:`LimitsDatabaseError` naming the bad channel."""
        if not isinstance(raw, dict):
            raise LimitsDatabaseError(f"{source}: top level must be an object")
        raw = _strip_comments(raw)
        defaults = raw.pop("defaults", {}) or {}
        if not isinstance(defaults, dict):
            raise LimitsDatabaseError(f"{source}: 'defaults' must be an object")
        channels: dict[str, ChannelLimits] = {}
        for name, spec in raw.items():
            if not isinstance(spec, dict):
                raise LimitsDatabaseError(f"{source}: channel {name!r} must map to an object")
            merged = {**defaults, **spec}
            if isinstance(defaults.get("verification"), dict) and isinstance(spec.get("verification"), dict):
                merged["verification"] = {**defaults["verification"], **spec["verification"]}
            try:
                channels[name] = ChannelLimits.model_validate(merged)
            except ValidationError as exc:
                err = exc.errors()[0]
                loc = ".".join(str(p) for p in err["loc"])
                raise LimitsDatabaseError(f"{source}: channel {name!r}: {loc}: {err['msg']}") from exc
        return cls(channels, allow_unlisted=allow_unlisted, source=source)

    @classmethod
    def load(cls, path: Path, *, allow_unlisted: bool = False) -> LimitsDatabase:
        """Read and validate ``path``. Raises :class:`LimitsDatabaseError` when missing or invalid."""
        try:
            raw = json.loads(Path(path).read_text())
        except FileNotFoundError as exc:
            raise LimitsDatabaseError(f"limits database not found: {path}") from exc
        except (OSError, json.JSONDecodeError) as exc:
            raise LimitsDatabaseError(f"limits database {path} is unreadable: {exc}") from exc
        return cls.from_mapping(raw, allow_unlisted=allow_unlisted, source=str(path))

    def __contains__(self, channel: str) -> bool:
        return _bare(channel) in self.channels

    def get(self, channel: str) -> ChannelLimits | None:
        """The entry listed for ``channel`` (a name or address; no field rule), or None."""
        return self.channels.get(_bare(channel))

    def protocol(self, channel: str) -> Protocol:
        """The protocol that reaches ``channel``: its scheme when it has one, else its entry's ``protocol`` (of its
        record for ``RECORD.FIELD``), else ``ca``. Raises :class:`~tern.control.addressing.ChannelAddressError`
        for an address with an unknown scheme."""
        if "://" in channel:
            return parse_address(channel).protocol
        limits = self.channels.get(channel) or self.channels.get(split_field(channel)[0])
        return limits.protocol if limits is not None else "ca"

    def writable_channels(self) -> list[str]:
        return sorted(n for n, c in self.channels.items() if c.writable)

    def entry(self, channel: str) -> tuple[ChannelLimits | None, str | None]:
        """The limits entry that governs ``channel``, and a refusal when the name is a field of a listed record.

        Returns ``(entry, None)`` for a listed channel, and for ``RECORD.VAL`` of a listed ``RECORD`` (the
        record's entry); ``(None, reason)`` for any other field of a listed record (drive limits, DISA, PROC:
        refused whatever ``allow_unlisted`` says); ``(None, None)`` for an unlisted name."""
        channel = _bare(channel)
        limits = self.channels.get(channel)
        if limits is not None:
            return limits, None
        record, field = split_field(channel)
        if field is None or record not in self.channels:
            return None, None
        if field == VALUE_FIELD:
            return self.channels[record], None
        return None, (
            f"{channel} is field {field!r} of the listed record {record}: writes to a record's fields other than "
            f"{VALUE_FIELD} (drive limits DRVH/DRVL, DISA, PROC, SCAN, ...) change how the record behaves, not its "
            f"value, and are refused; write {record} for its value"
        )

    def reads_readback(self, channel: str) -> bool:
        """Whether a write to ``channel`` must also read its readback before it is checked: the entry has a
        ``max_step`` (a step is measured from what the machine holds, not only from a setpoint that may be stale)
        or is verified at level ``readback`` (the small-change rule of :mod:`tern.control.verification` is measured
        from the readback the verification will read). ``RECORD.VAL`` counts as ``RECORD`` (:meth:`entry`)."""
        limits, _ = self.entry(channel)
        return limits is not None and (limits.max_step is not None or limits.verification.level == "readback")

    def check(self, channel: str, value: float, current: float | None, readback: float | None = None) -> LimitsCheck:
        """Decide whether writing ``value`` to ``channel`` is allowed, given the live ``current`` value.

        Args:
            channel: the setpoint's name; ``value``, ``current`` and ``readback`` in its engineering units.
            current: the setpoint's value read just before, or None when unknown.
            readback: its readback's value read with it (``X:SP`` -> ``X:RB``), or None when the channel has no
                separate readback. A setpoint can be stale (the device did not follow, a ramp is under way, another
                client drives the device): the step is then measured from both values and must be within
                ``max_step`` of each.

        Order of checks: listed, writable, finite, min, max, step. ``current`` may be None only when the channel
        has no ``max_step``; otherwise the step cannot be checked and the write is refused
        (``step_check_failed``); so is a readback that was read but is not a finite number. ``RECORD.VAL`` of a
        listed record is checked as ``RECORD``; any other field of a listed record is refused
        (``read_only_channel``) whatever ``allow_unlisted`` says (:meth:`entry`).
        """
        limits, field_refusal = self.entry(channel)
        base: dict[str, Any] = {
            "channel": channel,
            "value": value,
            "current_value": current,
            "current_readback": readback,
        }
        if field_refusal is not None:
            return LimitsCheck(**base, allowed=False, violation="read_only_channel", message=field_refusal)
        if limits is None:
            if not self.allow_unlisted:
                return LimitsCheck(
                    **base,
                    allowed=False,
                    violation="unlisted_channel",
                    message=f"{channel} is not in the limits database; writes to unlisted channels are refused",
                )
            limits = ChannelLimits(writable=True)
        base.update(
            min_value=limits.min_value,
            max_value=limits.max_value,
            max_step=limits.max_step,
            verification=limits.verification,
            units=limits.units,
        )
        if not limits.writable:
            return LimitsCheck(
                **base,
                allowed=False,
                violation="read_only_channel",
                message=f"{channel} is read-only in the limits database",
            )
        if not math.isfinite(value):
            return LimitsCheck(
                **base, allowed=False, violation="step_check_failed", message=f"value {value!r} is not a finite number"
            )
        if limits.max_value is not None and value > limits.max_value:
            return LimitsCheck(
                **base,
                allowed=False,
                violation="above_max",
                message=f"{value} is above the maximum {limits.max_value} for {channel}",
            )
        if limits.min_value is not None and value < limits.min_value:
            return LimitsCheck(
                **base,
                allowed=False,
                violation="below_min",
                message=f"{value} is below the minimum {limits.min_value} for {channel}",
            )
        if limits.max_step is not None:
            if current is None or not math.isfinite(current):
                return LimitsCheck(
                    **base,
                    allowed=False,
                    violation="step_check_failed",
                    message=f"cannot read the current value of {channel} to check max_step",
                )
            if readback is not None and not math.isfinite(readback):
                return LimitsCheck(
                    **base,
                    allowed=False,
                    violation="step_check_failed",
                    message=f"the readback of {channel} is not a finite number ({readback!r}); cannot check max_step",
                )
            origins = [("", current)] + ([("the readback ", readback)] if readback is not None else [])
            for label, origin in origins:
                if abs(value - origin) > limits.max_step:
                    return LimitsCheck(
                        **base,
                        allowed=False,
                        violation="step_too_large",
                        message=f"change {abs(value - origin):g} from {label}{origin:g} exceeds max_step "
                        f"{limits.max_step:g}",
                    )
        return LimitsCheck(**base, allowed=True, message="within limits")
