"""The main job, ``tern demo``: an agent run end to end on the embedded stack.

1. ``tern up`` (starts what is not running);
2. ingest the bundled demo logbook (idempotent upserts);
3. start the bundled demo plan (``tern/plans/demo.json``): logbook search -> channel reads -> a ``python`` step
   that analyses the readings in the Docker sandbox (approval of the code), draws a figure and proposes the
   cavity voltage 0.05 MV lower -> that write, limits-checked and approval-gated -> answer with citations.
   When the sandbox is unavailable (no Docker engine or image) the plan without the python step runs
   instead (``demo_no_sandbox.json``, its write value set from the live setpoint), with a notice;
4. with ``auto_approve``, approve each request as ``demo-operator`` and return the result; otherwise return
   the run id once the run waits for its first approval.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence

from tern import DATA_DIR, PACKAGE_DIR
from tern.config import TernSettings, current_user
from tern.models import AgentRunRequest, AgentRunResult, ControlWriteStep, Plan

DEMO_OPERATOR = "demo-operator"
DEMO_QUERY = (
    "RF cavity 1 tripped on reflected power again overnight. Has this happened before, what is the "
    "cavity doing now, and should we lower its voltage a little?"
)
DEMO_PLAN = PACKAGE_DIR / "plans" / "demo.json"
DEMO_PLAN_NO_SANDBOX = PACKAGE_DIR / "plans" / "demo_no_sandbox.json"
STEP_MV = 0.05


class DemoError(RuntimeError):
    """The demo could not run; the message says which stage failed."""


def demo_plan_without_sandbox(current_mv: float, min_mv: float, max_mv: float) -> Plan:
    """The fallback plan with its write value set from the live setpoint (MV), kept inside [min, max]."""
    plan = Plan.model_validate(json.loads(DEMO_PLAN_NO_SANDBOX.read_text()))
    target = current_mv - STEP_MV
    if target < min_mv + STEP_MV:
        target = current_mv + STEP_MV
    target = round(min(max(target, min_mv), max_mv), 4)
    for step in plan.steps:
        if isinstance(step, ControlWriteStep):
            step.value = target
    return plan


async def run_demo(
    settings: TernSettings,
    *,
    auto_approve: bool,
    progress: Callable[[str], None] = lambda _m: None,
    extra_approvers: Sequence[str] = (),
) -> AgentRunResult | tuple[str, str, int]:
    """Run the demo; see the module docstring. Returns the result (``auto_approve``) or
    ``(run id, user, number of approvals the run will ask for)``. ``extra_approvers`` are added to the run's
    approvers (``tern demo --approver operator``: the embedded Matrix operator may decide from the room).

    Raises :class:`DemoError` naming the failed stage."""
    from starters.client import TernClient
    from tern.ariel.ingest import adapter_options, ingest_source
    from tern.control import channels as ca
    from tern.control.ca_client import ChannelAccessClient
    from tern.control.limits import LimitsDatabase
    from tern.db import create_pool
    from tern.embedded.stack import EmbeddedStack, StackError
    from tern.sandbox import unavailable_reason

    try:
        await asyncio.to_thread(EmbeddedStack(settings, progress=progress).up)
    except StackError as exc:
        raise DemoError(f"starting the embedded stack failed: {exc}") from exc

    progress("ingesting the demo logbook")
    pool = await create_pool(settings.dsn)
    try:
        counts, bad = await ingest_source(
            pool, "demo", str(DATA_DIR / "demo_logbook.json"), adapter_options(settings), 100
        )
    finally:
        await pool.close()
    if bad:
        raise DemoError(f"the demo logbook has bad records: {bad[:3]}")
    progress(f"logbook: {counts}")

    problem = await asyncio.to_thread(unavailable_reason, settings)
    if problem is None:
        plan = Plan.model_validate(json.loads(DEMO_PLAN.read_text()))
    else:
        progress(
            f"notice: the sandbox is unavailable ({problem}); running the demo without its python step "
            "(./dev test sets Docker up; `tern sandbox build` builds the image)"
        )
        lim = LimitsDatabase.load(settings.limits_path).channels["SR:RF:CAVITY:01:VOLTAGE:SP"]
        channel_access = ChannelAccessClient(1, settings.ca_environment())
        try:
            current = await channel_access.read_value("SR:RF:CAVITY:01:VOLTAGE:SP", settings.ca_timeout_s)
        except ca.ChannelAccessError as exc:
            raise DemoError(f"cannot read the simulated accelerator: {exc}") from exc
        finally:
            channel_access.close()
        plan = demo_plan_without_sandbox(current, lim.min_value or 0.0, lim.max_value or current)

    user = current_user()
    approvers = sorted({*settings.approvers, user, DEMO_OPERATOR, *extra_approvers})
    client = await TernClient.connect(settings)
    handle = await client.start_run(
        AgentRunRequest(
            user=user,
            query=DEMO_QUERY,
            plan=plan,
            approvers=approvers,
            approval_timeout_s=settings.approval_timeout_s,
            python_approval_mode=settings.python_approval_mode,
        )
    )
    progress(f"run {handle.id} started ({settings.run_url(handle.id)})")

    async def next_pending() -> bool:
        """Wait until the run (or its python step) waits for a decision (True) or the run ends (False)."""
        while True:
            if (await client.waiting(handle.id)).pending is not None:
                return True
            if await client.is_closed(handle.id):
                return False
            await asyncio.sleep(0.2)

    if not auto_approve:
        await asyncio.wait_for(next_pending(), timeout=300)
        return handle.id, user, 2 if problem is None else 1
    while await asyncio.wait_for(next_pending(), timeout=300):
        record = await client.decide(handle.id, DEMO_OPERATOR, True, "demo: auto-approved")
        progress(f"approved the {record.kind} request of step {record.step_id} as {DEMO_OPERATOR}")
    return await client.result(handle.id)
