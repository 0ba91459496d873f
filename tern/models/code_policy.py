"""What the policy analysis of analysis code found (``PolicyReport``) and how risky that is.

Built by ``tern.sandbox.policy.analyze``; carried by the ``python`` step models (``tern.models.python_step``)
and shown to approvers. The approval modes are Osprey's (``tern.models.approval.ApprovalMode``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from tern.models.approval import ApprovalMode

RiskLevel = Literal["low", "medium", "high", "critical"]
"""Severity of a finding and risk of a report, from least to most dangerous."""
RISK_ORDER: dict[RiskLevel, int] = {"low": 0, "medium": 1, "high": 2, "critical": 3}
"""Rank of each risk level (higher is riskier)."""
Category = Literal[
    "control_system",
    "control_write",
    "network",
    "process",
    "file_write",
    "file_read",
    "dynamic_code",
    "privilege",
]
"""What kind of access a finding is (its severity per category: ``tern.sandbox.policy_rules.SEVERITY``)."""


class Finding(BaseModel):
    """One attempted access the code makes."""

    category: Category
    line: int = Field(description="1-based line of the code.")
    detail: str = Field(description="What was found, e.g. 'call to epics.caput (imported as _w)'.")
    severity: RiskLevel


class PolicyReport(BaseModel):
    """What ``analyze`` found. ``syntax_error`` set means the code cannot run (send it back to generation)."""

    syntax_ok: bool
    syntax_error: str | None = Field(None, description="'line N: message' when the code does not parse.")
    findings: list[Finding] = Field(default_factory=list)
    risk: RiskLevel = "low"
    imports: list[str] = Field(default_factory=list, description="Modules imported, fully qualified.")

    def categories(self) -> set[Category]:
        """The categories present among the findings."""
        return {f.category for f in self.findings}

    @property
    def attempts_control_write(self) -> bool:
        """True when the code tries to write to the control system (caput, .put(), ...)."""
        return "control_write" in self.categories()

    def needs_approval(self, mode: ApprovalMode) -> bool:
        """Whether a human must approve before the code runs, under Osprey's Python approval modes.

        ``disabled``: never. ``all_code``: always (code that does not parse never runs, so it needs none).
        ``control_writes``: when the code attempts a control-system write, or uses dynamic code
        (exec, eval, getattr with a computed name, ...) that could hide one: fail closed.
        """
        if not self.syntax_ok or mode == "disabled":
            return False
        if mode == "all_code":
            return True
        return bool(self.categories() & {"control_write", "dynamic_code", "privilege"})

    def summary(self) -> str:
        """Human-readable account for an approval request: risk, then one line per finding."""
        if not self.syntax_ok:
            return f"syntax error: {self.syntax_error}"
        if not self.findings:
            return "risk low: no control-system, network, process, file-write or dynamic-code access found"
        lines = [f"risk {self.risk}: {len(self.findings)} finding(s)"]
        lines += [f"  line {f.line}: [{f.category}, {f.severity}] {f.detail}" for f in self.findings]
        return "\n".join(lines)
