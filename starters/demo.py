"""The main job, ``tern demo``: an agent run end to end on the embedded stack.

1. ``tern up`` (starts what is not running);
2. ingest the bundled demo logbook (idempotent upserts) and embed its entries with the configured provider
   (the default ``onnx`` loads in about a second), so the plan's hybrid search is hybrid; without a provider,
   or when it fails, the demo goes on with a notice and the search falls back to keyword;
3. start the bundled demo plan (``tern/plans/demo.json``): logbook search -> channel reads -> the archived night
   of cavity 1's reflected-power trip (four days ago, 00:00 to 04:00 in the facility time zone; 1-minute means
   from the embedded archiver) -> a ``python`` step that analyses readings and history in the Docker sandbox
   (approval of the code), draws a figure and proposes the cavity voltage 0.05 MV lower -> that write,
   limits-checked and approval-gated -> answer with citations.
   When the sandbox is unavailable (no Docker engine or image) the plan without the python step runs
   instead (``demo_no_sandbox.json``, its write value set from the live setpoint), with a notice;
   With ``ask`` (``tern demo --ask``) the configured LLM plans the demo question instead (``TernClient.ask``);
   its writes are limits-checked and approval-gated the same way;
4. with ``auto_approve``, approve each request as ``demo-operator`` and return the result; otherwise return
   the run id once the run waits for its first approval.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from starters.common import DEMO_OPERATOR
from tern import DATA_DIR, PACKAGE_DIR
from tern.config import TernSettings, current_user
from tern.models import AgentRunRequest, AgentRunResult, ControlWriteStep, Plan

if TYPE_CHECKING:
    from starters.client import TernClient

DEMO_QUERY = (
    "RF cavity 1 tripped on reflected power again overnight. Has this happened before, what is the "
    "cavity doing now, and should we lower its voltage a little?"
)
DEMO_PLAN = PACKAGE_DIR / "plans" / "demo.json"
DEMO_PLAN_NO_SANDBOX = PACKAGE_DIR / "plans" / "demo_no_sandbox.json"
STEP_MV = 0.05
DEMO_EMBED_MAX = 100  # entries the demo embeds itself (its logbook has 28)


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


async def embed_demo_logbook(pool: Any, settings: TernSettings) -> str:
    """Embed the stored entries that lack a vector of the configured model (``settings.ariel.embedding_*``); returns
    the line the demo prints: what was embedded, or the notice saying why semantic search will fall back."""
    from tern.ariel.embeddings import EmbeddingError
    from tern.ariel.ingest import embed_pending
    from tern.ariel.providers import configured_embedder

    try:
        emb = await configured_embedder(settings)
        if emb is None:
            return (
                "notice: no embedding provider (TERN_ARIEL__EMBEDDING_PROVIDER=none): the search will be keyword only"
            )
        # One call: the demo logbook's entries at most (a stack holding a large logbook embeds it by ingestion).
        r = await embed_pending(
            pool,
            emb,
            settings.ariel.embedding_batch_size,
            max_batches=math.ceil(DEMO_EMBED_MAX / settings.ariel.embedding_batch_size),
        )
    except EmbeddingError as exc:
        return f"notice: embeddings unavailable ({exc}): the search will be keyword only"
    left = f", {r.remaining} other entries left to ingestion's enhancement" if r.remaining else ""
    return f"embeddings: {r.processed} entries embedded with {emb.model} ({settings.ariel.embedding_provider}){left}"


async def run_demo(
    settings: TernSettings,
    *,
    auto_approve: bool,
    ask: bool = False,
    progress: Callable[[str], None] = lambda _m: None,
    extra_approvers: Sequence[str] = (),
) -> AgentRunResult | tuple[str, str, int]:
    """Run the demo; see the module docstring. Returns the result (``auto_approve``) or
    ``(run id, user, number of approvals the run will ask for)`` (for ``ask``: 1, the first one; the plan decides
    how many follow). ``extra_approvers`` are added to the run's approvers (``tern demo --approver operator``:
    the embedded Matrix operator may decide from the room).

    Raises :class:`DemoError` naming the failed stage, ``starters.client.TernUserError`` when ``ask`` is set and
    no LLM is configured."""
    from starters.client import TernClient
    from tern.ariel.ingest import adapter_options, ingest_source
    from tern.control import channel_access as ca
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
        if bad:
            raise DemoError(f"the demo logbook has bad records: {bad[:3]}")
        progress(f"logbook: {counts}")
        progress(await embed_demo_logbook(pool, settings))
    finally:
        await pool.close()

    user = current_user()
    approvers = sorted({*settings.approval.approvers, user, DEMO_OPERATOR, *extra_approvers})
    problem = await asyncio.to_thread(unavailable_reason, settings)
    if ask:
        client = await TernClient.connect(settings)
        handle = await client.ask(DEMO_QUERY, user=user, approvers=approvers)
        model = settings.llm.model_for("planner")
        progress(f"run {handle.id} started, planned by model {model} ({settings.run_url(handle.id)})")
        return await _approvals(client, handle.id, user, 1, auto_approve, progress)
    if problem is None:
        plan = Plan.model_validate(json.loads(DEMO_PLAN.read_text()))
    else:
        progress(
            f"notice: the sandbox is unavailable ({problem}); running the demo without its python step "
            "(./dev test sets Docker up; `tern sandbox build` builds the image)"
        )
        lim = LimitsDatabase.load(settings.control.limits_path).channels["SR:RF:CAVITY:01:VOLTAGE:SP"]
        channel_access = ChannelAccessClient(1, settings.ca_environment())
        try:
            current = await channel_access.read_value("SR:RF:CAVITY:01:VOLTAGE:SP", settings.control.ca_timeout_s)
        except ca.ChannelAccessError as exc:
            raise DemoError(f"cannot read the simulated accelerator: {exc}") from exc
        finally:
            channel_access.close()
        plan = demo_plan_without_sandbox(current, lim.min_value or 0.0, lim.max_value or current)

    client = await TernClient.connect(settings)
    handle = await client.start_run(
        AgentRunRequest(
            user=user,
            query=DEMO_QUERY,
            plan=plan,
            approvers=approvers,
            approval_timeout_s=settings.approval.timeout_s,
            python_approval_mode=settings.approval.python_mode,
        )
    )
    progress(f"run {handle.id} started ({settings.run_url(handle.id)})")
    return await _approvals(client, handle.id, user, 2 if problem is None else 1, auto_approve, progress)


async def _approvals(
    client: TernClient,
    run_id: str,
    user: str,
    asks: int,
    auto_approve: bool,
    progress: Callable[[str], None] = lambda _m: None,
) -> AgentRunResult | tuple[str, str, int]:
    """Without ``auto_approve``: ``(run_id, user, asks)`` once the run waits for its first decision. With it:
    approve each request as ``DEMO_OPERATOR`` and return the result."""

    async def next_pending() -> bool:
        """Wait until the run (or its python step) waits for a decision (True) or the run ends (False)."""
        while True:
            if (await client.waiting(run_id)).pending is not None:
                return True
            if await client.is_closed(run_id):
                return False
            await asyncio.sleep(0.2)

    if not auto_approve:
        await asyncio.wait_for(next_pending(), timeout=300)
        return run_id, user, asks
    while await asyncio.wait_for(next_pending(), timeout=300):
        record = await client.decide(run_id, DEMO_OPERATOR, True, "demo: auto-approved")
        progress(f"approved the {record.kind} request of step {record.step_id} as {DEMO_OPERATOR}")
    return await client.result(run_id)
