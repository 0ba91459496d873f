"""An embedded Matrix homeserver (Synapse from the ``matrix-synapse`` wheel) for chat approvals.

Layout under ``<data dir>/matrix/``: ``homeserver.yaml`` (generated once by Synapse's own
``--generate-config``, then Tern's settings laid over it at every start), ``homeserver.db`` (SQLite), the
signing key, ``homeserver.log``, and ``credentials.json`` (:class:`MatrixCredentials`) written by
:func:`provision`. The folder holds secrets (the registration shared secret in ``homeserver.yaml``, which mints
accounts, admin ones included; the passwords in ``credentials.json``): it is kept mode 0700 and every file Tern or
Synapse's config generation writes in it is created mode 0600 (``os.open`` with the mode, then an atomic
rename; Synapse runs under umask 077), never widened first and narrowed after.

Server name ``localhost``, client API only on ``127.0.0.1:<port>``, no federation, registration closed except
shared-secret registration (Synapse admin API ``POST /_synapse/admin/v1/register``: HMAC-SHA1 over
``nonce\\0user\\0password\\0admin|notadmin`` with ``registration_shared_secret``; Synapse docs
"Shared-Secret Registration"), rate limits raised so that tests and benchmarks are not throttled.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import yaml
from pydantic import BaseModel

SERVER_NAME = "localhost"
ROOM_ALIAS = "control-room"
BOT = "tern"
OPERATOR = "operator"
_RATE = {"per_second": 1000, "burst_count": 1000}


class MatrixAccount(BaseModel):
    """A Matrix account: full user id (``@name:localhost``) and password."""

    user_id: str
    password: str


class MatrixCredentials(BaseModel):
    """``credentials.json``: where the homeserver is, the shared secret, the control room and the accounts
    (``others`` holds extra accounts created for tests, by local part)."""

    homeserver: str
    registration_shared_secret: str
    room_id: str
    room_alias: str
    bot: MatrixAccount
    operator: MatrixAccount
    others: dict[str, MatrixAccount] = {}


class MatrixError(RuntimeError):
    """The homeserver could not be configured, reached or provisioned; the message says which step."""


PRIVATE_UMASK = 0o077
"""Umask for Synapse's processes: what they create is readable by this user only."""


def matrix_dir(data_dir: Path) -> Path:
    """``<data_dir>/matrix``."""
    return Path(data_dir).expanduser().resolve() / "matrix"


def private_dir(root: Path) -> None:
    """Create ``root`` (and missing parents) with the directory itself mode 0700; an existing ``root`` is set to
    0700 (an older install's 0755 folder). Raises ``OSError``."""
    root.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(root, 0o700)
    except FileExistsError:
        os.chmod(root, 0o700)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that no other user can ever read it: a new file in the same folder is
    created mode 0600 (``os.open`` with ``O_CREAT | O_EXCL`` and the mode: never world-readable, even for a
    moment), written, flushed to disk, then renamed over ``path`` (an existing file of a wider mode is replaced,
    not rewritten in place). Raises ``OSError``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_config(root: Path, port: int) -> Path:
    """Create (once) and update ``root/homeserver.yaml`` for ``127.0.0.1:port``; returns its path.

    The folder is made (or set) 0700 and the file written 0600 (:func:`private_dir`, :func:`write_private`).
    Raises :class:`MatrixError` when Synapse cannot generate its configuration or the folder cannot be made."""
    import importlib.util

    if importlib.util.find_spec("synapse") is None:
        raise MatrixError("matrix-synapse is not installed: pip install 'tern[matrix]'")
    try:
        private_dir(root)
    except OSError as exc:
        raise MatrixError(f"cannot create the Matrix folder {root}: {exc}") from exc
    path = root / "homeserver.yaml"
    if not path.exists():
        gen = subprocess.run(  # umask 077: the generated config (shared secret) and signing key are 0600
            [
                sys.executable,
                "-m",
                "synapse.app.homeserver",
                "--server-name",
                SERVER_NAME,
                "--config-path",
                str(path),
                "--data-directory",
                str(root),
                "--generate-config",
                "--report-stats=no",
            ],
            capture_output=True,
            text=True,
            cwd=root,
            umask=PRIVATE_UMASK,
        )
        if gen.returncode != 0:
            raise MatrixError(f"synapse --generate-config failed: {gen.stderr[-2000:]}")
    conf = yaml.safe_load(path.read_text())
    conf.update(
        {
            "listeners": [
                {
                    "port": port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    "resources": [{"names": ["client"], "compress": False}],
                }
            ],
            "database": {"name": "sqlite3", "args": {"database": str(root / "homeserver.db")}},
            "public_baseurl": f"http://127.0.0.1:{port}/",
            "enable_registration": False,
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "federation_domain_whitelist": [],
            "presence": {"enabled": False},
            "url_preview_enabled": False,
            "rc_message": _RATE,
            "rc_registration": _RATE,
            "rc_joins": {"local": _RATE, "remote": _RATE},
            "rc_invites": {"per_room": _RATE, "per_user": _RATE, "per_issuer": _RATE},
            "rc_login": {"address": _RATE, "account": _RATE, "failed_attempts": _RATE},
            "rc_admin_redaction": _RATE,
            "rc_room_creation": _RATE,
        }
    )
    write_private(path, yaml.safe_dump(conf, sort_keys=False))
    return path


def command(config: Path) -> list[str]:
    """The command line that runs the homeserver in the foreground."""
    return [sys.executable, "-m", "synapse.app.homeserver", "--config-path", str(config)]


def homeserver_url(port: int) -> str:
    """``http://127.0.0.1:<port>``."""
    return f"http://127.0.0.1:{port}"


def healthy(port: int) -> bool:
    """Whether Synapse answers ``GET /health`` with ``OK``."""
    try:
        return httpx.get(f"{homeserver_url(port)}/health", timeout=2).text == "OK"
    except httpx.HTTPError:
        return False


def register(base: str, secret: str, user: str, password: str, *, admin: bool = False) -> MatrixAccount:
    """Register ``@user:localhost`` by shared-secret registration (see the module docstring); an existing
    account is logged into instead. Raises :class:`MatrixError`."""
    user_id = f"@{user}:{SERVER_NAME}"
    nonce = httpx.get(f"{base}/_synapse/admin/v1/register", timeout=10).json()["nonce"]
    mac = hmac.new(secret.encode(), digestmod=hashlib.sha1)
    for part in (nonce, user, password, "admin" if admin else "notadmin"):
        mac.update(part.encode())
        if part != ("admin" if admin else "notadmin"):
            mac.update(b"\x00")
    r = httpx.post(
        f"{base}/_synapse/admin/v1/register",
        json={"nonce": nonce, "username": user, "password": password, "admin": admin, "mac": mac.hexdigest()},
        timeout=30,
    )
    if r.status_code == 400 and r.json().get("errcode") == "M_USER_IN_USE":
        return MatrixAccount(user_id=user_id, password=password)
    if r.status_code != 200:
        raise MatrixError(f"registering {user_id} failed: HTTP {r.status_code} {r.text[:300]}")
    return MatrixAccount(user_id=user_id, password=password)


def login(base: str, account: MatrixAccount) -> str:
    """An access token for ``account`` (``m.login.password``). Raises :class:`MatrixError`."""
    r = httpx.post(
        f"{base}/_matrix/client/v3/login",
        json={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": account.user_id},
            "password": account.password,
        },
        timeout=30,
    )
    if r.status_code != 200:
        raise MatrixError(f"login as {account.user_id} failed: HTTP {r.status_code} {r.text[:300]}")
    return str(r.json()["access_token"])


def _password(root: Path, user: str) -> str:
    path = root / f".{user}.password"
    if not path.exists():
        import secrets

        write_private(path, secrets.token_urlsafe(18))
    return path.read_text().strip()


def provision(root: Path, port: int, extra_users: tuple[str, ...] = ()) -> MatrixCredentials:
    """Register the bot, the operator and ``extra_users``, create ``#control-room:localhost`` (or find it) with
    all of them joined, and write ``root/credentials.json`` (mode 0600). Idempotent. Raises :class:`MatrixError`."""
    base = homeserver_url(port)
    conf = yaml.safe_load((root / "homeserver.yaml").read_text())
    secret = str(conf["registration_shared_secret"])
    accounts = {u: register(base, secret, u, _password(root, u)) for u in (BOT, OPERATOR, *extra_users)}
    bot_token = login(base, accounts[BOT])
    auth = {"Authorization": f"Bearer {bot_token}"}
    alias = f"#{ROOM_ALIAS}:{SERVER_NAME}"
    r = httpx.get(f"{base}/_matrix/client/v3/directory/room/{quote(alias)}", headers=auth, timeout=30)
    if r.status_code == 200:
        room_id = str(r.json()["room_id"])
    else:
        r = httpx.post(
            f"{base}/_matrix/client/v3/createRoom",
            headers=auth,
            json={"room_alias_name": ROOM_ALIAS, "name": "Control room", "preset": "private_chat"},
            timeout=30,
        )
        if r.status_code != 200:
            raise MatrixError(f"creating {alias} failed: HTTP {r.status_code} {r.text[:300]}")
        room_id = str(r.json()["room_id"])
    for user, account in accounts.items():
        if user == BOT:
            continue
        httpx.post(  # already invited or joined: Synapse answers 403 and nothing changes
            f"{base}/_matrix/client/v3/rooms/{quote(room_id)}/invite",
            headers=auth,
            json={"user_id": account.user_id},
            timeout=30,
        )
        token = login(base, account)
        j = httpx.post(
            f"{base}/_matrix/client/v3/join/{quote(room_id)}",
            headers={"Authorization": f"Bearer {token}"},
            json={},
            timeout=30,
        )
        if j.status_code != 200:
            raise MatrixError(f"{account.user_id} could not join {alias}: HTTP {j.status_code} {j.text[:300]}")
    creds = MatrixCredentials(
        homeserver=base,
        registration_shared_secret=secret,
        room_id=room_id,
        room_alias=alias,
        bot=accounts[BOT],
        operator=accounts[OPERATOR],
        others={u: a for u, a in accounts.items() if u not in (BOT, OPERATOR)},
    )
    write_private(root / "credentials.json", creds.model_dump_json(indent=2))
    return creds


def read_credentials(path: Path) -> MatrixCredentials:
    """Load ``credentials.json``. Raises :class:`MatrixError` naming the file when missing or invalid."""
    try:
        return MatrixCredentials.model_validate_json(path.read_text())
    except (OSError, ValueError) as exc:
        raise MatrixError(f"cannot read Matrix credentials {path}: {exc} (start with `tern up --with matrix`)") from exc


def start(root: Path, port: int, log: Path, timeout_s: float = 90.0) -> subprocess.Popen[bytes]:
    """Configure and start Synapse in its own session, wait for ``/health``; returns the process. For tests and
    scripts; ``tern up --with matrix`` starts it through the stack's supervisor-free spawn instead.

    Raises :class:`MatrixError` when it exits or is not healthy within ``timeout_s`` seconds."""
    config = write_config(root, port)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            command(config),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=root,
            umask=PRIVATE_UMASK,
        )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise MatrixError(f"synapse exited with status {proc.returncode}; see {log}")
        if healthy(port):
            return proc
        time.sleep(0.3)
    proc.kill()
    raise MatrixError(f"synapse not healthy within {timeout_s:g} s; see {log}")
