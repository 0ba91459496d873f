"""What an approver sees of a magnet write's consequences: the predicted effect on the ring and the model it came from
(computed by :mod:`tern.ring.effect`), the effect limits, and measured against predicted after the write."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer


class ModelChange(BaseModel):
    """One element the plan changes: which, which attribute, its value before and after (K m^-2 or kick rad)."""

    channel: str
    element: str = Field(description="FamName of the lattice element.")
    index: int = Field(description="Index of the element in the lattice (0-based, pyAT order).")
    attribute: str = Field(description="K (quadrupole, m^-2) or KickAngle.x / KickAngle.y (corrector, rad).")
    before: float
    after: float
    current_before: float = Field(description="Setpoint before, A.")
    current_after: float = Field(description="Setpoint after, A.")


class ModelReference(BaseModel):
    """The model a prediction was computed with: lattice file, its digest, the element changes."""

    lattice_file: str
    digest: str = Field(description="sha256:<hex> of the lattice file's bytes.")
    mapping_file: str = ""
    changes: list[ModelChange] = Field(default_factory=list)


class Resonance(BaseModel):
    """A resonance line m*Qx + n*Qy = p; ``order`` = |m| + |n|."""

    m: int
    n: int
    p: int
    order: int


class PredictedEffect(BaseModel):
    """The model's prediction of a plan's writes taken together (tern.ring.effect.predict_effect).

    Orbit quantities are changes of the closed orbit at the lattice's monitors in mm; tunes fractional.
    ``predicted`` is False when no written channel is in the ring mapping (``message`` says so);
    ``closed_orbit_exists`` False means the plan leaves no stable closed orbit: such a write is refused.
    """

    predicted: bool
    message: str = ""
    unmapped: list[str] = Field(default_factory=list, description="Written channels not in the mapping.")
    closed_orbit_exists: bool = True
    tune_before: tuple[float, float] | None = None
    tune_after: tuple[float, float] | None = None
    dq_x: float | None = None
    dq_y: float | None = None
    orbit_rms_mm: tuple[float, float] | None = Field(None, description="rms orbit change over all monitors, x/y.")
    orbit_max_mm: tuple[float, float] | None = Field(None, description="Largest |orbit change| at a monitor, x/y.")
    orbit_max_at: tuple[int, int] | None = Field(None, description="Monitor (lattice index) of orbit_max_mm, x/y.")
    at_bpms: dict[str, float] = Field(
        default_factory=dict, description="Orbit change at the named BPM channels (each one plane), mm."
    )
    beta_beat_rms_pct: tuple[float, float] | None = None
    resonance_order: int = 0
    resonances_crossed: list[Resonance] = Field(default_factory=list)
    model: ModelReference | None = None
    compute_ms: float = 0.0
    orbit_change_mm: list[tuple[float, float]] | None = Field(
        None,
        description="Orbit change (x, y) in mm at every monitor of the lattice, in lattice order (BPM index = "
        "position + 1): what the chat card's plot shows. Set for a write's own effect and a plan's combined one.",
    )

    @model_serializer(mode="wrap")
    def _drop_absent_profile(self, handler: SerializerFunctionWrapHandler) -> Any:
        """Leave ``orbit_change_mm`` out when it is None: an effect without it serializes (and digests: the
        request digest binds this dump) exactly as before the field existed."""
        data = handler(self)
        if isinstance(data, dict) and data.get("orbit_change_mm", 0) is None:
            del data["orbit_change_mm"]
        return data

    def summary(self) -> str:
        """One short block for the CLI, Web UI, chat cards and MCP tools."""
        if not self.predicted:
            return f"predicted effect: none ({self.message})"
        if not self.closed_orbit_exists:
            return f"predicted effect: NO CLOSED ORBIT ({self.message})"
        assert self.orbit_rms_mm and self.orbit_max_mm and self.beta_beat_rms_pct
        lines = [
            f"predicted effect (model {self.model.lattice_file if self.model else '?'}):",
            f"  tune shift dQx {self.dq_x:+.5f}  dQy {self.dq_y:+.5f}",
            f"  orbit change rms x {self.orbit_rms_mm[0]:.3f} mm  y {self.orbit_rms_mm[1]:.3f} mm;"
            f" max x {self.orbit_max_mm[0]:.3f} mm  y {self.orbit_max_mm[1]:.3f} mm",
            f"  beta-beat rms x {self.beta_beat_rms_pct[0]:.2f} %  y {self.beta_beat_rms_pct[1]:.2f} %",
        ]
        if self.at_bpms:
            lines.append("  at " + ", ".join(f"{ch} {v:+.3f} mm" for ch, v in self.at_bpms.items()))
        crossed = ", ".join(f"{r.m}Qx{r.n:+d}Qy={r.p}" for r in self.resonances_crossed)
        lines.append(f"  resonances crossed (order <= {self.resonance_order}): {crossed or 'none'}")
        if self.unmapped:
            lines.append(f"  no prediction for {', '.join(self.unmapped)} (not in the ring mapping)")
        return "\n".join(lines)


class EffectLimits(BaseModel):
    """Limits on a write's predicted effect (limits database entry or approval policy); None = no limit."""

    max_orbit_change_mm: float | None = Field(None, gt=0, description="Largest |orbit change| at any BPM, mm.")
    max_tune_shift: float | None = Field(None, gt=0, description="Largest |dQx| or |dQy|.")
    forbid_resonance_order: int | None = Field(
        None, ge=1, description="Refuse crossing a resonance line of this order or lower."
    )

    def merged(self, other: EffectLimits | None) -> EffectLimits:
        """The stricter of the two, limit by limit."""
        if other is None:
            return self

        def low(a: float | None, b: float | None) -> float | None:
            return b if a is None else a if b is None else min(a, b)

        fro = self.forbid_resonance_order, other.forbid_resonance_order
        return EffectLimits(
            max_orbit_change_mm=low(self.max_orbit_change_mm, other.max_orbit_change_mm),
            max_tune_shift=low(self.max_tune_shift, other.max_tune_shift),
            forbid_resonance_order=None if fro == (None, None) else max(x for x in fro if x is not None),
        )


class EffectCheck(BaseModel):
    """The outcome of checking a predicted effect against effect limits."""

    allowed: bool
    violations: list[str] = Field(default_factory=list, description="One sentence per limit broken.")


class PlanEffect(BaseModel):
    """A plan with several magnet writes predicted as the whole (issue 23): the writes applied together from the
    present magnet currents (``combined``), each one alone from the same state (``per_write``), and the effect
    limits the whole was checked against (the stricter of every written channel's limits)."""

    writes: dict[str, float] = Field(
        description="The plan's writes still to come, channel -> A, in plan order; the request's own write first."
    )
    combined: PredictedEffect
    per_write: dict[str, PredictedEffect] = Field(
        default_factory=dict, description="Each mapped write alone, from the same present currents."
    )
    limits: EffectLimits | None = None
    violations: list[str] = Field(
        default_factory=list, description="Effect limits the whole or one write breaks (such a write is refused)."
    )
    per_write_omitted: bool = Field(False, description="per_write left out here (a run list); the request has it.")

    def summary(self) -> str:
        """One short block: the whole, then one line per write (tune shift and largest orbit change), then the
        effect limits broken, if any."""
        head = f"plan as a whole ({len(self.writes)} writes applied together):"
        body = self.combined.summary().replace("predicted effect", "  combined", 1)
        each = "  each write alone:"
        if not self.per_write:
            each = "  each write alone: " + ("see `tern show RUN`" if self.per_write_omitted else "at the plan's first")
        lines = [head, body, each]
        for ch, amps in self.writes.items() if self.per_write else ():
            e = self.per_write.get(ch)
            if e is None or not e.predicted:
                lines.append(f"    {ch} -> {amps:g} A: no prediction (not in the ring mapping)")
            elif not e.closed_orbit_exists or e.orbit_max_mm is None:
                lines.append(f"    {ch} -> {amps:g} A: NO CLOSED ORBIT")
            else:
                lines.append(
                    f"    {ch} -> {amps:g} A: dQx {e.dq_x:+.5f} dQy {e.dq_y:+.5f};"
                    f" max orbit x {e.orbit_max_mm[0]:.3f} mm y {e.orbit_max_mm[1]:.3f} mm"
                )
        lines += [f"  REFUSED BY EFFECT LIMITS: {v}" for v in self.violations]
        return "\n".join(lines)


class MeasuredEffect(BaseModel):
    """Measured against predicted after a write, per quantity (orbit in mm at named BPMs, tune shifts)."""

    quantities: dict[str, tuple[float, float]] = Field(
        default_factory=dict, description="quantity -> (predicted, measured)."
    )
    worst_ratio: float | None = Field(None, description="Largest |measured - predicted| / |predicted| considered.")
    unexpected: bool = False
    message: str = ""
    proposed_inverse: tuple[str, float] | None = Field(
        None, description="When unexpected: the write that undoes it (channel, value), proposed, never performed."
    )
    proposed_run: str | None = Field(
        None, description="The run started to propose the inverse write for approval (its workflow id)."
    )


class RingSnapshot(BaseModel):
    """BPM positions (channel -> mm) and measured fractional tunes, read together (before or after a write)."""

    bpms: dict[str, float] = Field(default_factory=dict)
    tunes: tuple[float, float] | None = None
    error: str = Field("", description="Why the snapshot is incomplete (a channel did not answer), if so.")


class RingSnapshotInput(BaseModel):
    """Read these BPM channels and the mapping's tune channels."""

    bpms: list[str]


class MeasureEffectInput(BaseModel):
    """After a verified write: wait the settle time, read, compare with the prediction."""

    channel: str
    previous_value: float | None
    value: float
    effect: PredictedEffect
    before: RingSnapshot


class PlanPredictInput(BaseModel):
    """Predict a plan's writes (channel -> value, in plan order) as the whole, for its approval."""

    writes: dict[str, float]


class OrbitCorrectInput(BaseModel):
    """Compute corrector writes for a requested orbit change (BPM channel -> mm, one plane)."""

    bpms: dict[str, float]


class OrbitCorrectOutput(BaseModel):
    """The corrector writes (channel -> A, absolute) and what the model expects of them; ``error`` when none."""

    writes: dict[str, float] = Field(default_factory=dict)
    expected: dict[str, float] = Field(default_factory=dict)
    residual_rms_mm: float = 0.0
    singular_values_kept: int = 0
    error: str = ""
