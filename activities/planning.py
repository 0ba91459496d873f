"""The ``plan`` activity: a thin adapter from Temporal to :mod:`tern.planning` (the LLM planner).

One LLM client per worker (role 'planner', built on first use from the settings) holds one connection pool
shared by every run. Failures become ``ApplicationError``: no LLM configured (``NoPlanner``) and a plan that
never validated (``PlanInvalid``) are non-retryable; an endpoint failure (``LLMError``) is retried by the
workflow's retry policy unless the request itself was refused (HTTP 400/401/403/404/422).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeat import heartbeating
from tern.config import TernSettings
from tern.control.limits import LimitsDatabase, LimitsDatabaseError
from tern.llm.chat import LLMClient, LLMError, make_chat_provider
from tern.models.planning import PlanDraft, PlanInput
from tern.planning import REGISTRY, CapabilityRegistry, PlanningFailed, make_plan

PLAN_HEARTBEAT_EVERY_S = 5.0  # the plan activity's heartbeat period (its timeout: workflows.planning)


class PlanningActivities:
    """The planner activity, bound to a worker's settings.

    Args:
        settings: ``llm_*`` settings (provider, planner model, timeouts), ``plan_max_attempts``, the limits path.
        registry: the capabilities offered to the planner (default: ``tern.planning.REGISTRY``).
        llm: a client to use instead of the configured one (tests of the client code pass their own).
    """

    def __init__(
        self, settings: TernSettings, registry: CapabilityRegistry = REGISTRY, llm: LLMClient | None = None
    ) -> None:
        self.settings = settings
        self.registry = registry
        self._llm = llm
        self._limits: tuple[tuple[int, int, int], LimitsDatabase] | None = None

    def limits(self) -> LimitsDatabase:
        """The channel/limits database, re-read only when its file changed (inode, size or mtime): loading the
        bundled 2,908 channels takes 40-100 ms, more than the rest of planning. Raises ``LimitsDatabaseError``."""
        path = self.settings.control.limits_path
        try:
            st = path.stat()
        except OSError as exc:
            raise LimitsDatabaseError(f"limits database not found: {path}") from exc
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        if self._limits is None or self._limits[0] != key:
            self._limits = (
                key,
                LimitsDatabase.load(path, allow_unlisted=self.settings.control.allow_unlisted_channels),
            )
        return self._limits[1]

    def llm(self) -> LLMClient:
        """The planner's LLM client; raises non-retryable ``NoPlanner`` when ``llm_provider`` is 'none'."""
        if self._llm is None:
            self._llm = make_chat_provider(self.settings, "planner")
        if self._llm is None:
            raise ApplicationError(
                "no LLM is configured to plan (set TERN_LLM__PROVIDER, TERN_LLM__URL, TERN_LLM__MODEL); "
                "pass an explicit plan instead",
                type="NoPlanner",
                non_retryable=True,
            )
        return self._llm

    def all(self) -> list[Callable[..., Any]]:
        """The activity callables to register on a worker."""
        return [self.plan]

    @activity.defn(name="plan")
    async def plan(self, inp: PlanInput) -> PlanDraft:
        """A validated plan for ``inp`` (see :func:`tern.planning.make_plan`)."""
        try:
            limits = self.limits()
        except LimitsDatabaseError as exc:
            raise ApplicationError(f"cannot validate plans: {exc}", type="InvalidLimits", non_retryable=True) from exc
        try:
            attempts = self.settings.llm.plan_max_attempts
            async with heartbeating(PLAN_HEARTBEAT_EVERY_S):  # a worker that dies mid-plan is noticed in seconds
                draft = await make_plan(self.llm(), self.registry, inp, limits, max_attempts=attempts)
        except PlanningFailed as exc:
            raise ApplicationError(str(exc), type="PlanInvalid", non_retryable=True) from exc
        except LLMError as exc:
            raise ApplicationError(f"planner: {exc}", type="LLMError", non_retryable=not exc.retryable) from exc
        draft.approval_required = self.settings.llm.plan_approval
        return draft
