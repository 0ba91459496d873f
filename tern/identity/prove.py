"""Making proofs: what ``tern run``, ``tern ask``, ``tern approve`` and ``tern reject`` (and services) sign.

A proof is an SSH signature (``ssh-keygen -Y sign``) over a canonical :class:`~tern.models.identity.Statement`
naming the run, the request, the action and the digest of what the signer was shown; or an OIDC ID token from
``tern login`` beside the statement. See :mod:`tern.identity.verify` for what the worker checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tern.identity import ssh
from tern.identity.statement import DEFAULT_PROOF_LIFETIME_S, canonical, make_statement, request_digest, start_digest
from tern.models.approval import ApprovalRequest
from tern.models.identity import Principal, Proof, ProofPurpose, Statement, StatementAction


class ProofError(ValueError):
    """A proof could not be made (no key, ssh-keygen failed, the key is nobody's); the message says why."""


def ssh_proof(statement: Statement, key: Path) -> Proof:
    """Sign ``statement`` with the SSH key at ``key``. Raises :class:`ProofError`."""
    text = canonical(statement)
    try:
        return Proof(scheme="ssh", statement=text, signature=ssh.sign(text, key, statement.purpose))
    except ssh.SshSignatureError as exc:
        raise ProofError(str(exc)) from exc


def oidc_proof(statement: Statement, id_token: str) -> Proof:
    """An OIDC proof: the statement with the signer's ID token (``tern login``)."""
    return Proof(scheme="oidc", statement=canonical(statement), id_token=id_token)


def principal_of_key(principals: dict[str, Principal], key: Path) -> str | None:
    """The principal whose ``ssh_keys`` list the public half of ``key``, or None. Raises :class:`ProofError` when
    the public key cannot be read."""
    try:
        public = ssh.public_key_of(key).split()
    except (ssh.SshSignatureError, OSError) as exc:
        raise ProofError(f"cannot read the SSH key {key}: {exc}") from exc
    for name, p in principals.items():
        for listed in p.ssh_keys:
            if listed.split()[:2] == public[:2]:
                return name
    return None


def decision_statement(
    workflow_id: str,
    request: ApprovalRequest,
    approved: bool,
    signer: str,
    *,
    surface: str = "cli",
    on_behalf_of: str = "",
    lifetime_s: float = DEFAULT_PROOF_LIFETIME_S,
) -> Statement:
    """The statement deciding ``request`` of the workflow ``workflow_id`` (the run or its python step). The digest
    is computed here from what the signer was shown, not copied from the request."""
    return make_statement(
        purpose="decision",
        workflow_id=workflow_id,
        request_id=request.request_id,
        action="approve" if approved else "reject",
        digest=request_digest(request),
        signer=signer,
        on_behalf_of=on_behalf_of,
        surface=surface,
        lifetime_s=lifetime_s,
    )


def start_statement(
    workflow_id: str, run_request: object, signer: str, *, surface: str = "cli", on_behalf_of: str = ""
) -> Statement:
    """The statement starting ``run_request`` (an ``AgentRunRequest`` without its proof) as ``workflow_id``."""
    purpose: ProofPurpose = "start"
    return make_statement(
        purpose=purpose,
        workflow_id=workflow_id,
        action="start",
        digest=start_digest(run_request),
        signer=signer,
        on_behalf_of=on_behalf_of,
        surface=surface,
    )


@dataclass
class Signer:
    """Who signs, and with what: ``name`` the principal (a person, or a service with ``on_behalf_of`` the user it
    acts for), ``key`` an SSH key file, or ``id_token`` an OIDC ID token (``tern login``); ``surface`` the front
    end named in every statement. Exactly one of ``key`` and ``id_token``."""

    name: str
    key: Path | None = None
    id_token: str | None = None
    surface: str = "cli"
    on_behalf_of: str = ""

    @property
    def principal(self) -> str:
        """The Tern user the proofs stand for."""
        return self.on_behalf_of or self.name

    def _proof(self, statement: Statement) -> Proof:
        if self.key is not None:
            return ssh_proof(statement, self.key)
        if self.id_token:
            return oidc_proof(statement, self.id_token)
        raise ProofError(f"no SSH key and no ID token to sign as {self.name}")

    def start(self, workflow_id: str, run_request: object) -> Proof:
        """The proof starting ``run_request`` as ``workflow_id``. Raises :class:`ProofError`."""
        return self._proof(
            start_statement(workflow_id, run_request, self.name, surface=self.surface, on_behalf_of=self.on_behalf_of)
        )

    def freeze_change(self, workflow_id: str, change_id: str, action: StatementAction, digest: str) -> Proof:
        """The proof of a facility freeze or thaw (``action``) as change ``change_id`` of the freeze workflow
        ``workflow_id``, naming ``digest`` (:func:`tern.models.freeze.change_digest`). Raises :class:`ProofError`."""
        return self._proof(
            make_statement(
                purpose="decision",
                workflow_id=workflow_id,
                request_id=change_id,
                action=action,
                digest=digest,
                signer=self.name,
                on_behalf_of=self.on_behalf_of,
                surface=self.surface,
            )
        )

    def decide(self, workflow_id: str, request: ApprovalRequest, approved: bool) -> Proof:
        """The proof deciding ``request`` of ``workflow_id``. Raises :class:`ProofError`."""
        return self._proof(
            decision_statement(
                workflow_id, request, approved, self.name, surface=self.surface, on_behalf_of=self.on_behalf_of
            )
        )
