"""Who the CLI signs as: the ``--key`` option of ``tern run``, ``tern ask``, ``tern approve`` and ``tern reject``.

With ``approval.identity = declared`` (the embedded stack) and no ``--key``, names are sent as typed, unsigned.
Otherwise every start and decision is signed (:mod:`tern.identity.prove`): with ``--key PATH`` (an SSH private key,
or a ``.pub`` whose key ``ssh-agent`` holds); without it with the ID token ``tern login`` cached, when an OIDC issuer
is configured, else ``~/.ssh/id_ed25519``. The signer's name is the principal the approval policy lists for the key
(when the CLI can read the policy file); a ``--user``/``--as`` that names someone else exits 2 before anything is
sent: a proven run is recorded as the person who signed it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starters.common import fail
from tern.approval.policy import ApprovalPolicy, ApprovalPolicyError, load_policy
from tern.config import current_user
from tern.identity.prove import ProofError, Signer, principal_of_key
from tern.identity.ssh import default_key


def _policy(settings: Any) -> ApprovalPolicy:
    """The policy file as the CLI can read it (an empty policy without a readable file)."""
    path = settings.approval.policy_path
    if path is None:
        return ApprovalPolicy()
    try:
        return load_policy(Path(path))[0]
    except ApprovalPolicyError:
        return ApprovalPolicy()  # the worker refuses everything under a bad policy; the CLI signs as asked


def _cached_id_token(settings: Any) -> tuple[str, str] | None:
    """``(user, id_token)`` from ``tern login``'s cache for the configured issuer, or None."""
    oidc = getattr(settings, "oidc", None)
    if oidc is None or not getattr(oidc, "issuer", None):
        return None
    from tern.identity import oidc as oidc_mod

    return oidc_mod.cached_identity(oidc)


def cli_signer(settings: Any, *, key: Path | None, declared: str | None, option: str) -> tuple[str, Signer | None]:
    """The name to send and the signer to prove it (None: send the name declared, unsigned).

    Args:
        settings: the CLI's settings (``approval.identity``, ``approval.policy_path``, ``oidc``).
        key: ``--key``, or None.
        declared: ``--user``/``--as`` as typed, or None (then the principal of the key, else your login name).
        option: the option's name for messages (``--user`` or ``--as``).

    Exits 2 (nothing sent) when proven identity is required and nothing can sign, or when the declared name is
    not the key's principal.
    """
    policy = _policy(settings)
    principals = policy.principals
    proven = policy.identity_mode(settings.approval.identity) == "proven"
    if key is None and not proven:
        return (declared if declared is not None else current_user()), None
    if key is None:
        cached = _cached_id_token(settings)
        if cached is not None:
            user, token = cached
            if declared is not None and declared != user:
                fail(f"{option} {declared}: you are signed in as {user} (tern login); a proven name is the signer's")
            return user, Signer(name=user, id_token=token)
        key = default_key()
        if not key.exists():
            fail(
                "approval.identity is proven: sign with --key PATH (an SSH key the approval policy lists for you; "
                f"{key} does not exist) or sign in with `tern login`"
            )
    try:
        owner = principal_of_key(principals, key) if principals else None
    except ProofError as exc:
        fail(str(exc))
    if owner is not None and declared is not None and declared != owner:
        fail(
            f"{option} {declared}: the key {key} is {owner}'s in the approval policy; a proven start or decision is "
            f"recorded as its signer (use {option} {owner}, or the key of {declared})"
        )
    name = owner or (declared if declared is not None else current_user())
    return name, Signer(name=name, key=key)
