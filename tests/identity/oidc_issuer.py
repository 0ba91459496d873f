"""A real, local OpenID Connect issuer for tests: the only stand-in allowed, at the HTTP boundary.

:class:`LocalIssuer` serves, on a free loopback port (FastAPI under uvicorn, in a thread of the test process):

- ``GET /.well-known/openid-configuration``: discovery (OpenID Connect Discovery 1.0 section 3);
- ``GET /jwks``: its public keys (an RSA key made with ``cryptography`` at start; more can be added);
- ``POST /device``: device authorization (RFC 8628 section 3.1/3.2);
- ``POST /token``: device access token requests (RFC 8628 section 3.4/3.5), answering ``authorization_pending``
  until the test decides the code with :meth:`LocalIssuer.approve` (the person on their phone signs in as a given
  user), :meth:`LocalIssuer.deny` or :meth:`LocalIssuer.expire`; :meth:`LocalIssuer.slow_down` makes the next
  polls answer ``slow_down``.

ID tokens are signed with PyJWT (RS256, ``kid`` in the header); :meth:`LocalIssuer.sign` and
:meth:`LocalIssuer.id_token` mint tokens directly for verification tests. Use it as a context manager or through
the ``oidc_issuer`` fixture (tests/identity/conftest.py)::

    with LocalIssuer() as issuer:
        provider = discover(issuer.url)
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

DEFAULT_CLIENT_ID = "tern-cli"
DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def new_rsa_key() -> rsa.RSAPrivateKey:
    """A fresh 2048-bit RSA private key."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class PendingLogin:
    """One device authorization: its codes, the scope asked, the decision so far (``pending``, ``approved``,
    ``denied``, ``expired``), who approved with which groups, how many polls were answered, and how many more polls
    answer ``slow_down``."""

    device_code: str
    user_code: str
    client_id: str
    scope: str
    state: str = "pending"
    user: str | None = None
    groups: list[str] = field(default_factory=list)
    polls: int = 0
    slow_downs: int = 0


class LocalIssuer:
    """An OIDC issuer on ``http://127.0.0.1:<free port>``, for tests.

    ``client_id``: the one client it knows (others get ``invalid_client``). ``interval``: the polling interval it
    announces, seconds (RFC 8628 allows any; tests use small ones). ``expires_in``: lifetime of a device code,
    seconds. ``token_ttl_s``: lifetime of the ID tokens it issues, seconds."""

    def __init__(
        self,
        client_id: str = DEFAULT_CLIENT_ID,
        *,
        interval: float = 1,
        expires_in: float = 600,
        token_ttl_s: float = 600,
    ) -> None:
        self.client_id = client_id
        self.interval = interval
        self.expires_in = expires_in
        self.token_ttl_s = token_ttl_s
        self.key = new_rsa_key()
        self.kid = "test-key-1"
        self._jwks_keys: dict[str, Any] = {self.kid: self.key.public_key()}
        self._logins: dict[str, PendingLogin] = {}  # device_code -> login
        self._lock = threading.Condition()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> LocalIssuer:
        """Serve in a daemon thread; return once uvicorn listens (raises RuntimeError if it stopped instead)."""
        config = uvicorn.Config(self._app(), log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the local OIDC issuer did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(30)
        self._sock.close()

    def __enter__(self) -> LocalIssuer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what a test does --------------------------------------------------------------------------------------
    @property
    def jwks_uri(self) -> str:
        """The URL of its JWKS."""
        return f"{self.url}/jwks"

    def add_jwks_key(self, kid: str, public_key: Any) -> None:
        """Publish one more public key under ``kid`` (key rotation)."""
        with self._lock:
            self._jwks_keys[kid] = public_key

    def claims(self, user: str = "alice", groups: list[str] | None = None, **overrides: Any) -> dict[str, Any]:
        """The claims of an ID token it would issue now to ``user``; ``overrides`` replace or add claims (a value of
        None removes the claim)."""
        now = int(time.time())
        out: dict[str, Any] = {
            "iss": self.url,
            "aud": self.client_id,
            "sub": f"sub-{user}",
            "iat": now,
            "exp": now + int(self.token_ttl_s),
            "preferred_username": user,
            "groups": list(groups if groups is not None else []),
            "email": f"{user}@example.org",
        }
        for name, value in overrides.items():
            if value is None:
                out.pop(name, None)
            else:
                out[name] = value
        return out

    def sign(self, claims: dict[str, Any], *, key: Any = None, kid: str | None = "", algorithm: str = "RS256") -> str:
        """``claims`` signed with PyJWT: by default with its own key and ``kid``; ``key`` signs with another key,
        ``kid`` names another key id (None leaves it out)."""
        headers = {} if kid is None else {"kid": kid or self.kid}
        return jwt.encode(claims, key if key is not None else self.key, algorithm=algorithm, headers=headers)

    def id_token(self, user: str = "alice", groups: list[str] | None = None, **overrides: Any) -> str:
        """A valid ID token for ``user`` (see :meth:`claims`)."""
        return self.sign(self.claims(user, groups, **overrides))

    def wait_for_login(self, timeout_s: float = 30.0) -> PendingLogin:
        """The oldest login still pending, waiting for a device authorization request if none is; raises
        TimeoutError after ``timeout_s``."""
        with self._lock:
            found = self._lock.wait_for(
                lambda: next((x for x in self._logins.values() if x.state == "pending"), None), timeout_s
            )
        if found is None:
            raise TimeoutError("no device authorization request reached the local OIDC issuer")
        return found

    def wait_for_polls(self, user_code: str, polls: int, timeout_s: float = 30.0) -> None:
        """Wait until the token endpoint answered ``polls`` polls for ``user_code``; TimeoutError otherwise."""
        with self._lock:
            if not self._lock.wait_for(lambda: self._login(user_code).polls >= polls, timeout_s):
                raise TimeoutError(f"{user_code}: fewer than {polls} polls")

    def approve(self, user_code: str, user: str, groups: list[str] | None = None) -> None:
        """The person signs in as ``user`` (member of ``groups``) and approves ``user_code``."""
        self._decide(user_code, "approved", user=user, groups=groups or [])

    def deny(self, user_code: str) -> None:
        """The person refuses the sign-in: the next poll answers ``access_denied``."""
        self._decide(user_code, "denied")

    def expire(self, user_code: str) -> None:
        """The code runs out: the next poll answers ``expired_token``."""
        self._decide(user_code, "expired")

    def slow_down(self, user_code: str, times: int = 1) -> None:
        """The next ``times`` polls of ``user_code`` answer ``slow_down``."""
        with self._lock:
            self._login(user_code).slow_downs += times

    def login(self, user_code: str) -> PendingLogin:
        """The login of ``user_code`` (KeyError if none)."""
        with self._lock:
            return self._login(user_code)

    def _login(self, user_code: str) -> PendingLogin:
        for login in self._logins.values():
            if login.user_code == user_code:
                return login
        raise KeyError(user_code)

    def _decide(self, user_code: str, state: str, **fields: Any) -> None:
        with self._lock:
            login = self._login(user_code)
            if login.state != "pending":
                raise ValueError(f"{user_code} is already {login.state}")
            login.state = state
            for name, value in fields.items():
                setattr(login, name, value)
            self._lock.notify_all()

    # --- the HTTP side -----------------------------------------------------------------------------------------
    def _app(self) -> FastAPI:
        app = FastAPI()

        def error(code: str, status: int = 400, description: str = "") -> JSONResponse:
            body = {"error": code, **({"error_description": description} if description else {})}
            return JSONResponse(body, status_code=status)

        async def form(request: Request) -> dict[str, str]:
            parsed = parse_qs((await request.body()).decode(), keep_blank_values=True)
            return {k: v[0] for k, v in parsed.items()}

        @app.get("/.well-known/openid-configuration")
        def discovery() -> dict[str, Any]:
            return {
                "issuer": self.url,
                "jwks_uri": self.jwks_uri,
                "authorization_endpoint": f"{self.url}/authorize",
                "token_endpoint": f"{self.url}/token",
                "device_authorization_endpoint": f"{self.url}/device",
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "grant_types_supported": [DEVICE_CODE_GRANT],
            }

        @app.get("/jwks")
        def jwks() -> dict[str, Any]:
            with self._lock:
                items = list(self._jwks_keys.items())
            keys = []
            for kid, public in items:
                jwk = jwt.algorithms.RSAAlgorithm.to_jwk(public, as_dict=True)
                keys.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
            return {"keys": keys}

        @app.post("/device")
        async def device(request: Request) -> JSONResponse:
            data = await form(request)
            if data.get("client_id") != self.client_id:
                return error("invalid_client", 401, f"unknown client {data.get('client_id')!r}")
            login = PendingLogin(
                device_code=secrets.token_urlsafe(24),
                user_code=f"{secrets.token_hex(2).upper()}-{secrets.token_hex(2).upper()}",
                client_id=self.client_id,
                scope=data.get("scope", ""),
            )
            with self._lock:
                self._logins[login.device_code] = login
                self._lock.notify_all()
            return JSONResponse(
                {
                    "device_code": login.device_code,
                    "user_code": login.user_code,
                    "verification_uri": f"{self.url}/activate",
                    "verification_uri_complete": f"{self.url}/activate?user_code={login.user_code}",
                    "expires_in": self.expires_in,
                    "interval": self.interval,
                }
            )

        @app.post("/token")
        async def token(request: Request) -> JSONResponse:
            data = await form(request)
            if data.get("grant_type") != DEVICE_CODE_GRANT:
                return error("unsupported_grant_type")
            if data.get("client_id") != self.client_id:
                return error("invalid_client", 401)
            with self._lock:
                login = self._logins.get(data.get("device_code", ""))
                if login is None:
                    return error("invalid_grant", description="unknown device code")
                login.polls += 1
                self._lock.notify_all()
                if login.slow_downs > 0:
                    login.slow_downs -= 1
                    return error("slow_down")
                state, user, groups = login.state, login.user, list(login.groups)
                if state == "approved":
                    login.state = "used"  # a device code gives one token (RFC 8628 section 3.5)
            if state == "pending":
                return error("authorization_pending")
            if state == "denied":
                return error("access_denied", description="the user refused")
            if state in ("expired", "used"):
                return error("expired_token")
            assert user is not None
            return JSONResponse(
                {
                    "access_token": secrets.token_urlsafe(16),
                    "token_type": "Bearer",
                    "expires_in": int(self.token_ttl_s),
                    "id_token": self.id_token(user, groups),
                    "scope": login.scope,
                }
            )

        return app
