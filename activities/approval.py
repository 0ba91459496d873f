"""The ``resolve_approval`` activity: the worker's approval policy applied to one request.

The policy lives on the worker side (``TERN_APPROVAL__POLICY_PATH`` or ``TERN_APPROVAL__APPROVERS``), is re-read when
its file changes, and every version in force is written to the audit table once (run id
``approval-policy``, event ``approval_policy``, keyed by version), so an auditor can tell which policy
named the approvers of any request (each ``approval_requested`` row carries the version).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
from temporalio import activity

from tern.approval.policy import ApprovalPolicy, ApprovalPolicyError, PolicySource
from tern.audit.store import record_event
from tern.chat.signing import signed_headers, target_of
from tern.chat.store import add_request
from tern.config import TernSettings
from tern.identity.uses import claim_use
from tern.identity.verify import OidcIdentityLike, check_proof, oidc_verifier
from tern.models import AuditEvent
from tern.models.approval import ApprovalResolveInput, NotifyApproversInput, ResolvedApproval
from tern.models.identity import ProofCheck, ProofCheckInput

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
        self.settings = settings
        self._pool = pool
        self._audited: set[str] = set()

    def all(self) -> list[Callable[..., Any]]:
        """The activity callables to register on a worker."""
        return [self.resolve_approval, self.notify_approvers, self.verify_proof]

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
            identity=self.settings.approval.identity,
        ).model_copy(update={"write_by_s": self.settings.approval.write_by_s})

    @activity.defn(name="verify_proof")
    async def verify_proof(self, inp: ProofCheckInput) -> ProofCheck:
        """Check the proof of a run start or a decision (:func:`tern.identity.verify.check_proof`) against the
        policy's principals and the identity mode in force, then claim the statement's single use
        (:func:`tern.identity.uses.claim_use`). A bad proof is a result (``ok`` False, with the reason), never an
        error: the workflow audits the refusal. An invalid policy file refuses every proof (fail closed)."""
        try:
            policy, _ = await self.current()
        except ApprovalPolicyError as exc:
            if inp.proof is None and self.settings.approval.identity == "declared":
                # declared: the name passes as before; every approval request of the run is refused by the same
                # invalid policy (resolve_approval), so nothing can be decided
                return ProofCheck(ok=True, mode="declared", principal=inp.declared, signer=inp.declared)
            return ProofCheck(ok=False, mode="proven", reason=f"all proofs refused: {exc}")
        mode = policy.identity_mode(self.settings.approval.identity)
        oidc = self._oidc_verifier()
        check = await asyncio.to_thread(
            check_proof, inp, mode=mode, principals=policy.principals, now=datetime.now(UTC), oidc_verify=oidc
        )
        if not check.ok or not check.statement_sha256:
            return check
        pool = await self._pool()
        async with pool.acquire() as conn:
            first = await claim_use(
                conn,
                check.statement_sha256,
                inp.use_key,
                workflow_id=inp.workflow_id,
                request_id=inp.request_id,
                principal=check.principal,
            )
        if not first:
            return ProofCheck(ok=False, mode=mode, reason="this proof was already used (a replayed statement)")
        return check

    def _oidc_verifier(self) -> Callable[[str], OidcIdentityLike] | None:
        """The ID-token verifier for the configured issuer, or None when OIDC is not configured."""
        return oidc_verifier(self.settings)

    @activity.defn(name="notify_approvers")
    async def notify_approvers(self, inp: NotifyApproversInput) -> bool:
        """Put the waiting request in the chat outbox (``chat_requests``, ``NOTIFY tern_chat_requests``), from
        which every chat bridge posts its card, then POST it to each ``webhook_notify_urls`` signed with
        ``webhook_notify_secret`` under key id ``webhook_notify_key_id`` (:mod:`tern.chat.signing`, ``v2``: the
        signature covers the method and each URL's own path, so a receiver verifies with its path, and the
        notification secret is never accepted by Tern, so a receiver cannot replay a notification to Tern as a
        decision or trigger). Idempotent per request id (receivers may get a request more than once and dedupe by
        ``request.request_id``); returns False when the outbox had it.

        Raises ``RuntimeError`` naming the URL when a receiver does not answer 2xx: the activity is retried
        with backoff (the gate's ``NOTIFY_RETRY``), the outbox row is not written twice."""
        pool = await self._pool()
        async with pool.acquire() as conn:
            new = await add_request(conn, inp.workflow_id, inp.request)
        s = self.settings
        if s.chat.webhook_notify_urls and s.chat.webhook_notify_secret is not None:
            body = json.dumps(
                {
                    "event": "approval_requested",
                    "run_id": inp.workflow_id,
                    "decision_path": f"/approvals/{inp.request.request_id}/decision",
                    "request": inp.request.model_dump(mode="json"),
                }
            ).encode()
            secret = s.chat.webhook_notify_secret.get_secret_value()
            async with httpx.AsyncClient(timeout=10) as http:
                for url in s.chat.webhook_notify_urls:
                    headers = {
                        "Content-Type": "application/json",
                        **signed_headers(s.chat.webhook_notify_key_id, secret, body, target=target_of(url)),
                    }
                    try:
                        resp = await http.post(url, content=body, headers=headers)
                    except httpx.HTTPError as exc:
                        raise RuntimeError(f"notifying {url} failed: {exc}") from exc
                    if not resp.is_success:
                        raise RuntimeError(f"notifying {url} failed: HTTP {resp.status_code}")
        return new
