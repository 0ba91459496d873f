"""OIDC sign-on against a real local issuer (tests/identity/oidc_issuer.py): discovery, the RFC 8628 device flow
(pending, slow_down, approved, denied, expired), the 0600 token cache, ID token verification and its refusals, and
`tern login` run as a subprocess."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tern.embedded.net import free_port
from tern.identity import oidc
from tern.identity.oidc import (
    DeviceAuthorization,
    OidcError,
    TokenResponse,
    device_login,
    discover,
    load_cached_token,
    save_token,
    token_cache_path,
    verify_id_token,
)
from tests.conftest import env_without_services
from tests.identity.oidc_issuer import LocalIssuer, new_rsa_key

ROOT = Path(__file__).resolve().parent.parent.parent


def _verify(issuer: LocalIssuer, token: str, **kw: object):
    args: dict = {"issuer": issuer.url, "audience": issuer.client_id, "jwks_uri": issuer.jwks_uri, **kw}
    return verify_id_token(token, **args)


def _never(*args: object) -> None:
    pytest.fail(f"called with {args}")


# --- discovery -------------------------------------------------------------------------------------------------
def test_discover_reads_the_providers_metadata(oidc_issuer: LocalIssuer) -> None:
    provider = discover(oidc_issuer.url)
    assert provider.issuer == oidc_issuer.url
    assert provider.jwks_uri == oidc_issuer.jwks_uri
    assert provider.device_authorization_endpoint == f"{oidc_issuer.url}/device"
    assert provider.token_endpoint == f"{oidc_issuer.url}/token"
    assert provider.id_token_signing_alg_values_supported == ["RS256"]


def test_discover_refuses_a_document_naming_another_issuer(oidc_issuer: LocalIssuer) -> None:
    """OIDC Discovery 4.3: the document's issuer must be identical to the one asked (it is the tokens' iss)."""
    with pytest.raises(OidcError, match="names another issuer"):
        discover(f"http://localhost:{oidc_issuer.port}")  # same server, but the document says 127.0.0.1
    with pytest.raises(OidcError, match="names another issuer"):
        discover(oidc_issuer.url + "/")  # the well-known URL is the same, the issuer is not


def test_discover_names_an_unreachable_issuer() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(OidcError, match=f"issuer {url} is unreachable"):
        discover(url)


@pytest.mark.parametrize(
    "url", ["http://sso.example.org", "ftp://127.0.0.1/x", "https://sso.example.org/?q=1", "not a url", ""]
)
def test_discover_refuses_malformed_or_plain_http_issuers(url: str) -> None:
    with pytest.raises(ValueError, match="issuer URL"):
        discover(url)


# --- the device flow (RFC 8628) ----------------------------------------------------------------------------------
def test_device_login_polls_through_pending_and_slow_down_until_approved(
    oidc_issuer: LocalIssuer, tmp_path: Path
) -> None:
    provider = discover(oidc_issuer.url)
    prompts: list[DeviceAuthorization] = []
    sleeps: list[float] = []

    def on_prompt(grant: DeviceAuthorization) -> None:
        prompts.append(grant)
        oidc_issuer.slow_down(grant.user_code)  # the first poll answers slow_down

    def sleep(seconds: float) -> None:  # the person approves after the third answer (slow_down, pending, pending)
        sleeps.append(seconds)
        if oidc_issuer.login(prompts[0].user_code).polls == 3:
            oidc_issuer.approve(prompts[0].user_code, "alice", ["rf", "operators"])

    tokens = device_login(provider, oidc_issuer.client_id, on_prompt=on_prompt, sleep=sleep)
    grant = prompts[0]
    assert grant.verification_uri == f"{oidc_issuer.url}/activate"
    assert grant.verification_uri_complete == f"{oidc_issuer.url}/activate?user_code={grant.user_code}"
    login = oidc_issuer.login(grant.user_code)
    assert login.polls == 4 and login.scope == "openid profile email groups"
    assert sleeps == [1, 6, 6, 6]  # the announced interval, then +5 s from the slow_down on for every poll

    identity = _verify(oidc_issuer, tokens.id_token)
    assert (identity.user, identity.groups, identity.subject) == ("alice", ["rf", "operators"], "sub-alice")

    path = save_token(oidc_issuer.url, oidc_issuer.client_id, tokens, tmp_path / "cache")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind
    assert load_cached_token(oidc_issuer.url, oidc_issuer.client_id, tmp_path / "cache") == tokens.id_token
    assert load_cached_token(oidc_issuer.url, "other-client", tmp_path / "cache") is None


def test_device_login_denied(oidc_issuer: LocalIssuer) -> None:
    provider = discover(oidc_issuer.url)
    with pytest.raises(OidcError, match="sign-in denied \\(access_denied\\): the user refused"):
        device_login(
            provider,
            oidc_issuer.client_id,
            on_prompt=lambda g: oidc_issuer.deny(g.user_code),
            sleep=lambda s: None,
        )


def test_device_login_expired_at_the_provider(oidc_issuer: LocalIssuer) -> None:
    provider = discover(oidc_issuer.url)
    with pytest.raises(OidcError, match="expired before it was approved \\(expired_token\\)"):
        device_login(
            provider,
            oidc_issuer.client_id,
            on_prompt=lambda g: oidc_issuer.expire(g.user_code),
            sleep=lambda s: None,
        )


def test_device_login_stops_when_the_code_would_expire_before_the_next_poll() -> None:
    with LocalIssuer(interval=5, expires_in=1) as issuer:
        provider = discover(issuer.url)
        codes: list[str] = []
        with pytest.raises(OidcError, match="expired before it was approved"):
            device_login(provider, issuer.client_id, on_prompt=lambda g: codes.append(g.user_code), sleep=_never)
        assert issuer.login(codes[0]).polls == 0


def test_device_login_names_a_refused_client(oidc_issuer: LocalIssuer) -> None:
    provider = discover(oidc_issuer.url)
    with pytest.raises(OidcError, match=r"device authorization refused .*HTTP 401, invalid_client: unknown client"):
        device_login(provider, "someone-else", on_prompt=_never)
    with pytest.raises(ValueError, match="client id is empty"):
        device_login(provider, " ", on_prompt=_never)


# --- the token cache ---------------------------------------------------------------------------------------------
def test_token_cache_lives_under_xdg_cache_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = token_cache_path("https://sso.example.org/realms/ops", "tern-cli")
    assert path.parent == tmp_path / "tern" / "oidc" and path.suffix == ".json"
    assert path != token_cache_path("https://sso.example.org/realms/dev", "tern-cli")


def test_cached_token_near_or_past_expiry_is_not_offered(oidc_issuer: LocalIssuer, tmp_path: Path) -> None:
    soon = oidc_issuer.id_token("alice", exp=int(time.time()) + 10)  # within the 30 s margin
    save_token(oidc_issuer.url, oidc_issuer.client_id, TokenResponse(id_token=soon), tmp_path)
    assert load_cached_token(oidc_issuer.url, oidc_issuer.client_id, tmp_path) is None


def test_cached_token_readable_by_others_is_refused(oidc_issuer: LocalIssuer, tmp_path: Path) -> None:
    tokens = TokenResponse(id_token=oidc_issuer.id_token("alice"))
    path = save_token(oidc_issuer.url, oidc_issuer.client_id, tokens, tmp_path)
    path.chmod(0o644)
    with pytest.raises(OidcError, match="readable by others \\(mode 0o644\\)"):
        load_cached_token(oidc_issuer.url, oidc_issuer.client_id, tmp_path)


def test_saving_replaces_a_world_readable_cache_file_with_a_0600_one(oidc_issuer: LocalIssuer, tmp_path: Path) -> None:
    path = token_cache_path(oidc_issuer.url, oidc_issuer.client_id, tmp_path)
    path.write_text("{}")
    path.chmod(0o644)
    save_token(oidc_issuer.url, oidc_issuer.client_id, TokenResponse(id_token=oidc_issuer.id_token("bob")), tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# --- verification ------------------------------------------------------------------------------------------------
def test_verify_accepts_a_good_token(oidc_issuer: LocalIssuer) -> None:
    token = oidc_issuer.id_token("alice", ["rf"])
    identity = _verify(oidc_issuer, token)
    assert identity.user == "alice" and identity.groups == ["rf"] and identity.subject == "sub-alice"
    assert identity.issuer == oidc_issuer.url
    assert identity.expires_at.timestamp() == jwt.decode(token, options={"verify_signature": False})["exp"]
    assert identity.claims["email"] == "alice@example.org"


def test_verify_maps_configured_claims(oidc_issuer: LocalIssuer) -> None:
    token = oidc_issuer.id_token("alice", uid="asmith", roles=["rf-experts"])
    identity = _verify(oidc_issuer, token, user_claim="uid", groups_claim="roles")
    assert (identity.user, identity.groups) == ("asmith", ["rf-experts"])
    claims = oidc_issuer.claims("alice")
    del claims["groups"]
    assert _verify(oidc_issuer, oidc_issuer.sign(claims)).groups == []  # no groups claim: no groups


def _hs256_with_public_key(issuer: LocalIssuer) -> str:
    """An HS256 token whose HMAC secret is the issuer's public key (the classic RS256/HS256 confusion attack):
    built by hand, since PyJWT refuses to sign with a PEM public key as an HMAC secret."""
    pem = issuer.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": issuer.kid}).encode())
    body = b64(json.dumps(issuer.claims("mallory")).encode())
    sig = hmac.new(pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


REFUSALS = {
    "wrong issuer": (lambda i: i.id_token(iss="http://127.0.0.1:1"), "issuer 'http://127.0.0.1:1' is not"),
    "wrong audience": (lambda i: i.id_token(aud="another-client"), "audience 'another-client' does not include"),
    "expired": (
        lambda i: i.id_token(iat=int(time.time()) - 7200, exp=int(time.time()) - 3600),
        "the ID token expired at",
    ),
    "issued in the future": (lambda i: i.id_token(iat=int(time.time()) + 3600), "not valid yet"),
    "another key": (lambda i: i.sign(i.claims(), key=new_rsa_key()), "signature does not verify"),
    "alg none": (lambda i: jwt.encode(i.claims(), "", algorithm="none"), "algorithm 'none' is refused"),
    "HS256 with the public key": (_hs256_with_public_key, "algorithm 'HS256' is refused"),
    "unknown kid": (lambda i: i.sign(i.claims(), kid="rotated-away"), "key 'rotated-away' is not in the issuer's JWKS"),
    "no exp": (lambda i: i.id_token(exp=None), "lacks the required claim 'exp'"),
    "no iat": (lambda i: i.id_token(iat=None), "lacks the required claim 'iat'"),
    "no sub": (lambda i: i.id_token(sub=None), "lacks the required claim 'sub'"),
    "no user claim": (lambda i: i.id_token(preferred_username=None), "claim 'preferred_username' .* missing"),
    "blank user": (lambda i: i.id_token(preferred_username="  "), "not a valid user name"),
    "groups not a list": (lambda i: i.sign(i.claims() | {"groups": "rf"}), "claim 'groups' .* not a list of strings"),
    "not a JWT": (lambda i: "not.a.jwt", "not a JWT"),
    "too long": (lambda i: "x" * 20000, "more than 16384"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_verify_refuses(oidc_issuer: LocalIssuer, case: str) -> None:
    make, reason = REFUSALS[case]
    with pytest.raises(OidcError, match=reason):
        _verify(oidc_issuer, make(oidc_issuer))


def test_verify_refuses_a_token_issued_to_another_client(oidc_issuer: LocalIssuer) -> None:
    token = oidc_issuer.id_token(aud=["other-app", oidc_issuer.client_id], azp="other-app")
    assert _verify(oidc_issuer, token).user == "alice"  # the audience alone holds
    with pytest.raises(OidcError, match="issued to another client \\(azp 'other-app', not 'tern-cli'\\)"):
        _verify(oidc_issuer, token, authorized_party=oidc_issuer.client_id)
    own = oidc_issuer.id_token(azp=oidc_issuer.client_id)
    assert _verify(oidc_issuer, own, authorized_party=oidc_issuer.client_id).user == "alice"


def test_verify_refuses_an_es256_token_against_an_rsa_key(oidc_issuer: LocalIssuer) -> None:
    token = oidc_issuer.sign(oidc_issuer.claims(), key=ec.generate_private_key(ec.SECP256R1()), algorithm="ES256")
    with pytest.raises(OidcError, match="the token says ES256 but the issuer's key 'test-key-1' is RS256"):
        _verify(oidc_issuer, token)


def test_verify_finds_a_key_published_after_the_jwks_was_cached(
    oidc_issuer: LocalIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Key rotation: an unknown kid fetches the JWKS again (here without the refetch cooldown, which would
    otherwise hold the refetch back for 30 s after the first fetch)."""
    monkeypatch.setattr(oidc, "JWKS_REFETCH_COOLDOWN_S", 0.0)
    oidc._jwks_client.cache_clear()
    _verify(oidc_issuer, oidc_issuer.id_token())  # the JWKS is fetched and cached
    rotated = new_rsa_key()
    oidc_issuer.add_jwks_key("test-key-2", rotated.public_key())
    identity = _verify(oidc_issuer, oidc_issuer.sign(oidc_issuer.claims("bob"), key=rotated, kid="test-key-2"))
    assert identity.user == "bob"


def test_verify_names_an_unreachable_jwks(oidc_issuer: LocalIssuer) -> None:
    token = oidc_issuer.id_token()
    with pytest.raises(OidcError, match=r"JWKS at .* is unreachable"):
        _verify(oidc_issuer, token, jwks_uri=f"http://127.0.0.1:{free_port()}/jwks")


# --- `tern login` ------------------------------------------------------------------------------------------------
def _login_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = env_without_services(tmp_path / "data", XDG_CACHE_HOME=str(tmp_path / "cache"), **extra)
    for name in [n for n in env if n.startswith("TERN_OIDC")]:
        del env[name]
    env.update(extra)
    env["TERN_CONFIG"] = str(tmp_path / "absent.toml")
    return env


def _tern(*args: str) -> list[str]:
    return [sys.executable, "-m", "starters.cli", *args]


def test_tern_login_end_to_end_then_status(oidc_issuer: LocalIssuer, tmp_path: Path) -> None:
    env = _login_env(tmp_path, TERN_OIDC__ISSUER=oidc_issuer.url, TERN_OIDC__CLIENT_ID=oidc_issuer.client_id)
    proc = subprocess.Popen(
        _tern("login", "--json"), env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        pending = oidc_issuer.wait_for_login(60)
        oidc_issuer.wait_for_polls(pending.user_code, 1, 60)  # the console is waiting
        oidc_issuer.approve(pending.user_code, "alice", ["rf"])
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert f"open {oidc_issuer.url}/activate and enter the code {pending.user_code}" in err
    shown = json.loads(out)
    assert (shown["user"], shown["groups"], shown["issuer"]) == ("alice", ["rf"], oidc_issuer.url)
    cache = Path(shown["token_cache"])
    assert cache.is_relative_to(tmp_path / "cache" / "tern" / "oidc")
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600

    status = subprocess.run(_tern("login", "--status"), env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    assert f"Signed in as alice (groups: rf) at {oidc_issuer.url}" in status.stdout


def test_tern_login_denied_exits_1_with_the_reason(oidc_issuer: LocalIssuer, tmp_path: Path) -> None:
    env = _login_env(tmp_path)
    args = _tern("login", "--issuer", oidc_issuer.url, "--client-id", oidc_issuer.client_id)
    proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        oidc_issuer.deny(oidc_issuer.wait_for_login(60).user_code)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 1, (out, err)
    assert "error: sign-in denied (access_denied)" in err
    assert not (tmp_path / "cache" / "tern" / "oidc").exists() or not any(
        (tmp_path / "cache" / "tern" / "oidc").iterdir()
    )


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["login", "--client-id", "x"], 2, "no OIDC issuer"),
        (["login", "--issuer", "http://sso.example.org", "--client-id", "x"], 2, "must use https"),
        (["login", "--issuer", "https://sso.example.org"], 2, "no OIDC client id"),
        (["login", "--issuer", "UNREACHABLE", "--client-id", "x"], 1, "is unreachable"),
        (["login", "--status", "--issuer", "LOCAL", "--client-id", "tern-cli"], 1, "not signed in"),
    ],
    ids=["no issuer", "plain http", "no client id", "unreachable", "status without a token"],
)
def test_tern_login_errors(oidc_issuer: LocalIssuer, tmp_path: Path, args: list[str], code: int, message: str) -> None:
    args = [a.replace("UNREACHABLE", f"http://127.0.0.1:{free_port()}").replace("LOCAL", oidc_issuer.url) for a in args]
    proc = subprocess.run(_tern(*args), env=_login_env(tmp_path), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    assert message in proc.stderr


def test_token_cache_file_is_created_0600_even_with_a_permissive_umask(
    oidc_issuer: LocalIssuer, tmp_path: Path
) -> None:
    old = os.umask(0)
    try:
        path = save_token(
            oidc_issuer.url, oidc_issuer.client_id, TokenResponse(id_token=oidc_issuer.id_token()), tmp_path / "c"
        )
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_tern_login_refuses_a_bad_oidc_setting_naming_it(tmp_path: Path) -> None:
    env = _login_env(tmp_path, TERN_OIDC__ISSUER="http://sso.example.org", TERN_OIDC__CLIENT_ID="tern-cli")
    proc = subprocess.run(_tern("login"), env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "bad configuration: oidc.issuer (TERN_OIDC__ISSUER)" in proc.stderr
    assert "https URL" in proc.stderr


def test_oidc_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from pydantic import ValidationError

    from tern.config import TernSettings

    for name in [n for n in os.environ if n.startswith("TERN_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TERN_CONFIG", str(tmp_path / "absent.toml"))
    s = TernSettings()
    assert s.oidc.issuer is None and s.oidc.expected_audience is None  # no sign-on configured by default
    monkeypatch.setenv("TERN_OIDC__ISSUER", "https://sso.example.org/realms/ops/")
    monkeypatch.setenv("TERN_OIDC__CLIENT_ID", "tern-cli")
    s = TernSettings()
    assert s.oidc.issuer == "https://sso.example.org/realms/ops/" and s.oidc.expected_audience == "tern-cli"
    assert (s.oidc.user_claim, s.oidc.groups_claim) == ("preferred_username", "groups")
    monkeypatch.setenv("TERN_OIDC__AUDIENCE", "tern-worker")
    assert TernSettings().oidc.expected_audience == "tern-worker"
    monkeypatch.setenv("TERN_OIDC__SCOPE", "profile email")
    with pytest.raises(ValidationError, match="must include 'openid'"):
        TernSettings()
