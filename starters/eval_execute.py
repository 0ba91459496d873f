"""``tern eval plans --execute``: each validated plan runs on the stack as an ordinary agent run, every approval
it asks for is rejected, and the finished run is scored for grounding and for no executed write.

The run is started with the plan given explicitly (the model under evaluation planned it; the worker's own
planner is not asked), so read-only steps (logbook search, channel and archiver reads, channel finding) run for
real against the stack; a ``control_write`` stops at its approval and is rejected, and so is any other approval
(a python step's code, a logbook publication, a memory note): nothing a person would have to approve happens.
The answer is composed by the worker's answer LLM. A run that executed a write anyway fails
``no_write_executed`` loudly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starters.client import TernClient, TernUserError, run_request

if TYPE_CHECKING:
    from tern.eval import ModelResult, Question

EVAL_USER = "tern-eval"
EVAL_APPROVER = "tern-eval-rejecter"  # the one approver the runs accept; it only ever rejects
REJECT_COMMENT = "tern eval: every approval is rejected (evaluation runs execute no write)"
POLL_S = 0.5  # status polling while a run works (a query per run; the eval's runs are few)


async def execute_run(client: TernClient, q: Question, plan: dict[str, Any], *, timeout_s: float) -> Any:
    """Run ``plan`` for ``q`` on the stack, rejecting every approval request; returns the ``AgentRunResult``.

    Raises ``TimeoutError`` when the run has not ended within ``timeout_s`` seconds (the run is then cancelled),
    :class:`TernUserError` for a plan or question the run refuses."""
    from tern.models import Plan

    s = client.settings
    req = run_request(
        user=EVAL_USER,
        query=q.question,
        plan=Plan.model_validate(plan),
        approvers=[EVAL_APPROVER],
        approval_timeout_s=max(60.0, timeout_s),
        python_approval_mode=s.approval.python_mode,
        context=q.context,
    )
    handle = await client.start_run(req)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        st = await client.status(handle.id)
        if st.state not in ("running", "awaiting_approval"):
            return await client.result(handle.id)
        if st.pending is not None:
            try:
                await client.decide(
                    st.workflow_id, EVAL_APPROVER, False, REJECT_COMMENT, expected_request=st.pending.request_id
                )
            except TernUserError:
                pass  # the request moved on (timed out, or another came): read the status again
            continue
        if loop.time() > deadline:
            await handle.cancel()
            raise TimeoutError(f"run {handle.id} for question {q.id} did not end within {timeout_s:g} s")
        await asyncio.sleep(POLL_S)


async def execute_results(
    client: TernClient,
    questions: list[Question],
    result: ModelResult,
    *,
    concurrency: int,
    timeout_s: float,
    progress: Callable[[str], Any] | None = None,
) -> None:
    """Run every validated plan of ``result`` (``concurrency`` at once) and add the run's checks
    (:func:`tern.eval.scoring.run_checks`) to its question; a question whose run failed to finish fails
    ``run`` with the reason. Updates ``result`` in place."""
    from tern.eval.scoring import Check, run_checks

    by_id = {q.id: q for q in questions}
    sem = asyncio.Semaphore(concurrency)

    async def one(r: Any) -> None:
        if r.plan is None:
            return
        async with sem:
            try:
                run = await execute_run(client, by_id[r.id], r.plan, timeout_s=timeout_s)
            except (TimeoutError, TernUserError) as exc:
                r.checks.append(Check(name="run", ok=False, reason=str(exc)))
            else:
                r.run_id, r.run_status = run.workflow_id, run.status
                r.checks += run_checks(run)
        r.passed = all(c.ok for c in r.checks)
        if progress is not None:
            progress(f"[{result.label}] ran {r.id}: {r.run_status or 'not finished'}")

    await asyncio.gather(*(one(r) for r in result.results))
