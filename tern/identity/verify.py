"""Checking a proof against what it must state and against the principals of the approval policy.

:func:`check_proof` is pure apart from running ``ssh-keygen`` (SSH proofs) and the OIDC verifier it is given; the
``verify_proof`` activity (``activities/approval.py``) adds single use (a table of used statements in PostgreSQL)
and records the result in the run's history. The checks, in order (the first failure is the reason):

1. a proof is present (``proven`` mode), or the decision is declared (``declared`` mode, no proof);
2. the statement is canonical JSON of the current version (:func:`tern.identity.statement.parse_statement`);
3. it states exactly what is expected: purpose, workflow id, request id, action, digest of the request content;
4. it is current: issued no later than ``CLOCK_SKEW_S`` from now, not expired, valid for at most
   ``MAX_PROOF_LIFETIME_S``;
5. its signer is a principal of the policy, and the signature (SSH) or ID token (OIDC) is that principal's;
6. a person signs for themself (``on_behalf_of`` empty); a service vouches only for a user its ``users`` list names,
   only from its ``surfaces``;
7. the name the sender declared (approver, ``--user``) is the proven principal.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

from tern.identity import ssh
from tern.identity.statement import parse_statement, sha256_hex
from tern.models.identity import IdentityMode, Principal, ProofCheck, ProofCheckInput

CLOCK_SKEW_S = 60.0
"""How far in the future a statement's ``issued_at`` may lie (clocks differ), seconds."""
MAX_PROOF_LIFETIME_S = 86_400.0
"""The longest validity a statement may claim (``expires_at - issued_at``), seconds."""


class OidcIdentityLike(Protocol):
    """What an OIDC verifier returns (``tern.identity.oidc.OidcIdentity``)."""

    user: str
    subject: str
    groups: list[str]


def _refuse(mode: IdentityMode, reason: str) -> ProofCheck:
    return ProofCheck(ok=False, mode=mode, reason=reason)


def check_proof(
    inp: ProofCheckInput,
    *,
    mode: IdentityMode,
    principals: dict[str, Principal],
    now: datetime,
    oidc_verify: Callable[[str], OidcIdentityLike] | None = None,
) -> ProofCheck:
    """Check ``inp.proof`` (see the module docstring for the order of checks).

    Args:
        inp: the proof and what it must state (purpose, workflow id, request id, action, digest, declared name).
        mode: the identity mode in force; in ``declared`` mode a missing proof passes as the declared name, a
            present proof is still checked (a bad proof never counts).
        principals: name -> entry, from the approval policy.
        now: the current time (UTC, timezone-aware).
        oidc_verify: checks an ID token (signature, issuer, audience, expiry) and returns who it names; raises
            ``ValueError`` with the reason. None: OIDC is not configured and OIDC proofs are refused.

    Returns a :class:`ProofCheck`; ``ok`` False with ``reason`` for every refusal (never raises for a bad proof).
    """
    proof = inp.proof
    if proof is None:
        if mode == "proven":
            return _refuse(
                mode,
                f"a proof of identity is required (approval.identity = proven): '{inp.declared}' is only a declared "
                "name; sign with `tern approve/reject/run --key PATH` (SSH) or `tern login` (OIDC)",
            )
        return ProofCheck(ok=True, mode=mode, principal=inp.declared, signer=inp.declared, surface=inp.surface or "")
    try:
        st = parse_statement(proof.statement)
    except ValueError as exc:
        return _refuse(mode, f"malformed statement: {str(exc).splitlines()[0][:200]}")
    expected = {
        "purpose": inp.purpose,
        "workflow_id": inp.workflow_id,
        "request_id": inp.request_id,
        "action": inp.action,
        "digest": inp.digest,
    }
    for name, want in expected.items():
        got = getattr(st, name)
        if got != want:
            what = "the request's content digest" if name == "digest" else name
            return _refuse(mode, f"the proof is for {what} {str(got)[:80]!r}, not {str(want)[:80]!r}")
    if st.issued_at > now + timedelta(seconds=CLOCK_SKEW_S):
        return _refuse(mode, f"the statement is issued in the future ({st.issued_at.isoformat()}; check the clock)")
    if st.expires_at <= now:
        return _refuse(mode, f"the statement expired at {st.expires_at.isoformat()}: sign again")
    if (st.expires_at - st.issued_at).total_seconds() > MAX_PROOF_LIFETIME_S:
        return _refuse(mode, f"the statement claims a validity over {MAX_PROOF_LIFETIME_S:g} s")
    entry = principals.get(st.signer)
    if entry is None:
        return _refuse(mode, f"{st.signer!r} is not a principal of the approval policy")
    groups: list[str] = []
    if proof.scheme == "ssh":
        try:
            key = ssh.verify(proof.statement, proof.signature, st.signer, entry.ssh_keys, inp.purpose)
        except ssh.SshSignatureError as exc:
            return _refuse(mode, str(exc))
    else:
        if oidc_verify is None:
            return _refuse(mode, "an OIDC proof was sent but no OIDC issuer is configured on the worker")
        if entry.kind != "person":
            return _refuse(mode, f"{st.signer} is a service principal: services prove themselves with SSH keys")
        try:
            who = oidc_verify(proof.id_token)
        except ValueError as exc:
            return _refuse(mode, f"the ID token does not verify: {str(exc)[:200]}")
        if entry.oidc_subject is not None and who.subject != entry.oidc_subject:
            return _refuse(mode, f"the ID token's subject is not {st.signer}'s (policy oidc_subject)")
        if entry.oidc_subject is None and who.user != st.signer:
            return _refuse(mode, f"the ID token names {who.user!r}, not {st.signer!r}")
        key, groups = f"oidc:{who.subject}", list(who.groups)
    if entry.kind == "service":
        if not st.on_behalf_of:
            return _refuse(mode, f"service {st.signer} must name the user it acts for (on_behalf_of)")
        if st.on_behalf_of not in entry.users:
            return _refuse(mode, f"service {st.signer} may not act for {st.on_behalf_of!r} (policy users)")
        if st.surface not in entry.surfaces:
            return _refuse(mode, f"service {st.signer} may not speak for surface {st.surface!r} (policy surfaces)")
        principal, kind = st.on_behalf_of, "service"
    else:
        if st.on_behalf_of and st.on_behalf_of != st.signer:
            return _refuse(mode, f"{st.signer} is a person and may sign only for themself, not {st.on_behalf_of!r}")
        principal, kind = st.signer, "person"
    if inp.declared != principal:
        return _refuse(mode, f"declared as {inp.declared!r} but the proof stands for {principal!r}")
    return ProofCheck(
        ok=True,
        mode=mode,
        principal=principal,
        signer=st.signer,
        signer_kind=kind,
        scheme=proof.scheme,
        key=key,
        statement_sha256=sha256_hex(proof.statement),
        surface=st.surface,
        groups=groups,
    )


def oidc_verifier(settings: Any) -> Callable[[str], OidcIdentityLike] | None:
    """An ID-token checker for ``settings``' OIDC issuer (:func:`tern.identity.oidc.verify_id_token`), or None
    when no issuer is configured (OIDC proofs are then refused)."""
    oidc = getattr(settings, "oidc", None)
    if oidc is None or not getattr(oidc, "issuer", None):
        return None
    from tern.identity import oidc as oidc_mod  # imported only where OIDC is configured

    return oidc_mod.verifier_for(oidc)
