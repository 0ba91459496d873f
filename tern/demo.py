"""The main job, ``tern demo``: the walking skeleton end to end on the embedded stack.

1. ``tern up`` (starts what is not running);
2. ingest the bundled demo logbook (idempotent upserts);
3. read the RF cavity voltage setpoint and propose 0.05 MV lower (higher when that would leave the band),
   always inside the limits database's [min, max];
4. start the bundled demo plan (``tern/plans/demo.json``) with that value: logbook search -> channel reads ->
   approval-gated write -> answer with citations;
5. with ``auto_approve``, approve as ``demo-operator`` and return the result; otherwise return the run id
   once the run waits for approval.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from tern import DATA_DIR, PACKAGE_DIR
from tern.config import TernSettings, current_user
from tern.models import AgentRunRequest, AgentRunResult, ControlWriteStep, Plan

DEMO_OPERATOR = "demo-operator"
DEMO_QUERY = ("RF cavity 1 tripped on reflected power again overnight. Has this happened before, what is the "
              "cavity doing now, and should we lower its voltage a little?")
DEMO_PLAN = PACKAGE_DIR / "plans" / "demo.json"
STEP_MV = 0.05


class DemoError(RuntimeError):
    """The demo could not run; the message says which stage failed."""


def demo_plan(current_mv: float, min_mv: float, max_mv: float) -> Plan:
    """The bundled plan with its write value set from the live setpoint (MV), kept inside [min, max]."""
    plan = Plan.model_validate(json.loads(DEMO_PLAN.read_text()))
    target = current_mv - STEP_MV
    if target < min_mv + STEP_MV:
        target = current_mv + STEP_MV
    target = round(min(max(target, min_mv), max_mv), 4)
    for step in plan.steps:
        if isinstance(step, ControlWriteStep):
            step.value = target
    return plan


async def run_demo(settings: TernSettings, *, auto_approve: bool,
                   progress: Callable[[str], None] = lambda _m: None) -> AgentRunResult | tuple[str, str]:
    """Run the demo; see the module docstring. Raises :class:`DemoError` naming the failed stage."""
    from starters.client import TernClient
    from tern.ariel.ingest import adapter_options, ingest_source
    from tern.control import channels as ca
    from tern.control.limits import LimitsDatabase
    from tern.db import create_pool
    from tern.embedded.stack import EmbeddedStack, StackError
    from workflows.agent_run import AgentRunWorkflow

    try:
        await asyncio.to_thread(EmbeddedStack(settings, progress=progress).up)
    except StackError as exc:
        raise DemoError(f"starting the embedded stack failed: {exc}") from exc

    progress("ingesting the demo logbook")
    pool = await create_pool(settings.dsn)
    try:
        counts, bad = await ingest_source(pool, "demo", str(DATA_DIR / "demo_logbook.json"),
                                          adapter_options(settings), 100)
    finally:
        await pool.close()
    if bad:
        raise DemoError(f"the demo logbook has bad records: {bad[:3]}")
    progress(f"logbook: {counts}")

    ca.configure_environment(settings.ca_environment())
    limits = LimitsDatabase.load(settings.limits_path)
    lim = limits.channels["SR:RF:CAVITY:01:VOLTAGE:SP"]
    try:
        current = await asyncio.to_thread(ca.read_value, "SR:RF:CAVITY:01:VOLTAGE:SP", settings.ca_timeout_s)
    except ca.ChannelAccessError as exc:
        raise DemoError(f"cannot read the simulated accelerator: {exc}") from exc
    plan = demo_plan(current, lim.min_value or 0.0, lim.max_value or current)

    user = current_user()
    approvers = sorted({*settings.effective_approvers(user), DEMO_OPERATOR})
    client = await TernClient.connect(settings)
    handle = await client.start_run(AgentRunRequest(
        user=user, query=DEMO_QUERY, plan=plan, approvers=approvers, approval_timeout_s=settings.approval_timeout_s))
    progress(f"run {handle.id} started ({settings.run_url(handle.id)})")

    async def until_waiting() -> None:
        while True:
            st = await handle.query(AgentRunWorkflow.status)
            if st.state == "awaiting_approval":
                return
            if st.state != "running":
                return
            await asyncio.sleep(0.2)

    await asyncio.wait_for(until_waiting(), timeout=120)
    if not auto_approve:
        return handle.id, user
    progress(f"approving as {DEMO_OPERATOR}")
    await client.decide(handle.id, DEMO_OPERATOR, True, "demo: auto-approved")
    return await client.result(handle.id)
