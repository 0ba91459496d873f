"""OIDC sign-on: who a person is, proven by an ID token from the facility's identity provider (issue 22).

Four parts, each usable alone:

- :func:`discover` reads the provider's metadata (OpenID Connect Discovery 1.0, section 4:
  ``<issuer>/.well-known/openid-configuration``) into an :class:`OidcProvider`.
- :func:`device_login` runs the OAuth 2.0 Device Authorization Grant (RFC 8628): the console shows a URL and a
  short code, the person signs in on their own phone or laptop, and the console polls the token endpoint until the
  provider answers. It suits a shared control-room console, which never sees the person's password.
- :func:`save_token` and :func:`load_cached_token` keep the ID token per user, issuer and client, in a file only
  that user can read (``$XDG_CACHE_HOME/tern/oidc/``, else ``~/.cache/tern/oidc/``). Only the ID token is kept:
  no access or refresh token is written to disk.
- :func:`verify_id_token` checks an ID token as OpenID Connect Core 1.0 section 3.1.3.7 asks (signature by a key of
  the issuer's JWKS, ``iss``, ``aud``, ``exp``, ``iat``) with PyJWT, and maps two configured claims to the Tern
  user and their groups (:class:`OidcIdentity`). Only RS256 and ES256 signatures count: ``none`` and the HMAC
  algorithms (whose "key" would be public) are refused before any key is looked up.

Every failure raises :class:`OidcError` with a reason that names what failed; malformed input (an issuer URL that is
not https, a blank client id) raises ``ValueError``. Nothing here imports Temporal: the worker calls
:func:`verify_id_token` from an activity, the ``tern login`` command calls the rest.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from tern.models.limits import UserName

ALLOWED_ALGORITHMS = ("RS256", "ES256")
"""The ID token signature algorithms accepted: asymmetric only (OIDC Core 10.1 names RS256 as the default)."""

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
"""The ``grant_type`` of a device access token request (RFC 8628 section 3.4)."""

DEFAULT_SCOPE = "openid profile email groups"
"""Scopes asked for by :func:`device_login`; ``openid`` makes the provider issue an ID token."""

DEFAULT_INTERVAL_S = 5.0
"""Polling interval when the provider names none (RFC 8628 section 3.2: "a reasonable default of 5 seconds")."""

SLOW_DOWN_STEP_S = 5.0
"""Added to the polling interval on each ``slow_down`` answer (RFC 8628 section 3.5)."""

HTTP_TIMEOUT_S = 10.0
"""Timeout of one request to the provider, seconds."""

JWKS_CACHE_S = 300.0
"""How long a fetched JWKS is reused before it is fetched again, seconds."""

JWKS_REFETCH_COOLDOWN_S = 30.0
"""A token naming a ``kid`` not in the cached JWKS makes it fetched again, but at most once per this many seconds
after the last fetch (PyJWKClient's ``cooldown_duration``): tokens with made-up key ids cannot make Tern hammer
the provider. Providers publish a new key in the JWKS before they sign with it, so rotation is not slowed."""

MAX_TOKEN_CHARS = 16384
"""Longest ID token accepted, characters (a real one is 1-4 KB; a bigger one is refused before parsing)."""

EXPIRY_MARGIN_S = 30.0
"""A cached token that expires within this many seconds counts as expired (it would expire in flight)."""

CACHE_VERSION = 1


class OidcError(Exception):
    """An OIDC step failed: the provider is unreachable or answered wrongly, the person denied or let the sign-in
    expire, or a token did not verify. ``reason`` names what failed, in a sentence fit for an operator."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _short(value: object, limit: int = 120) -> str:
    """``repr(value)`` cut to ``limit`` characters: values from a token or a provider shown in an error."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, what: str = "issuer") -> str:
    """Return ``url`` (surrounding whitespace dropped, nothing else changed: an issuer is compared exactly) if it
    is an absolute ``https`` URL (``http`` only on a loopback host, for tests and a provider on the same machine)
    with no query or fragment; raise ``ValueError`` naming ``what`` otherwise. Tokens travel over these URLs, so
    plain ``http`` to another host is refused."""
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"{what} URL is empty")
    parts = urlsplit(url.strip())
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host:
        raise ValueError(f"{what} URL must be an absolute https URL, got {_short(url)}")
    if parts.scheme == "http" and not _is_loopback(host):
        raise ValueError(f"{what} URL must use https (http only on a loopback host), got {_short(url)}")
    if parts.query or parts.fragment:
        raise ValueError(f"{what} URL must have no query or fragment, got {_short(url)}")
    return url.strip()


class OidcProvider(BaseModel):
    """The fields of a provider's discovery document that Tern uses (OpenID Connect Discovery 1.0 section 3;
    ``device_authorization_endpoint`` from RFC 8628 section 4). Other fields are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    issuer: str
    jwks_uri: str
    token_endpoint: str
    device_authorization_endpoint: str | None = None
    id_token_signing_alg_values_supported: list[str] = Field(default_factory=list)


def discover(issuer: str, *, http: httpx.Client | None = None, timeout_s: float = HTTP_TIMEOUT_S) -> OidcProvider:
    """Fetch ``<issuer>/.well-known/openid-configuration`` (OpenID Connect Discovery 1.0 section 4) and return the
    provider's metadata.

    ``issuer`` is the issuer URL (https; http only on loopback). ``http`` is an optional httpx client (its own
    timeout then applies). A trailing ``/`` of the issuer is dropped before the well-known path is appended
    (section 4.1), but the document's ``issuer`` must then be identical to ``issuer`` (section 4.3): it is the exact
    string ID tokens carry as ``iss`` (some providers end it with ``/``). Raises ``ValueError`` for a malformed
    issuer URL, :class:`OidcError` when the provider cannot be reached, answers other than 200 with JSON, lacks a
    required field, names another issuer, serves its endpoints over plain http, or signs ID tokens with none of
    RS256 and ES256."""
    base = check_url(issuer)
    url = base.rstrip("/") + "/.well-known/openid-configuration"
    try:
        if http is None:
            with httpx.Client(timeout=timeout_s) as client:
                resp = client.get(url)
        else:
            resp = http.get(url)
    except httpx.HTTPError as exc:
        raise OidcError(f"issuer {base} is unreachable: {type(exc).__name__}: {exc}") from exc
    if resp.status_code != 200:
        raise OidcError(f"issuer {base} answered HTTP {resp.status_code} for its discovery document {url}")
    try:
        provider = OidcProvider.model_validate(resp.json())
    except ValueError as exc:  # JSONDecodeError and ValidationError are both ValueErrors
        raise OidcError(f"issuer {base} served a discovery document Tern cannot use: {exc}") from exc
    if provider.issuer != base:
        raise OidcError(
            f"discovery document of {base} names another issuer: {_short(provider.issuer)} (set the issuer to "
            "exactly that, if it is the right provider)"
        )
    for name in ("jwks_uri", "token_endpoint", "device_authorization_endpoint"):
        value = getattr(provider, name)
        if value is not None:
            try:
                check_url(value, name)
            except ValueError as exc:
                raise OidcError(f"issuer {base}: {exc}") from exc
    supported = provider.id_token_signing_alg_values_supported
    if supported and not set(supported) & set(ALLOWED_ALGORITHMS):
        raise OidcError(
            f"issuer {base} signs ID tokens with {supported}; Tern accepts only {', '.join(ALLOWED_ALGORITHMS)}"
        )
    return provider


class DeviceAuthorization(BaseModel):
    """The provider's answer to a device authorization request (RFC 8628 section 3.2): what the person must open
    (``verification_uri``, or ``verification_uri_complete`` with the code filled in) and type (``user_code``), how
    long the code lives (``expires_in``, seconds) and how often to poll (``interval``, seconds)."""

    model_config = ConfigDict(extra="ignore")

    device_code: str = Field(min_length=1)
    user_code: str = Field(min_length=1)
    verification_uri: str = Field(min_length=1)
    verification_uri_complete: str | None = None
    expires_in: float = Field(gt=0)
    interval: float = Field(DEFAULT_INTERVAL_S, gt=0)


class TokenResponse(BaseModel):
    """A successful token response (RFC 6749 section 5.1, with OIDC Core 3.1.3.3's ``id_token``). ``expires_in``
    is the access token's lifetime in seconds; the ID token's own expiry is its ``exp`` claim."""

    model_config = ConfigDict(extra="ignore")

    id_token: str = Field(min_length=1)
    access_token: str | None = None
    token_type: str | None = None
    expires_in: float | None = None
    refresh_token: str | None = None
    scope: str | None = None


def _check_client_id(client_id: str) -> str:
    if not isinstance(client_id, str) or not client_id.strip():
        raise ValueError("OIDC client id is empty")
    return client_id.strip()


def _oauth_error(resp: httpx.Response) -> tuple[str, str]:
    """``(error, error_description)`` of an OAuth error response (RFC 6749 section 5.2), ``("", "")`` when the body
    is not one."""
    try:
        body = resp.json()
    except ValueError:
        return "", ""
    if not isinstance(body, dict):
        return "", ""
    return str(body.get("error") or ""), str(body.get("error_description") or "")


def device_login(
    provider: OidcProvider,
    client_id: str,
    scope: str = DEFAULT_SCOPE,
    *,
    on_prompt: Callable[[DeviceAuthorization], None],
    timeout_s: float = 600.0,
    http: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> TokenResponse:
    """Sign a person in with the OAuth 2.0 Device Authorization Grant (RFC 8628) and return the token response.

    1. POST ``client_id`` and ``scope`` to the provider's ``device_authorization_endpoint`` (section 3.1).
    2. Call ``on_prompt`` with the :class:`DeviceAuthorization` (section 3.2): it shows the person the
       verification URI and user code (section 3.3).
    3. Poll the ``token_endpoint`` with the device code (section 3.4), waiting ``interval`` seconds (default 5)
       before each request through ``sleep``. Answers (section 3.5): ``authorization_pending`` keeps polling;
       ``slow_down`` adds 5 seconds to the interval for this and every later request; ``access_denied`` and
       ``expired_token`` end the login; a connection timeout doubles the interval (section 3.5) and polls on.

    ``timeout_s`` bounds the whole wait in seconds (the code's own ``expires_in`` may end it sooner). ``http`` is an
    optional httpx client; ``sleep`` waits the given seconds (tests pass one that records the intervals).

    Raises ``ValueError`` for an empty client id, :class:`OidcError` when the provider has no device authorization
    endpoint, cannot be reached, refuses the client, the person denies (``access_denied``), the code expires
    (``expired_token``, or no answer before ``expires_in``/``timeout_s``), or the answer carries no ``id_token``.
    """
    client_id = _check_client_id(client_id)
    if not provider.device_authorization_endpoint:
        raise OidcError(f"issuer {provider.issuer} offers no device authorization endpoint (RFC 8628)")
    own = http is None
    client = httpx.Client(timeout=HTTP_TIMEOUT_S) if http is None else http
    try:
        return _device_login(provider, client_id, scope, on_prompt, timeout_s, client, sleep)
    finally:
        if own:
            client.close()


def _device_login(
    provider: OidcProvider,
    client_id: str,
    scope: str,
    on_prompt: Callable[[DeviceAuthorization], None],
    timeout_s: float,
    client: httpx.Client,
    sleep: Callable[[float], None],
) -> TokenResponse:
    assert provider.device_authorization_endpoint is not None
    try:
        resp = client.post(provider.device_authorization_endpoint, data={"client_id": client_id, "scope": scope})
    except httpx.HTTPError as exc:
        raise OidcError(f"issuer {provider.issuer} is unreachable: {type(exc).__name__}: {exc}") from exc
    if resp.status_code != 200:
        error, description = _oauth_error(resp)
        raise OidcError(
            f"device authorization refused by {provider.issuer} (HTTP {resp.status_code}"
            f"{', ' + error if error else ''}{': ' + description if description else ''})"
        )
    try:
        grant = DeviceAuthorization.model_validate(resp.json())
    except ValueError as exc:
        raise OidcError(f"issuer {provider.issuer} sent a device authorization Tern cannot use: {exc}") from exc
    on_prompt(grant)
    deadline = time.monotonic() + min(timeout_s, grant.expires_in)
    interval = grant.interval
    form = {"grant_type": DEVICE_CODE_GRANT, "device_code": grant.device_code, "client_id": client_id}
    while True:
        if time.monotonic() + interval > deadline:
            raise OidcError(f"the sign-in code {grant.user_code} expired before it was approved")
        sleep(interval)
        try:
            resp = client.post(provider.token_endpoint, data=form)
        except httpx.TimeoutException:
            interval *= 2  # RFC 8628 section 3.5: back off on connection timeouts
            continue
        except httpx.HTTPError as exc:
            raise OidcError(f"issuer {provider.issuer} is unreachable: {type(exc).__name__}: {exc}") from exc
        if resp.status_code == 200:
            try:
                return TokenResponse.model_validate(resp.json())
            except ValueError as exc:
                raise OidcError(f"token response of {provider.issuer} has no usable id_token: {exc}") from exc
        error, description = _oauth_error(resp)
        detail = f": {description}" if description else ""
        if error == "authorization_pending":
            continue
        if error == "slow_down":
            interval += SLOW_DOWN_STEP_S
            continue
        if error == "access_denied":
            raise OidcError(f"sign-in denied (access_denied){detail}")
        if error == "expired_token":
            raise OidcError(f"the sign-in code {grant.user_code} expired before it was approved (expired_token)")
        raise OidcError(
            f"token endpoint of {provider.issuer} answered HTTP {resp.status_code} {error or '(no error code)'}{detail}"
        )


# --- the per-user token cache ---------------------------------------------------------------------------------
def cache_dir() -> Path:
    """The directory of cached ID tokens: ``$XDG_CACHE_HOME/tern/oidc`` (XDG Base Directory), else
    ``~/.cache/tern/oidc``."""
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".cache"
    return root / "tern" / "oidc"


def token_cache_path(issuer: str, client_id: str, directory: Path | None = None) -> Path:
    """The cache file of one issuer and client: ``<cache_dir()>/<sha256 of issuer and client id, 32 hex>.json``."""
    key = f"{check_url(issuer)}\n{_check_client_id(client_id)}".encode()
    return (directory or cache_dir()) / f"{hashlib.sha256(key).hexdigest()[:32]}.json"


def _token_expiry(id_token: str, fallback_s: float | None) -> float:
    """The ID token's ``exp`` (seconds since the epoch), read without verification (it only decides when the cache
    stops offering the token; :func:`verify_id_token` checks it for real); else now + ``fallback_s``."""
    try:
        exp = jwt.decode(id_token, options={"verify_signature": False}).get("exp")
    except jwt.InvalidTokenError as exc:
        raise OidcError(f"the ID token is not a JWT: {exc}") from exc
    if isinstance(exp, int | float):
        return float(exp)
    if fallback_s is not None:
        return time.time() + fallback_s
    raise OidcError("the ID token has no exp claim")


def save_token(issuer: str, client_id: str, tokens: TokenResponse, directory: Path | None = None) -> Path:
    """Write ``tokens.id_token`` to the cache file of ``issuer`` and ``client_id`` (:func:`token_cache_path`) and
    return its path. The directory is created 0700 and the file 0600, atomically (written to a new file that
    ``tempfile.mkstemp`` opens with ``O_EXCL`` and mode 0600, then renamed over the old one). Raises
    :class:`OidcError` when the token is not a JWT with an expiry, ``OSError`` when the file cannot be written."""
    path = token_cache_path(issuer, client_id, directory)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    record = {
        "version": CACHE_VERSION,
        "issuer": check_url(issuer),
        "client_id": client_id,
        "id_token": tokens.id_token,
        "expires_at": _token_expiry(tokens.id_token, tokens.expires_in),
        "obtained_at": time.time(),
    }
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # O_EXCL, mode 0600
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(record, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def load_cached_token(issuer: str, client_id: str, directory: Path | None = None) -> str | None:
    """The cached ID token of ``issuer`` and ``client_id``, or None when there is none or it expires within
    ``EXPIRY_MARGIN_S``. The token is not verified here (:func:`verify_id_token` does that). Raises
    :class:`OidcError` when the cache file is readable by others than its owner (a leaked token is refused, not
    used) or is not a cache record of this issuer and client."""
    path = token_cache_path(issuer, client_id, directory)
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except FileNotFoundError:
        return None
    if mode & 0o077:
        raise OidcError(f"token cache {path} is readable by others (mode {oct(mode & 0o777)}): delete it and log in")
    try:
        record = json.loads(text)
        if record["issuer"] != check_url(issuer) or record["client_id"] != client_id:
            raise ValueError("it belongs to another issuer or client")
        token, expires_at = str(record["id_token"]), float(record["expires_at"])
    except (ValueError, KeyError, TypeError) as exc:
        raise OidcError(f"token cache {path} is damaged ({exc}): delete it and log in") from exc
    if expires_at <= time.time() + EXPIRY_MARGIN_S:
        return None
    return token


# --- verification ----------------------------------------------------------------------------------------------
class OidcIdentity(BaseModel):
    """A verified ID token: the Tern ``user`` (the configured user claim), their ``groups`` (the groups claim,
    empty when absent), the provider's ``subject`` (``sub``) and ``issuer``, when the token expires
    (``expires_at``, UTC) and all its ``claims``."""

    user: str
    groups: list[str]
    subject: str
    issuer: str
    expires_at: datetime
    claims: dict[str, Any]


@lru_cache(maxsize=32)
def _jwks_client(jwks_uri: str) -> jwt.PyJWKClient:
    """One PyJWKClient per JWKS URI, so keys are fetched once per ``JWKS_CACHE_S`` and not per token."""
    return jwt.PyJWKClient(
        jwks_uri,
        ssl_context=httpx.create_ssl_context(),  # the CAs httpx trusts: certifi, or SSL_CERT_FILE / SSL_CERT_DIR
        cache_keys=True,
        lifespan=JWKS_CACHE_S,
        timeout=HTTP_TIMEOUT_S,
        cooldown_duration=JWKS_REFETCH_COOLDOWN_S,
    )


def _signing_key(jwks_uri: str, kid: object) -> jwt.PyJWK:
    try:
        client = _jwks_client(check_url(jwks_uri, "jwks_uri"))
    except ValueError as exc:
        raise OidcError(str(exc)) from exc
    try:
        if kid is None:  # OIDC Core 10.1: a kid may be left out only when the JWKS holds one key
            keys = client.get_signing_keys()
            if len(keys) != 1:
                raise OidcError(f"the token names no key (kid) and the JWKS at {jwks_uri} holds {len(keys)} keys")
            return keys[0]
        if not isinstance(kid, str):
            raise OidcError(f"the token's key id (kid) is not a string: {_short(kid)}")
        return client.get_signing_key(kid)
    except jwt.PyJWKClientConnectionError as exc:
        raise OidcError(f"the issuer's JWKS at {jwks_uri} is unreachable: {exc}") from exc
    except jwt.PyJWKClientError as exc:
        raise OidcError(f"the token's key {_short(kid)} is not in the issuer's JWKS at {jwks_uri} ({exc})") from exc


_USER = TypeAdapter(UserName)


def verify_id_token(
    token: str,
    *,
    issuer: str,
    audience: str,
    jwks_uri: str,
    leeway_s: float = 30.0,
    user_claim: str = "preferred_username",
    groups_claim: str = "groups",
    authorized_party: str | None = None,
) -> OidcIdentity:
    """Verify an ID token (OpenID Connect Core 1.0 section 3.1.3.7) and return who it names.

    ``token`` is the compact JWS; ``issuer`` the exact ``iss`` expected; ``audience`` the value ``aud`` must hold
    (the client id unless configured otherwise); ``jwks_uri`` the issuer's key set (from :func:`discover`; fetched
    through a cached ``jwt.PyJWKClient``); ``leeway_s`` the clock skew allowed on ``exp`` and ``iat``, seconds.
    Checked, in order: the header's ``alg`` is RS256 or ES256 (``none`` and HS* are refused before any key is
    used), the ``kid`` names a key of the JWKS for that algorithm, the signature, the presence of ``iss``, ``aud``,
    ``exp``, ``iat`` and ``sub``, then their values. ``user_claim`` must be a non-blank string of at most
    ``MAX_USER_CHARS`` characters; ``groups_claim``, if present, a list of strings. ``authorized_party`` (Tern's
    client id): a token that names another ``azp`` (issued to another application that put Tern in its audience)
    is refused (section 3.1.3.7 items 4-5); None skips that check.

    Raises :class:`OidcError` whose reason names the first check that failed."""
    if not isinstance(token, str) or not token:
        raise OidcError("no ID token given")
    if len(token) > MAX_TOKEN_CHARS:
        raise OidcError(f"the ID token is {len(token)} characters, more than {MAX_TOKEN_CHARS}")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        raise OidcError(f"the ID token is not a JWT: {exc}") from exc
    alg = header.get("alg")
    if alg not in ALLOWED_ALGORITHMS:
        raise OidcError(f"signature algorithm {_short(alg)} is refused: only {', '.join(ALLOWED_ALGORITHMS)} count")
    key = _signing_key(jwks_uri, header.get("kid"))
    if key.algorithm_name != alg:
        raise OidcError(
            f"the token says {alg} but the issuer's key {_short(header.get('kid'))} is {key.algorithm_name}"
        )
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[alg],
            audience=audience,
            issuer=issuer,
            leeway=leeway_s,
            options={"require": ["iss", "aud", "exp", "iat", "sub"]},
        )
    except jwt.InvalidTokenError as exc:
        raise OidcError(_decode_reason(exc, token, issuer=issuer, audience=audience)) from exc
    azp = claims.get("azp")
    if authorized_party is not None and azp is not None and azp != authorized_party:
        raise OidcError(f"the ID token was issued to another client (azp {_short(azp)}, not {authorized_party!r})")
    user = claims.get(user_claim)
    try:
        user = _USER.validate_python(user)
    except ValidationError as exc:
        raise OidcError(
            f"claim {user_claim!r} (the Tern user) is missing or not a valid user name: {_short(user)}"
        ) from exc
    groups = claims.get(groups_claim, [])
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise OidcError(f"claim {groups_claim!r} (the groups) is not a list of strings: {_short(groups)}")
    subject = claims["sub"]
    if not isinstance(subject, str) or not subject:
        raise OidcError(f"claim 'sub' is not a non-empty string: {_short(subject)}")
    return OidcIdentity(
        user=user,
        groups=groups,
        subject=subject,
        issuer=claims["iss"],
        expires_at=datetime.fromtimestamp(float(claims["exp"]), UTC),
        claims=claims,
    )


def _decode_reason(exc: jwt.InvalidTokenError, token: str, *, issuer: str, audience: str) -> str:
    """A sentence naming what ``jwt.decode`` refused, with the token's offending value (read unverified)."""
    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        unverified = {}
    if isinstance(exc, jwt.InvalidSignatureError):
        return "the ID token's signature does not verify with the issuer's key"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"the ID token lacks the required claim {exc.claim!r}"
    if isinstance(exc, jwt.ExpiredSignatureError):
        exp = unverified.get("exp")
        when = datetime.fromtimestamp(float(exp), UTC).isoformat() if isinstance(exp, int | float) else _short(exp)
        return f"the ID token expired at {when}"
    if isinstance(exc, jwt.InvalidIssuerError):
        return f"the ID token's issuer {_short(unverified.get('iss'))} is not {issuer!r}"
    if isinstance(exc, jwt.InvalidAudienceError):
        return f"the ID token's audience {_short(unverified.get('aud'))} does not include {audience!r}"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return f"the ID token is not valid yet ({exc}: iat or nbf lies in the future)"
    return f"the ID token is invalid: {type(exc).__name__}: {exc}"


# --- wiring for proofs (tern.identity.verify, starters.proofs) ------------------------------------------------
@lru_cache(maxsize=8)
def _provider(issuer: str) -> OidcProvider:
    return discover(issuer)


def verifier_for(settings: Any) -> Callable[[str], OidcIdentity]:
    """An ID-token checker for the ``oidc`` settings section (issuer, client_id, audience, user and groups
    claims): the provider's metadata is discovered once per issuer; each call verifies one token against the
    discovered issuer and JWKS with ``authorized_party`` = the client id. Raises ``ValueError`` with the reason
    (what :func:`tern.identity.verify.check_proof` expects)."""

    def verify(token: str) -> OidcIdentity:
        try:
            provider = _provider(settings.issuer)
            return verify_id_token(
                token,
                issuer=provider.issuer,
                audience=settings.audience or settings.client_id,
                jwks_uri=provider.jwks_uri,
                user_claim=settings.user_claim,
                groups_claim=settings.groups_claim,
                authorized_party=settings.client_id,
            )
        except OidcError as exc:
            raise ValueError(exc.reason) from exc

    return verify


def cached_identity(settings: Any) -> tuple[str, str] | None:
    """``(user, id_token)`` from ``tern login``'s cache for the ``oidc`` settings section, or None when nothing
    valid is cached. The user is read from the token without verifying it (the worker verifies every proof)."""
    if not settings.issuer or not settings.client_id:
        return None
    token = load_cached_token(settings.issuer, settings.client_id)
    if token is None:
        return None
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return None
    user = claims.get(settings.user_claim)
    return (user, token) if isinstance(user, str) and user else None
