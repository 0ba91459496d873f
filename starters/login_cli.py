"""``tern login``: sign in with the facility's identity provider (OIDC device flow, RFC 8628; issue 22).

The person runs ``tern login`` on any console (a shared control-room one included), opens the printed URL on their
own phone or laptop, enters the code and signs in there; the console receives an ID token, verifies it against the
issuer's keys and caches it for this user (:mod:`tern.identity.oidc`). ``tern login --status`` shows who the cached
token names. The issuer and client come from ``--issuer``/``--client-id`` or the ``oidc`` settings
(``TERN_OIDC__ISSUER``, ``TERN_OIDC__CLIENT_ID``).

Exit statuses: 0 signed in; 1 the provider is unreachable or refused, the person denied, the code expired, the token
did not verify, or (``--status``) no valid cached token; 2 bad input (no issuer or client id, a malformed URL).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from starters.common import console, err, fail, load_settings, print_json

if TYPE_CHECKING:
    from tern.identity.oidc import DeviceAuthorization, OidcIdentity


def _identity_json(identity: OidcIdentity, issuer: str, cache: str) -> dict[str, Any]:
    return {
        "user": identity.user,
        "groups": identity.groups,
        "subject": identity.subject,
        "issuer": issuer,
        "expires_at": identity.expires_at.isoformat(),
        "token_cache": cache,
    }


def _prompt(grant: DeviceAuthorization) -> None:
    """Show the person where to sign in (RFC 8628 section 3.3), on stderr so ``--json`` output stays clean."""
    err.print(f"To sign in, open {grant.verification_uri} and enter the code {grant.user_code}", markup=False)
    if grant.verification_uri_complete:
        err.print(f"(or open {grant.verification_uri_complete})", markup=False)
    err.print(f"Waiting for the sign-in (the code expires in {int(grant.expires_in)} s)...", markup=False)


def login(
    issuer: Annotated[
        str | None, typer.Option(help="Issuer URL of the identity provider; default: the oidc.issuer setting.")
    ] = None,
    client_id: Annotated[
        str | None, typer.Option(help="OAuth client id of Tern there; default: the oidc.client_id setting.")
    ] = None,
    status: Annotated[
        bool, typer.Option("--status", help="Show who the cached token names instead of signing in.")
    ] = False,
    timeout: Annotated[
        float, typer.Option(min=1, help="Longest wait for the sign-in, seconds (the provider's code may expire first).")
    ] = 600.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the identity as JSON.")] = False,
) -> None:
    """Sign in with the facility's single sign-on: prints a URL and a code (open it on your phone), waits for the
    sign-in, verifies the ID token and caches it for you (0600, under ~/.cache/tern/oidc). Prints who you are:
    user, groups, expiry. --status shows the cached identity (exit 1 when there is none or it expired)."""
    from tern.identity.oidc import (
        OidcError,
        check_url,
        device_login,
        discover,
        load_cached_token,
        save_token,
        token_cache_path,
        verify_id_token,
    )

    s = load_settings().oidc
    issuer = issuer if issuer is not None else s.issuer
    client_id = client_id if client_id is not None else s.client_id
    if not issuer:
        fail("no OIDC issuer: give --issuer or set TERN_OIDC__ISSUER (oidc.issuer)")
    if not client_id or not client_id.strip():
        fail("no OIDC client id: give --client-id or set TERN_OIDC__CLIENT_ID (oidc.client_id)")
    try:
        issuer = check_url(issuer)
    except ValueError as exc:
        fail(str(exc))
    audience = s.audience or client_id
    tokens = None
    try:
        provider = discover(issuer)
        if status:
            token = load_cached_token(issuer, client_id)
            if token is None:
                fail(f"not signed in to {issuer} (no cached token, or it expired): run `tern login`", 1)
        else:
            tokens = device_login(provider, client_id, s.scope, on_prompt=_prompt, timeout_s=timeout)
            token = tokens.id_token
        identity = verify_id_token(
            token,
            issuer=provider.issuer,
            audience=audience,
            jwks_uri=provider.jwks_uri,
            user_claim=s.user_claim,
            groups_claim=s.groups_claim,
            authorized_party=client_id,
        )
        # verified before it is cached: a token that would not count is never offered later
        cache = str(save_token(issuer, client_id, tokens) if tokens else token_cache_path(issuer, client_id))
    except OidcError as exc:
        fail(exc.reason, 1)
    except OSError as exc:
        fail(f"cannot write the token cache: {exc}", 1)
    if as_json:
        print_json(_identity_json(identity, provider.issuer, cache))
        return
    out = console()
    groups = ", ".join(identity.groups) or "(none)"
    out.print(f"Signed in as {identity.user} (groups: {groups}) at {provider.issuer}", markup=False, highlight=False)
    out.print(f"token expires {identity.expires_at:%Y-%m-%d %H:%M:%S} UTC", markup=False, highlight=False)
    out.print(f"token cache: {cache}", markup=False, highlight=False)
