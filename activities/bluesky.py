"""Activities of ``bluesky_plan`` steps: thin adapters from Temporal to :mod:`tern.bluesky.plans`.

``check_bluesky_plan`` runs before approval (a plan the queue server does not allow fails non-retryably,
``PlanRefused``); ``run_bluesky_plan`` runs after it: submits the item once (the idempotency key travels in the
item's ``meta``, so a retry after a worker died mid-plan finds and follows the item it added) and follows it to the
end, heartbeating. The queue server's API (``bluesky-queueserver-api``, the ``bluesky`` extra) is imported on first
use; without it both activities fail non-retryably (``BlueskyUnavailable``).
"""

from __future__ import annotations

from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeat import heartbeating
from tern.config import TernSettings
from tern.models.bluesky import BlueskyCheckInput, BlueskyRunInput, PlanCheck, PlanOutcome

HEARTBEAT_EVERY_S = 2.0  # the run activity's heartbeat period (its heartbeat timeout: workflows.run_bluesky)


class BlueskyActivities:
    """The ``bluesky_plan`` activities, bound to the worker's settings (``TernSettings.bluesky``)."""

    def __init__(self, settings: TernSettings) -> None:
        self.settings = settings

    def all(self) -> list[Any]:
        """The activity callables to register on a worker."""
        return [self.check_bluesky_plan, self.run_bluesky_plan]

    def _api(self) -> Any:
        try:
            from bluesky_queueserver_api.zmq.aio import REManagerAPI
        except ImportError as exc:
            raise ApplicationError(
                "the Bluesky queue server API is not installed (pip install 'tern[bluesky]')",
                type="BlueskyUnavailable",
                non_retryable=True,
            ) from exc
        b = self.settings.bluesky
        return REManagerAPI(
            zmq_control_addr=f"tcp://{b.host}:{b.control_port}", zmq_info_addr=f"tcp://{b.host}:{b.info_port}"
        )

    @activity.defn(name="check_bluesky_plan")
    async def check_bluesky_plan(self, inp: BlueskyCheckInput) -> PlanCheck:
        """The plan checked against the queue server's allowed plans and devices (what the approver is shown).
        ``PlanRefused`` (non-retryable) names what is not allowed; a server that does not answer is retried."""
        from tern.bluesky.plans import BlueskyError, PlanRefused, check_plan

        api = self._api()
        try:
            return await check_plan(api, inp.plan, self.settings.bluesky.user_group)
        except PlanRefused as exc:
            raise ApplicationError(str(exc), type="PlanRefused", non_retryable=True) from exc
        except BlueskyError as exc:
            raise ApplicationError(str(exc), type="BlueskyUnreachable") from exc
        finally:
            await api.close()

    @activity.defn(name="run_bluesky_plan")
    async def run_bluesky_plan(self, inp: BlueskyRunInput) -> PlanOutcome:
        """Submit the approved plan once (``inp.idempotency_key``) and follow it to its end; heartbeats every
        ``HEARTBEAT_EVERY_S`` so a dead worker is noticed and the retry resumes following the same item."""
        from tern.bluesky.plans import BlueskyError, PlanRefused, follow, submit_once

        api = self._api()
        try:
            async with heartbeating(HEARTBEAT_EVERY_S):
                uid, added = await submit_once(api, inp.plan, inp.idempotency_key, self.settings.bluesky.user_group)
                activity.logger.info("bluesky item %s %s", uid, "added" if added else "found (earlier attempt)")
                outcome = await follow(api, uid)
            return outcome.model_copy(update={"submitted_here": added})
        except PlanRefused as exc:
            raise ApplicationError(str(exc), type="PlanRefused", non_retryable=True) from exc
        except BlueskyError as exc:
            raise ApplicationError(str(exc), type="BlueskyUnreachable") from exc
        finally:
            await api.close()
