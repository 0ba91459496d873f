"""The approval gate shared by Tern workflows: one pending request at a time, decided by the ``decide``
Update or the ``decide_signal`` Signal, expiring after a durable timeout (expiry rejects), every request,
decision and refused decision written to the audit table before the workflow goes on. While a request waits,
the workflow's current details (the Web UI's workflow page) say what is asked, who may decide, until when, and
the exact ``decide`` Update to send (:func:`tern.approval.render.pending_markdown`); when it ends, how it ended.

Who may decide comes from the worker's approval policy (``resolve_approval`` activity, recorded in history):
the run's own approver list only narrows it; the requester may not approve their own ``control_write``
unless the policy allows it (two-person rule); a request may need several different approvers. A refused
decision (stale or unknown request id, not an approver, self-approval, second approval by the same person,
already decided) is audited as ``decision_refused`` whether it came by Update or Signal; the Update then
fails with the reason, the Signal is recorded as ignored. Workflow code only: deterministic, I/O through
activities.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Literal

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

from workflows.search_attributes import NO_APPROVAL, PENDING_APPROVAL, RUN_STATE

with workflow.unsafe.imports_passed_through():
    from activities.agent import AgentActivities
    from activities.approval import ApprovalActivities
    from tern.approval.render import decided_markdown, pending_markdown
    from tern.identity.statement import request_digest
    from tern.models import (
        ApprovalKind,
        ApprovalRecord,
        ApprovalRequest,
        AuditEvent,
        Decision,
        IgnoredDecision,
        LimitsCheck,
        RunState,
    )
    from tern.models.approval import (
        UNSPECIFIED_SURFACE,
        ApprovalMode,
        ApprovalResolveInput,
        CodeReview,
        NotifyApproversInput,
        ResolvedApproval,
    )
    from tern.models.identity import ProofCheck, ProofCheckInput
    from tern.models.logbook import LogbookDraft
    from tern.models.plan import Plan
    from tern.models.ring import PlanEffect

AUDIT_TIMEOUT = timedelta(seconds=30)
# The audit must eventually be written: nothing happens after a request or decision before it is recorded.
AUDIT_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=60))
RESOLVE_TIMEOUT = timedelta(seconds=30)
RESOLVE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30), maximum_attempts=10
)
# Runs started before the worker-side policy existed keep their recorded behaviour on replay (the run's own
# approver list); every new request is resolved against the policy.
POLICY_PATCH = "approval-policy-1"
# Runs started before chat bridges existed replay without the notify_approvers activity; a request made after the
# upgrade in such a run is notified under the per-request id "notify-approvers-1:<step id>".
NOTIFY_PATCH = "notify-approvers-1"
# A run cancelled while a request waits leaves TernRunState "cancelled" (it stayed "awaiting_approval" before): one
# more upsert command in the cancel path, which earlier cancelled histories do not hold.
CANCEL_STATE_PATCH = "cancel-state-1"
# A run cancelled while its request's ``approval_requested`` row is being recorded (the request is already visible
# to queries) closes the request with ``approval_cancelled`` too; before, the request stayed open in the audit.
REQUEST_CANCEL_PATCH = "request-cancel-audit-1"
NOTIFY_TIMEOUT = timedelta(seconds=30)
# Bounded: a chat outbox that cannot be reached must not hold the request; the CLI and Web UI still decide it,
# and a bridge's reconciliation from visibility at its start catches up.
NOTIFY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10), maximum_attempts=5
)
VERIFY_TIMEOUT = timedelta(seconds=30)
# Infrastructure failures (PostgreSQL, ssh-keygen) are retried; a bad proof is a result, not an error.
VERIFY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10), maximum_attempts=5
)
# Refused decisions beyond this many in one run are turned away by the Update validator without entering history
# (a flood of refused Updates would otherwise grow the history toward Temporal's 50 MB limit); each one before it
# is audited as usual.
MAX_HISTORY_REFUSALS = 500
# Refused decisions kept in the run's status and result (all are audited): bounded, so that a flood of them
# cannot push the result past Temporal's payload limit (2 MB).
MAX_KEPT_REFUSALS = 50


async def audit(event: AuditEvent) -> None:
    """Record ``event`` through the ``record_audit`` activity (idempotent by ``event_key``). A cancellation of
    the run while it is being recorded waits for the record, then goes through: no row is lost to a cancel."""
    record = workflow.start_activity_method(
        AgentActivities.record_audit,
        event,
        start_to_close_timeout=AUDIT_TIMEOUT,
        retry_policy=AUDIT_RETRY,
        summary=f"audit {event.event_kind}",
    )
    try:
        await asyncio.shield(record)
    except asyncio.CancelledError:
        await record
        raise


def run_key() -> str:
    """``<workflow id>/<Temporal run id>``: audit keys of one execution never meet another's (a reused id)."""
    info = workflow.info()
    return f"{info.workflow_id}/{info.run_id}"


class ApprovalGate:
    """Approval state of one workflow. The workflow's ``decide`` handlers delegate here.

    Args:
        requester: the user who started the run.
        approvers: the run's requested approvers (may only narrow the policy's set; empty: no narrowing).
        timeout_s: how long a request waits before it is rejected as ``timed_out``, seconds.
        on_state: called with ``(state, pending_kind)`` when the run starts or stops waiting.
    """

    def __init__(
        self, requester: str, approvers: list[str], timeout_s: float, on_state: Callable[[RunState, str], None]
    ) -> None:
        self.requester = requester
        self.approvers = approvers
        self.timeout = timedelta(seconds=timeout_s)
        self.on_state = on_state
        self.pending: ApprovalRequest | None = None
        self._decision: ApprovalRecord | None = None
        self._partial: list[ApprovalRecord] = []  # approvals short of the number needed, not yet audited
        self._recorded: set[str] = set()  # "<request id>:<approver>" of audited decisions
        self._decided: set[str] = set()  # request ids with a final decision
        self._surfaces: dict[str, str] = {}  # "<request id>:<approver>" -> the front end the decision came from
        self._proofs: dict[str, dict[str, object]] = {}  # "<request id>:<approver>" -> the proof's audit details
        self._write_by_s = 900.0
        self._signals = 0  # decide_signal calls, for proof use keys
        self.approvals: list[ApprovalRecord] = []
        self.ignored: list[IgnoredDecision] = []  # the last MAX_KEPT_REFUSALS refused decisions
        self.refused_total = 0  # all of them (each is in the audit table)

    async def resolve(
        self, kind: ApprovalKind, step_id: str, *, channel: str | None = None, requested_mode: ApprovalMode = "all_code"
    ) -> ResolvedApproval:
        """Who may decide a ``kind`` request, per the worker's policy (an activity; its result is in history)."""
        # Per request as well: patched() is memoized for the execution, so a run that replayed an unpatched request
        # would otherwise skip the policy for every request made after the upgrade.
        if not (workflow.patched(POLICY_PATCH) or workflow.patched(f"{POLICY_PATCH}:{step_id}")):
            return ResolvedApproval(
                approvers=self.approvers or [self.requester],
                python_approval_mode=requested_mode,
                rule="run approvers (before the approval policy)",
            )
        return await workflow.execute_activity_method(
            ApprovalActivities.resolve_approval,
            ApprovalResolveInput(
                workflow_id=workflow.info().workflow_id,
                step_id=step_id,
                kind=kind,
                requester=self.requester,
                requested_approvers=self.approvers,
                channel=channel,
                requested_mode=requested_mode,
            ),
            start_to_close_timeout=RESOLVE_TIMEOUT,
            retry_policy=RESOLVE_RETRY,
            summary=f"approval policy: {kind}",
        )

    async def request(
        self,
        *,
        kind: ApprovalKind,
        step_id: str,
        summary: str,
        reason: str = "",
        write: LimitsCheck | None = None,
        code: CodeReview | None = None,
        plan: Plan | None = None,
        plan_effect: PlanEffect | None = None,
        entry: LogbookDraft | None = None,
        audit_details: dict[str, object] | None = None,
        resolved: ResolvedApproval | None = None,
    ) -> ApprovalRecord:
        """Ask for a decision and wait for it (or for the timeout). Returns the audited final decision.

        ``resolved`` is the policy already applied to this step (python steps resolve once, for the mode);
        otherwise it is resolved here. A request nobody may approve is refused at once (``via="policy"``).
        """
        workflow_id = workflow.info().workflow_id
        rule = resolved or await self.resolve(kind, step_id, channel=write.channel if write else None)
        request_id = str(workflow.uuid4())
        now = workflow.now()
        base: dict[str, Any] = {
            "workflow_id": workflow_id,
            "step_id": step_id,
            "request_id": request_id,
            "channel": write.channel if write else None,
            "value": write.value if write else None,
        }
        policy = {
            "policy_version": rule.policy_version,
            "policy_rule": rule.rule,
            "min_approvals": rule.min_approvals,
            "allow_self_approval": rule.allow_self_approval,
        }
        if rule.refusal:
            refused = await self._refused_by_policy(kind, rule, base, reason or summary, policy)
            workflow.set_current_details(f"{workflow.get_current_details()}\n\n{decided_markdown(refused)}")
            return refused
        before = workflow.get_current_details()
        self.pending = ApprovalRequest(
            request_id=request_id,
            kind=kind,
            step_id=step_id,
            summary=summary,
            requested_by=self.requester,
            approvers=rule.approvers,
            requested_at=now,
            expires_at=now + self.timeout,
            write=write,
            code=code,
            plan=plan,
            plan_effect=plan_effect,
            entry=entry,
            reason=reason,
            min_approvals=rule.min_approvals,
            allow_self_approval=rule.allow_self_approval,
            policy_version=rule.policy_version,
            policy_rule=rule.rule,
            identity=rule.identity,
            surfaces=rule.surfaces,
        )
        self.pending.digest = request_digest(self.pending)
        self._write_by_s = rule.write_by_s
        self._decision = None
        self._partial = []
        try:
            await self._audit_requested(kind, rule, reason or summary, base, policy, audit_details or {})
        except asyncio.CancelledError:  # recorded all the same (audit() waits for it): now close it
            if workflow.patched(REQUEST_CANCEL_PATCH):
                await self._cancelled(kind, base, self.pending)
            raise
        self.on_state("awaiting_approval", kind)
        workflow.set_current_details(pending_markdown(self.pending, workflow_id=workflow_id, now=now))
        # Per request as well, as the policy patch: patched() is memoized for the execution, so a run that replayed
        # an unnotified request would otherwise notify nobody of every request made after the upgrade.
        if workflow.patched(NOTIFY_PATCH) or workflow.patched(f"{NOTIFY_PATCH}:{step_id}"):
            self._notify(workflow_id, self.pending)
        decision = await self._wait(kind, base)
        if decision.decision == "approved":
            decision.proven = rule.identity == "proven"
            if kind == "control_write":
                decision.write_by = decision.decided_at + timedelta(seconds=rule.write_by_s)
        self.pending = None
        workflow.set_current_details(f"{before}\n\n{decided_markdown(decision)}")
        await audit(
            AuditEvent(
                event_kind="approval_timed_out" if decision.decision == "timed_out" else "decision",
                event_key=f"decision:{request_id}",
                actor=decision.approver,
                decision=decision.decision,
                comment=decision.comment,
                **base,
                details={
                    "kind": kind,
                    "via": decision.via,
                    **self._surface(f"{request_id}:{decision.approver}"),
                    **self._proofs.get(f"{request_id}:{decision.approver}", {}),
                    **({"write_by": decision.write_by.isoformat()} if decision.write_by else {}),
                    **({"approved_by": decision.approved_by} if len(decision.approved_by) > 1 else {}),
                },
            )
        )
        self._recorded.add(f"{request_id}:{decision.approver}")
        self._decided.add(request_id)
        self.approvals.append(decision)
        self.on_state("running", NO_APPROVAL)
        return decision

    async def _audit_requested(
        self,
        kind: ApprovalKind,
        rule: ResolvedApproval,
        comment: str,
        base: dict[str, Any],
        policy: dict[str, object],
        audit_details: dict[str, object],
    ) -> None:
        """Record ``approval_requested`` for the pending request (``rule``: the resolved policy rule)."""
        assert self.pending is not None
        write = self.pending.write
        await audit(
            AuditEvent(
                event_kind="approval_requested",
                event_key=f"requested:{self.pending.request_id}",
                actor=self.requester,
                comment=comment,
                previous_value=write.current_value if write else None,
                **base,
                details={
                    "kind": kind,
                    "approvers": rule.approvers,
                    "digest": self.pending.digest,
                    "identity": rule.identity,
                    "expires_at": self.pending.expires_at.isoformat(),
                    **policy,
                    **audit_details,
                },
            )
        )

    async def _cancelled(self, kind: ApprovalKind, base: dict[str, Any], pending: ApprovalRequest | None) -> None:
        """The run was cancelled with ``pending`` open: close it (state ``cancelled``, audit ``approval_cancelled``)."""
        assert pending is not None
        self.pending = None
        if workflow.patched(CANCEL_STATE_PATCH):
            self.on_state("cancelled", NO_APPROVAL)
        workflow.set_current_details(f"**Cancelled** while approval request `{pending.request_id}` waited")
        await audit(
            AuditEvent(
                event_kind="approval_cancelled",
                event_key=f"cancelled:{pending.request_id}",
                actor=self.requester,
                comment="run cancelled",
                workflow_id=str(base["workflow_id"]),
                step_id=pending.step_id,
                request_id=pending.request_id,
                details={"kind": kind},
            )
        )

    async def _wait(self, kind: ApprovalKind, base: dict[str, Any]) -> ApprovalRecord:
        """Wait for the final decision, auditing each partial approval; the timeout rejects."""
        assert self.pending is not None
        pending = self.pending
        timeout = self.timeout
        while True:
            try:
                await workflow.wait_condition(
                    lambda: self._decision is not None or bool(self._partial),
                    timeout=timeout,
                    timeout_summary=f"approval timeout: {kind} request {pending.request_id} rejects at expiry",
                )
            except asyncio.CancelledError:  # the run was cancelled while waiting: close the request in the audit
                await self._cancelled(kind, base, pending)
                raise
            except TimeoutError:
                # A decision accepted in the same activation as the timer fired was valid when it came: it is
                # recorded below (and its Update answered) rather than left waiting for ever.
                if self._decision is None and not self._partial:
                    return self._timed_out(kind, pending)
            while self._partial:
                part = self._partial.pop(0)
                await audit(
                    AuditEvent(
                        event_kind="decision",
                        event_key=f"decision:{pending.request_id}:{part.approver}",
                        actor=part.approver,
                        decision="approved",
                        comment=part.comment,
                        **base,
                        details={
                            "kind": kind,
                            "via": part.via,
                            **self._surface(f"{pending.request_id}:{part.approver}"),
                            **self._proofs.get(f"{pending.request_id}:{part.approver}", {}),
                            "approval": f"{part.approved_by.index(part.approver or '') + 1} of {pending.min_approvals}",
                        },
                    )
                )
                self._recorded.add(f"{pending.request_id}:{part.approver}")
                self.approvals.append(part)
                workflow.set_current_details(
                    pending_markdown(pending, workflow_id=str(base["workflow_id"]), now=workflow.now())
                )
            if self._decision is not None:
                return self._decision
            timeout = pending.expires_at - workflow.now()
            if timeout <= timedelta(0):
                timeout = timedelta(milliseconds=1)

    def _notify(self, workflow_id: str, request: ApprovalRequest) -> None:
        """Tell the chat bridges (``notify_approvers``: the PostgreSQL outbox), without waiting for it: the
        request waits for its decision meanwhile. A failure after the retries is logged and changes nothing else:
        the CLI and Web UI still decide, and a bridge's reconciliation from visibility at its start catches up."""
        handle = workflow.start_activity_method(
            ApprovalActivities.notify_approvers,
            NotifyApproversInput(workflow_id=workflow_id, request=request),
            start_to_close_timeout=NOTIFY_TIMEOUT,
            retry_policy=NOTIFY_RETRY,
            summary=f"notify approvers: {request.kind}",
        )

        def done(task: asyncio.Task[bool]) -> None:
            if not task.cancelled() and task.exception() is not None:
                workflow.logger.warning("notify_approvers failed for %s: %s", request.request_id, task.exception())

        handle.add_done_callback(done)

    def _timed_out(self, kind: ApprovalKind, pending: ApprovalRequest) -> ApprovalRecord:
        return ApprovalRecord(
            request_id=pending.request_id,
            kind=kind,
            step_id=pending.step_id,
            decision="timed_out",
            decided_at=workflow.now(),
            via="timeout",
            approved_by=list(pending.approved_by),
            comment=f"no decision within {self.timeout.total_seconds():g} s"
            + (f" ({len(pending.approved_by)} of {pending.min_approvals} approvals)" if pending.approved_by else ""),
        )

    async def _refused_by_policy(
        self, kind: ApprovalKind, rule: ResolvedApproval, base: dict[str, Any], comment: str, policy: dict[str, object]
    ) -> ApprovalRecord:
        request_id = str(base["request_id"])
        record = ApprovalRecord(
            request_id=request_id,
            kind=kind,
            step_id=str(base["step_id"]),
            decision="rejected",
            decided_at=workflow.now(),
            via="policy",
            comment=rule.refusal or "",
        )
        await audit(
            AuditEvent(
                event_kind="approval_refused",
                event_key=f"approval-refused:{request_id}",
                actor=self.requester,
                comment=rule.refusal or "",
                **base,
                details={"kind": kind, "request": comment, **policy},
            )
        )
        self._decided.add(request_id)
        self.approvals.append(record)
        return record

    def _surface(self, token: str) -> dict[str, str]:
        """``{"surface": ...}`` for the audit details of the decision ``token``, empty for a timeout."""
        return {"surface": self._surfaces[token]} if token in self._surfaces else {}

    def invalid_reason(self, d: Decision) -> str | None:
        """Why ``d`` cannot decide the pending request, or None when it can (messages written for people)."""
        pending = self.pending
        if d.request_id in self._decided or (self._decision and self._decision.request_id == d.request_id):
            return f"request {d.request_id} is already decided"
        if pending is None:
            return "the run is not waiting for an approval"
        if d.request_id != pending.request_id:
            return f"stale or unknown request id {d.request_id} (pending request: {pending.request_id})"
        withdrawing = not d.approved and d.approver == pending.requested_by
        if d.approver not in pending.approvers and not withdrawing:
            return (
                f"{d.approver} is not an approver of this {pending.kind} request (approvers: "
                f"{', '.join(pending.approvers)}; {pending.policy_rule or 'run approvers'})"
            )
        if d.approved and d.approver == pending.requested_by and not pending.allow_self_approval:
            return (
                f"{d.approver} requested this run and may not approve its own {pending.kind} request "
                f"(two-person rule); another approver must decide: {', '.join(pending.approvers)}"
            )
        if d.approved and d.approver in pending.approved_by:  # a rejection (retracting an approval) always counts
            return (
                f"{d.approver} already approved request {d.request_id}; it needs {pending.min_approvals} "
                "different approvers"
            )
        return None

    def _accept(self, d: Decision, via: Literal["update", "signal"]) -> str:
        """Take a valid decision; returns the token the handler waits on until it is audited."""
        pending = self.pending
        assert pending is not None
        self._surfaces[f"{d.request_id}:{d.approver}"] = d.surface or UNSPECIFIED_SURFACE
        record = ApprovalRecord(
            request_id=d.request_id,
            kind=pending.kind,
            step_id=pending.step_id,
            decision="approved" if d.approved else "rejected",
            approver=d.approver,
            comment=d.comment,
            decided_at=workflow.now(),
            via=via,
        )
        if d.approved:
            pending.approved_by.append(d.approver)
            record.approved_by = list(pending.approved_by) if pending.min_approvals > 1 else []
            if len(pending.approved_by) < pending.min_approvals:
                self._partial.append(record)
                return f"{d.request_id}:{d.approver}"
        self._decision = record
        return f"{d.request_id}:{d.approver}"

    async def _refuse(
        self, d: Decision, reason: str, via: Literal["update", "signal"], key: str, check: ProofCheck | None = None
    ) -> None:
        self.refused_total += 1
        self.ignored.append(IgnoredDecision(decision=d, reason=reason, received_at=workflow.now(), via=via))
        del self.ignored[:-MAX_KEPT_REFUSALS]  # a flood of refused decisions must not outgrow the result
        await audit(
            AuditEvent(
                event_kind="decision_refused",
                workflow_id=workflow.info().workflow_id,
                event_key=key,
                request_id=d.request_id,
                actor=d.approver,
                decision="approved" if d.approved else "rejected",
                comment=reason,
                details={
                    "comment": d.comment,
                    "via": via,
                    "surface": d.surface or UNSPECIFIED_SURFACE,
                    **({"identity": self.pending.identity} if self.pending is not None else {}),
                    **(check.audit_details() if check is not None and check.ok else {}),
                    **({"identity": check.mode} if check is not None and not check.ok else {}),
                },
            )
        )

    async def _verified(self, d: Decision, use: str) -> tuple[Decision, ProofCheck | None, str | None]:
        """Check ``d`` against the pending request and, when it carries a proof or the request needs one, verify
        the proof (``verify_proof`` activity, recorded in history). Returns the decision as it counts (its approver
        the proven principal), the check, and the reason it is refused (None when it may be accepted).

        A declared decision on a ``declared`` request calls no activity (histories of runs before proven identity
        replay unchanged)."""
        reason = self.invalid_reason(d)
        pending = self.pending
        if reason is not None or pending is None:
            return d, None, reason
        if d.proof is None and pending.identity != "proven":
            return d, None, self._surface_reason(pending, d.surface or UNSPECIFIED_SURFACE, proven=False)
        check = await workflow.execute_activity_method(
            ApprovalActivities.verify_proof,
            ProofCheckInput(
                proof=d.proof,
                purpose="decision",
                workflow_id=workflow.info().workflow_id,
                request_id=d.request_id,
                action="approve" if d.approved else "reject",
                digest=pending.digest,
                declared=d.approver,
                surface=d.surface,
                use_key=f"{run_key()}:{d.request_id}:{use}",
            ),
            start_to_close_timeout=VERIFY_TIMEOUT,
            retry_policy=VERIFY_RETRY,
            summary=f"verify proof: {d.approver}",
        )
        if not check.ok:
            return d, check, f"identity not proven: {check.reason}"
        proven = d.model_copy(update={"approver": check.principal, "surface": check.surface or d.surface})
        if self.pending is not pending:  # decided or replaced while the proof was checked
            return proven, check, self.invalid_reason(proven) or "the request changed while the proof was checked"
        reason = self.invalid_reason(proven) or self._surface_reason(pending, check.surface, proven=True)
        if reason is None:
            self._proofs[f"{d.request_id}:{check.principal}"] = check.audit_details()
        return proven, check, reason

    @staticmethod
    def _surface_reason(pending: ApprovalRequest, surface: str, *, proven: bool) -> str | None:
        """Why a decision from ``surface`` may not decide ``pending`` (a rule's ``surfaces``), or None."""
        if not pending.surfaces:
            return None
        if not proven:
            return (
                f"{pending.kind} requests may be decided only from {', '.join(pending.surfaces)} with a proof of "
                "identity; a declared decision does not show where it came from"
            )
        if surface not in pending.surfaces:
            return f"{pending.kind} requests may be decided only from {', '.join(pending.surfaces)}, not {surface}"
        return None

    def validate_update(self, d: Decision) -> None:
        """The Update validator: turns a decision away without recording it only once this run has already
        audited ``MAX_HISTORY_REFUSALS`` refused decisions (a flood must not grow the history without bound)."""
        if self.refused_total >= MAX_HISTORY_REFUSALS and self.invalid_reason(d) is not None:
            raise ValueError(
                f"{self.invalid_reason(d)} (this run has refused {self.refused_total} decisions; further invalid "
                "ones are turned away without being recorded)"
            )

    async def decide_update(self, d: Decision) -> ApprovalRecord:
        """The Update handler: accept and return once the decision is audited; a refused decision is audited
        and fails the Update with the reason (``ApplicationError`` type ``DecisionRefused``)."""
        update = workflow.current_update_info()
        use = f"update-{update.id if update else self.refused_total + 1}"
        d, check, reason = await self._verified(d, use)
        if reason is not None:
            await self._refuse(d, reason, "update", f"decision-refused:{run_key()}:{use}", check)
            raise ApplicationError(reason, type="DecisionRefused", non_retryable=True)
        token = self._accept(d, "update")
        await workflow.wait_condition(lambda: token in self._recorded)
        return next(a for a in reversed(self.approvals) if f"{a.request_id}:{a.approver}" == token)

    async def decide_signal(self, d: Decision) -> None:
        """The Signal handler: accept a valid decision; record and audit a refused one as ignored."""
        self._signals += 1
        n = self._signals
        if self.refused_total >= MAX_HISTORY_REFUSALS and self.invalid_reason(d) is not None:
            return  # a flood: already in history as a Signal; not audited again (see MAX_HISTORY_REFUSALS)
        d, check, reason = await self._verified(d, f"signal-{n}")
        if reason is None:
            self._accept(d, "signal")
            return
        await self._refuse(d, reason, "signal", f"decision-refused:{run_key()}:signal-{self.refused_total + 1}", check)


def set_run_state(state: RunState, pending: str) -> None:
    """Upsert the run-status and pending-approval search attributes."""
    workflow.upsert_search_attributes([RUN_STATE.value_set(state), PENDING_APPROVAL.value_set(pending)])


class ApprovalHandlers:
    """Mixin giving a workflow the ``decide`` Update and the ``decide_signal`` Signal, both delegating to
    ``self._gate``. One definition for every workflow that asks for approvals, so chat bots and the CLI send
    the same message to any of them."""

    _gate: ApprovalGate

    @workflow.update
    async def decide(self, d: Decision) -> ApprovalRecord:
        """Decide the pending approval; returns once the decision is in the audit table. A refused decision is
        audited and fails the Update with the reason."""
        return await self._gate.decide_update(d)

    @decide.validator
    def _validate_decide(self, d: Decision) -> None:
        self._gate.validate_update(d)

    @workflow.signal
    async def decide_signal(self, d: Decision) -> None:
        """Same as ``decide`` for senders that cannot wait; a refused decision is audited and ignored."""
        await self._gate.decide_signal(d)
