"""The ``resolve_approval`` activity: the worker's approval policy applied to one request.

The policy lives on the worker side (``TERN_APPROVAL_POLICY_PATH`` or ``TERN_APPROVERS``), is re-read when
its file changes, and every version in force is written to the audit table once (run id
``approval-policy``, event ``approval_policy``, keyed by version), so an auditor can tell which policy
named the approvers of any request (each ``approval_requested`` row carries the version).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from temporalio import activity

from tern.approval.policy import ApprovalPolicy, ApprovalPolicyError, PolicySource
from tern.audit.store import record_event
from tern.config import TernSettings
from tern.models import AuditEvent
from tern.models.approval import ApprovalResolveInput, ResolvedApproval

POLICY_AUDIT_RUN_ID = "approval-policy"


def policy_source(settings: TernSettings) -> PolicySource:
    """The worker's policy source for ``settings``."""
    return PolicySource(settings.approval.policy_path, list(settings.approval.approvers), settings.approval.python_mode)


class ApprovalActivities:
    """Approval-policy activities, bound to the worker's settings and a PostgreSQL pool getter.

    Args:
        settings: the worker's settings (policy path, default approvers, python approval mode floor).
        pool: an async callable returning the worker's asyncpg pool (shared with the other activities).
    """

    def __init__(self, settings: TernSettings, pool: Callable[[], Awaitable[asyncpg.Pool]]) -> None:
        self.source = policy_source(settings)
        self._pool = pool
        self._audited: set[str] = set()

    def all(self) -> list[Callable[..., Any]]:
        """The activity callables to register on a worker."""
        return [self.resolve_approval]

    async def current(self) -> tuple[ApprovalPolicy, str]:
        """The policy in force and its version, audited once per version.

        Raises :class:`ApprovalPolicyError` when the policy file is unreadable or invalid."""
        policy, version = self.source.current()
        if version not in self._audited:
            details = {
                "version": version,
                "path": str(self.source.path) if self.source.path else None,
                **policy.model_dump(mode="json"),
            }
            pool = await self._pool()
            async with pool.acquire() as conn:
                await record_event(
                    conn,
                    AuditEvent(
                        event_kind="approval_policy",
                        workflow_id=POLICY_AUDIT_RUN_ID,
                        event_key=f"policy:{version}",
                        actor="worker",
                        comment=f"approval policy {version} in force"
                        + (" (open: runs name their own approvers)" if policy.is_open else ""),
                        details=details,
                    ),
                )
            self._audited.add(version)
        return policy, version

    @activity.defn(name="resolve_approval")
    async def resolve_approval(self, inp: ApprovalResolveInput) -> ResolvedApproval:
        """Apply the policy in force to one request. An invalid policy file refuses the request (fail closed)."""
        try:
            policy, version = await self.current()
        except ApprovalPolicyError as exc:
            return ResolvedApproval(
                approvers=[],
                min_approvals=1,
                allow_self_approval=False,
                python_approval_mode="all_code",
                policy_version="invalid",
                rule="invalid policy",
                refusal=f"all approvals blocked: {exc}",
            )
        return policy.resolve(
            inp.kind,
            requester=inp.requester,
            requested=inp.requested_approvers,
            channel=inp.channel,
            requested_mode=inp.requested_mode,
            version=version,
        )
