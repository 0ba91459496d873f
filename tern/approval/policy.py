"""The worker-side approval policy: who may approve which kind of request, how many approvals it needs, and
whether the requester may approve their own request.

The policy belongs to the worker (its settings or a policy file), never to the run: a run's requested
approvers can only narrow the set the policy allows, and a run's python approval mode can only be stricter
than the policy's. The file is re-read whenever its content changes (hot reload,
checked at every request); every version is identified by the first 12 hex digits of the SHA-256 of its bytes.

Policy file (JSON, TOML or YAML by suffix; ``TERN_APPROVAL__POLICY_PATH``)::

    # tern-approval-policy.toml
    default_approvers = ["alice", "bob", "carol"]   # kinds/channels no rule matches
    python_approval_mode = "all_code"               # the floor: runs may ask stricter, never weaker
    [groups]
    rf = ["alice", "dave"]
    [[rules]]                       # first matching rule wins
    kinds = ["control_write"]
    channels = ["SR:RF:*"]          # fnmatch patterns (case-sensitive) on the channel name
    approvers = ["group:rf"]
    min_approvals = 2               # two different people
    effect_limits = { max_orbit_change_mm = 1.0, max_tune_shift = 0.01, forbid_resonance_order = 3 }  # optional
    [[rules]]
    kinds = ["control_write", "python", "plan", "memory", "logbook", "bluesky"]
    approvers = ["group:rf", "bob", "carol"]
    surfaces = ["cli", "matrix"]    # optional: where these requests may be decided (proven surfaces)
    identity = "proven"             # optional: stricter than the worker's approval.identity, never weaker
    [principals.alice]              # who is who (proven identity, tern/identity)
    ssh_keys = ["ssh-ed25519 AAAA... alice@console"]
    oidc_subject = "8f2c..."        # the facility sign-on's subject (else its user claim must be "alice")
    [principals.matrix-bridge]      # a service: may vouch only for these users, from these surfaces
    kind = "service"
    ssh_keys = ["ssh-ed25519 AAAA... bridge"]
    users = ["alice", "bob"]
    surfaces = ["matrix"]

Effect limits: a ``control_write`` rule's ``effect_limits`` bound the predicted effect on the ring of a magnet write
the rule covers (:class:`tern.models.ring.EffectLimits`; :meth:`ApprovalPolicy.effect_limits_for`); with the limits
database's per-channel ones the stricter holds, and a write that breaks one is refused before approval.

Self-approval: by default the requester may not approve their own ``control_write`` (two-person rule) and may
approve other kinds; ``allow_self_approval`` on a rule or in ``self_approval`` per kind changes that. The
requester may always *reject* their own request (withdrawing it only makes the machine safer).

Identity: ``identity`` is ``declared`` (names as typed; the one-person embedded stack) or ``proven`` (every start
and decision carries a proof checked against ``principals``; see :mod:`tern.identity.verify`). The worker's
``approval.identity`` setting is the floor; the file may only make it stricter. A rule's ``surfaces`` restricts
where its requests may be decided; a proven decision's surface is the one its statement signs.

Without a file, the policy is built from the settings: ``default_approvers`` = ``TERN_APPROVAL__APPROVERS``,
``python_approval_mode`` = ``TERN_APPROVAL__PYTHON_MODE``. When neither a rule nor ``default_approvers``
names anybody for a request, the run's own approver list is used ("open" policy: fit for a single-user
embedded stack, not for a control room; ``tern worker`` warns about it).
"""

from __future__ import annotations

import hashlib
import json
import threading
import tomllib
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tern.identity.ssh import valid_public_key
from tern.models.approval import (
    APPROVAL_KINDS,
    ApprovalKind,
    ApprovalMode,
    ResolvedApproval,
    stricter_mode,
)
from tern.models.identity import IdentityMode, Principal
from tern.models.ring import EffectLimits

GROUP_PREFIX = "group:"
MAX_APPROVALS = 5
SELF_APPROVAL_DEFAULTS: dict[str, bool] = {"control_write": False}


class ApprovalPolicyError(ValueError):
    """The policy file cannot be read or is invalid; the message names the file and the field."""


def _names(values: list[str], what: str) -> list[str]:
    out = [v.strip() for v in values]
    if any(not v for v in out):
        raise ValueError(f"{what} must not contain empty names")
    return out


class ApprovalRule(BaseModel):
    """One rule: for these kinds (and, for ``control_write``, these channel patterns), these approvers.

    ``approvers`` are names or ``group:NAME``. ``min_approvals`` different approvers must approve (1 to 5).
    ``allow_self_approval`` None means the kind's default (see the module docstring).
    """

    model_config = ConfigDict(extra="forbid")
    kinds: list[ApprovalKind] = Field(min_length=1)
    channels: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    approvers: list[str] = Field(min_length=1)
    min_approvals: int = Field(1, ge=1, le=MAX_APPROVALS)
    allow_self_approval: bool | None = None
    surfaces: list[str] = Field(default_factory=list, description="Where these requests may be decided; empty: any.")
    effect_limits: EffectLimits | None = Field(None, description="Limits on a magnet write's predicted effect.")

    _v_approvers = field_validator("approvers")(lambda cls, v: _names(v, "approvers"))
    _v_channels = field_validator("channels")(lambda cls, v: _names(v, "channels"))

    def matches(self, kind: str, channel: str | None) -> bool:
        """True when this rule covers ``kind`` (and ``channel``, for requests that name one)."""
        if kind not in self.kinds:
            return False
        if channel is None:
            return True
        return any(fnmatchcase(channel, pattern) for pattern in self.channels)


class ApprovalPolicy(BaseModel):
    """The whole policy (see the module docstring for the file format)."""

    model_config = ConfigDict(extra="forbid")
    groups: dict[str, list[str]] = {}
    rules: list[ApprovalRule] = []
    default_approvers: list[str] = []
    python_approval_mode: ApprovalMode = "all_code"
    self_approval: dict[ApprovalKind, bool] = {}
    identity: IdentityMode = "declared"
    principals: dict[str, Principal] = {}
    freeze_thaw: list[str] = []  # who may thaw a facility write freeze (names, group:NAME); see may_thaw

    _v_default = field_validator("default_approvers")(lambda cls, v: _names(v, "default_approvers"))

    @field_validator("principals")
    @classmethod
    def _principals_valid(cls, v: dict[str, Principal]) -> dict[str, Principal]:
        for name, p in v.items():
            for n, key in enumerate(p.ssh_keys, start=1):
                if not valid_public_key(key):
                    raise ValueError(f"principals.{name}.ssh_keys[{n}] is not an OpenSSH public key line")
            if p.kind == "service" and not p.ssh_keys:
                raise ValueError(f"principals.{name}: a service principal needs ssh_keys")
            if p.kind == "person" and (p.users or p.surfaces):
                raise ValueError(f"principals.{name}: users and surfaces are for service principals only")
        return v

    @model_validator(mode="after")
    def _groups_known(self) -> ApprovalPolicy:
        for n, rule in enumerate(self.rules, start=1):
            for name in rule.approvers + self.default_approvers + self.freeze_thaw:
                if name.startswith(GROUP_PREFIX) and name[len(GROUP_PREFIX) :] not in self.groups:
                    raise ValueError(f"rules[{n}]: unknown group {name!r} (groups: {', '.join(self.groups) or 'none'})")
            if rule.min_approvals > len(self.expand(rule.approvers)):
                raise ValueError(
                    f"rules[{n}]: min_approvals {rule.min_approvals} exceeds the "
                    f"{len(self.expand(rule.approvers))} approver(s) it names"
                )
        return self

    def may_thaw(self, principal: str) -> bool:
        """Whether ``principal`` may thaw a facility write freeze: one of ``freeze_thaw`` (names or ``group:NAME``)
        when it names anyone; else anyone who may approve something (``default_approvers`` or a rule's approvers);
        else, in an open policy, anyone. Anyone may freeze: stopping writes is always safe."""
        if self.freeze_thaw:
            return principal in self.expand(self.freeze_thaw)
        if self.is_open:
            return True
        return principal in self.expand([*self.default_approvers, *(a for r in self.rules for a in r.approvers)])

    def expand(self, names: list[str]) -> list[str]:
        """Names with ``group:X`` replaced by the group's members; order kept, duplicates dropped."""
        out: list[str] = []
        for name in names:
            members = self.groups.get(name[len(GROUP_PREFIX) :], []) if name.startswith(GROUP_PREFIX) else [name]
            out += [m for m in members if m not in out]
        return out

    def identity_mode(self, worker: IdentityMode) -> IdentityMode:
        """The identity mode in force: the stricter of the worker's ``approval.identity`` and the file's."""
        return "proven" if "proven" in (worker, self.identity) else "declared"

    def effect_limits_for(self, channel: str) -> EffectLimits | None:
        """The effect limits of the first ``control_write`` rule that covers ``channel`` (None: no rule sets any)."""
        for rule in self.rules:
            if rule.matches("control_write", channel):
                return rule.effect_limits
        return None

    @property
    def is_open(self) -> bool:
        """True when nothing names approvers: every run's own list is used."""
        return not self.rules and not self.default_approvers

    def resolve(
        self,
        kind: ApprovalKind,
        *,
        requester: str,
        requested: list[str],
        channel: str | None = None,
        requested_mode: ApprovalMode = "all_code",
        version: str = "",
        identity: IdentityMode = "declared",
    ) -> ResolvedApproval:
        """Who may decide a ``kind`` request (about ``channel``) of a run started by ``requester`` that asked
        for ``requested`` approvers.

        The set is the first matching rule's approvers, else ``default_approvers``, else, only for an open policy
        (no rules, no defaults), the run's ``requested`` list or the requester; with rules and no defaults a
        request no rule covers has nobody. A non-empty ``requested`` list narrows the set (intersection).
        ``refusal`` is set when nobody but the requester remains and self-approval is not allowed, or nobody
        at all remains: such a request can never be approved and is refused at once. ``identity`` is the worker's
        identity mode; the result carries the stricter of it and the file's.
        """
        rule_no, rule = next(((n, r) for n, r in enumerate(self.rules, start=1) if r.matches(kind, channel)), (0, None))
        if rule is not None:
            allowed, source, need = self.expand(rule.approvers), f"rule {rule_no}", rule.min_approvals
            self_ok = rule.allow_self_approval
        elif self.default_approvers:
            allowed, source, need, self_ok = self.expand(self.default_approvers), "default_approvers", 1, None
        elif self.is_open:
            allowed, source, need = (list(requested) or [requester]), "the run's approvers (open policy)", 1
            self_ok = None
        else:  # rules exist but none covers this request: nobody (a run must not name its own approvers)
            allowed, source, need, self_ok = [], "no rule matches and no default_approvers", 1, None
        surfaces = list(rule.surfaces) if rule is not None else []
        if self_ok is None:
            self_ok = self.self_approval.get(kind, SELF_APPROVAL_DEFAULTS.get(kind, True))
        approvers = [a for a in allowed if a in requested] if requested else allowed
        eligible = [a for a in approvers if self_ok or a != requester]
        refusal = None
        if len(eligible) < need:
            why = (
                f"the policy ({source}) allows {', '.join(allowed) or 'nobody'}"
                + (f", the run asked for {', '.join(requested)}" if requested else "")
                + (
                    ""
                    if self_ok or requester not in approvers
                    else f", and {requester} may not approve their own {kind} (two-person rule)"
                )
            )
            refusal = (
                f"no one can approve this {kind} request: it needs {need} approver(s) and {why}"
                + f"; eligible: {', '.join(eligible) or 'none'}"
            )
        return ResolvedApproval(
            approvers=approvers,
            min_approvals=need,
            allow_self_approval=self_ok,
            python_approval_mode=stricter_mode(requested_mode, self.python_approval_mode),
            policy_version=version,
            rule=source,
            refusal=refusal,
            identity=self.identity_mode(identity),
            surfaces=surfaces,
        )


def policy_from_settings(default_approvers: list[str], python_approval_mode: ApprovalMode) -> ApprovalPolicy:
    """The policy used when no file is configured (``TERN_APPROVAL__APPROVERS``, ``TERN_APPROVAL__PYTHON_MODE``)."""
    return ApprovalPolicy(default_approvers=default_approvers, python_approval_mode=python_approval_mode)


def _parse(path: Path, data: bytes) -> dict[str, Any]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApprovalPolicyError(f"approval policy {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    try:
        if path.suffix == ".toml":
            raw: Any = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            raw = yaml.safe_load(text)
        else:
            raw = json.loads(text)
    except (ValueError, yaml.YAMLError, RecursionError) as exc:
        raise ApprovalPolicyError(f"approval policy {path}: cannot parse: {str(exc)[:300]}") from exc
    if not isinstance(raw, dict):
        raise ApprovalPolicyError(f"approval policy {path}: the top level must be a table/object")
    return raw


def load_policy(path: Path) -> tuple[ApprovalPolicy, str]:
    """Read and validate the policy file; returns the policy and its version (SHA-256, 12 hex digits).

    Raises :class:`ApprovalPolicyError` naming the file and the offending field.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ApprovalPolicyError(f"approval policy {path}: cannot read: {exc.strerror or exc}") from exc
    try:
        policy = ApprovalPolicy.model_validate(_parse(Path(path), data))
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ApprovalPolicyError(f"approval policy {path}: {loc}: {first['msg']}") from exc
    return policy, hashlib.sha256(data).hexdigest()[:12]


@dataclass
class PolicySource:
    """Where the worker's policy comes from, re-read when the file changes (thread-safe).

    Args:
        path: the policy file, or None to build the policy from the settings values below.
        default_approvers: ``TERN_APPROVAL__APPROVERS``, used without a file.
        python_approval_mode: ``TERN_APPROVAL__PYTHON_MODE``, used without a file.
    """

    path: Path | None
    default_approvers: list[str]
    python_approval_mode: ApprovalMode

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._digest: str | None = None
        self._cached: tuple[ApprovalPolicy, str] | None = None

    def current(self) -> tuple[ApprovalPolicy, str]:
        """The policy in force and its version. Raises :class:`ApprovalPolicyError` for a bad file (fail closed:
        no request can be approved until it is fixed)."""
        if self.path is None:
            policy = policy_from_settings(self.default_approvers, self.python_approval_mode)
            digest = hashlib.sha256(policy.model_dump_json().encode()).hexdigest()[:12]
            return policy, f"settings-{digest}"
        try:  # the content decides, not the modification time (a copy with its mtime kept is still re-read)
            digest = hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError as exc:
            raise ApprovalPolicyError(f"approval policy {self.path}: cannot read: {exc.strerror or exc}") from exc
        with self._lock:
            if self._cached is None or digest != self._digest:
                self._cached, self._digest = load_policy(self.path), digest
            return self._cached


__all__ = [
    "APPROVAL_KINDS",
    "ApprovalPolicy",
    "ApprovalPolicyError",
    "ApprovalRule",
    "PolicySource",
    "load_policy",
    "policy_from_settings",
]
