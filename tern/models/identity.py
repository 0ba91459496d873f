"""Proven identity: the statement a principal signs, the proof that carries it, and what the worker verified.

A *principal* is a person (proven by an SSH signature or an OIDC ID token) or a service (a chat bridge, the MCP
server, the trigger monitor: proven by its own SSH key, and allowed to vouch only for the users the approval
policy lists for it). A :class:`Proof` travels with a run start (``AgentRunRequest.proof``) or a decision
(``Decision.proof``); the worker checks it in the ``verify_proof`` activity (its result is in the run's history
and in the audit row) before it counts. See :mod:`tern.identity` for the protocol.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

IdentityMode = Literal["declared", "proven"]
"""``declared``: names are taken as typed (the one-person embedded stack); ``proven``: every start and decision
needs a valid proof, and names come from the proof."""

ProofPurpose = Literal["start", "decision"]
StatementAction = Literal["start", "approve", "reject", "freeze", "thaw"]
"""``freeze``/``thaw``: a facility write freeze (:mod:`tern.models.freeze`), purpose ``decision``."""

STATEMENT_VERSION = "tern-proof/1"
MAX_STATEMENT_CHARS = 4_000
MAX_SIGNATURE_CHARS = 8_000
MAX_ID_TOKEN_CHARS = 16_000


class Statement(BaseModel):
    """What a principal signs: one action on one run (and one request), with a digest of what was shown.

    Serialised canonically by :func:`tern.identity.statement.canonical` (JSON, keys sorted, no spaces, ASCII);
    the proof carries that exact text, and the worker refuses a text that is not canonical.

    Fields: ``workflow_id`` the run's Temporal workflow id; ``request_id`` the approval request (empty for a start);
    ``action`` ``start``, ``approve`` or ``reject``; ``digest`` the SHA-256 hex of the request's content
    (:func:`tern.identity.statement.request_digest`) or of the run request (:func:`~.start_digest`); ``signer``
    the principal's name in the policy; ``on_behalf_of`` the Tern user a *service* principal vouches for (empty
    for a person); ``surface`` the front end (``cli``, ``matrix``, ``slack``, ``webhook``, ``mcp``, ``trigger``);
    ``issued_at``/``expires_at`` UTC.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    v: Literal["tern-proof/1"] = "tern-proof/1"
    purpose: ProofPurpose
    workflow_id: str = Field(min_length=1, max_length=1000)
    request_id: str = Field("", max_length=200)
    action: StatementAction
    digest: str = Field(pattern=r"^[0-9a-f]{64}$")
    signer: str = Field(min_length=1, max_length=200)
    on_behalf_of: str = Field("", max_length=200)
    surface: str = Field("cli", max_length=40, pattern=r"^[a-z][a-z0-9_.-]*$")
    issued_at: datetime
    expires_at: datetime


class Principal(BaseModel):
    """A principal as the approval policy lists it (``[principals.NAME]``).

    ``kind`` ``person`` (proves itself with ``ssh_keys`` or, through the facility's sign-on, an ID token whose
    subject is ``oidc_subject``, or whose user claim is the principal's name when ``oidc_subject`` is unset) or
    ``service`` (a bridge, the MCP server, the trigger monitor: proves itself with ``ssh_keys`` and may vouch only for
    the Tern ``users`` listed, only from the ``surfaces`` listed, e.g. ``["matrix"]``).
    """

    model_config = ConfigDict(extra="forbid")
    kind: Literal["person", "service"] = "person"
    ssh_keys: list[str] = []
    oidc_subject: str | None = None
    surfaces: list[str] = []
    users: list[str] = []


class Proof(BaseModel):
    """A signed statement: ``scheme`` ``ssh`` (``signature`` is the armored SSHSIG of ``ssh-keygen -Y sign`` over
    the statement text, namespace ``tern-<purpose>``) or ``oidc`` (``id_token`` is the facility's ID token from
    ``tern login``: the token proves who, the statement says what; an ID token is a bearer credential, so an OIDC
    proof is only as strong as the token cache and the token's lifetime, where an SSH proof signs each statement)."""

    model_config = ConfigDict(extra="forbid")
    scheme: Literal["ssh", "oidc"]
    statement: str = Field(min_length=2, max_length=MAX_STATEMENT_CHARS)
    signature: str = Field("", max_length=MAX_SIGNATURE_CHARS)
    id_token: str = Field("", max_length=MAX_ID_TOKEN_CHARS)


class ProofCheckInput(BaseModel):
    """Input of the ``verify_proof`` activity: the proof and what it must state.

    ``declared`` is the name the sender typed (``Decision.approver`` or ``AgentRunRequest.user``); ``use_key``
    identifies this use of the proof (a retried activity finds its own use and passes; any other use of the same
    signature is a replay).
    """

    proof: Proof | None = None
    purpose: ProofPurpose
    workflow_id: str
    request_id: str = ""
    action: StatementAction
    digest: str
    declared: str
    surface: str | None = None
    use_key: str


class ProofCheck(BaseModel):
    """What the worker found (an activity result, so recorded in history).

    ``ok`` False carries ``reason`` (written for people). On success ``principal`` is the Tern user the proof
    stands for (the person, or the user a service vouched for), ``signer`` who signed (equal to ``principal`` for
    a person), ``signer_kind`` ``person`` or ``service``, ``scheme`` and ``key`` (an SSH key's SHA256 fingerprint
    or the OIDC issuer and subject), ``statement_sha256`` the statement's hash (single use is per statement and
    signature), ``surface`` the signed front end. ``mode`` is the identity mode in force when checked; in
    ``declared`` mode a missing proof passes with ``principal`` = the declared name and ``scheme`` ``declared``.
    """

    ok: bool
    mode: IdentityMode = "declared"
    reason: str = ""
    principal: str = ""
    signer: str = ""
    signer_kind: Literal["person", "service", "declared"] = "declared"
    scheme: Literal["ssh", "oidc", "declared"] = "declared"
    key: str = ""
    statement_sha256: str = ""
    surface: str = ""
    groups: list[str] = []

    def audit_details(self) -> dict[str, object]:
        """The fields an audit row keeps about the proof (no token or signature text)."""
        return {
            "identity": self.mode,
            "proof": {
                "scheme": self.scheme,
                "principal": self.principal,
                "signer": self.signer,
                "signer_kind": self.signer_kind,
                "key": self.key,
                "statement_sha256": self.statement_sha256,
                "surface": self.surface,
            },
        }
