"""Planning: the capability registry, the planner prompt and the plan-validate-retry loop (no Temporal)."""

from tern.planning.capabilities import REGISTRY, default_registry
from tern.planning.planner import PlanningFailed, make_plan, parse_plan_json
from tern.planning.registry import Capability, CapabilityRegistry, PlanInvalid

__all__ = [
    "REGISTRY",
    "Capability",
    "CapabilityRegistry",
    "PlanInvalid",
    "PlanningFailed",
    "default_registry",
    "make_plan",
    "parse_plan_json",
]
