"""The embedded stack's record of its ARIEL API: which process, which port, which database it serves.

``tern up`` writes ``run/ariel.api.json`` in the data directory when its ``ariel`` component is ready, and
``tern down`` removes it. ``tern ariel search`` sends a search to that API only when the record's database is the
one the CLI's own settings name (:func:`same_database`): a CLI pointed at another database (``TERN_DATABASE__URL``)
searches that database, never the stack's. The record keeps the database as :func:`database_identity` (user,
host, port, database name; never a password).

Kept free of heavy imports (no asyncpg, no HTTP client): the CLI reads it before deciding whether to load
anything.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import BaseModel, ValidationError

RECORD_FILE = "ariel.api.json"
"""Name of the record in the stack's ``run/`` directory."""

_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


class ArielApiRecord(BaseModel):
    """What ``tern up`` records about the ARIEL API it started: ``pid`` of the API process, TCP ``port`` on
    127.0.0.1, and ``database``, the :func:`database_identity` of the DSN it serves."""

    pid: int
    port: int
    database: str


def database_identity(dsn: str) -> str:
    """The database a PostgreSQL URL names, as ``postgresql://user@host:port/dbname`` (no password, no options).

    ``dsn``: a ``postgresql://`` or ``postgres://`` URL, as ``TernSettings.dsn`` gives; libpq's defaults fill what
    it leaves out (port 5432, database name = user), ``host``/``port``/``user``/``dbname`` query parameters
    override the URL's parts, and the loopback names (localhost, 127.0.0.1, ::1) count as one host. Two DSNs
    with the same identity reach the same database of the same server. Raises ``ValueError`` naming the problem
    for anything else (a ``key=value`` connection string, several hosts, a port that is not a number): callers
    that compare treat that as "not the same" (fail closed)."""
    parts = urlsplit(dsn.strip())
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError(f"not a postgresql:// URL (scheme {parts.scheme!r})")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    host = query.get("host") or unquote(parts.hostname or "")  # urlsplit lower-cases a hostname
    if "," in host or "," in parts.netloc.rpartition("@")[2]:
        raise ValueError("several hosts in one URL")
    try:
        port = int(query.get("port") or parts.port or 5432)
    except ValueError as exc:
        raise ValueError(f"the port is not a number ({exc})") from None
    host = "localhost" if host in _LOOPBACK else host
    user = query.get("user") or unquote(parts.username or "")
    dbname = query.get("dbname") or unquote(parts.path.lstrip("/")) or user
    return f"postgresql://{user}@{host}:{port}/{dbname}"


def same_database(a: str, b: str) -> bool:
    """True when DSNs ``a`` and ``b`` have the same :func:`database_identity`; False when they differ or either
    cannot be read (on any doubt, not the same)."""
    try:
        return database_identity(a) == database_identity(b)
    except ValueError:
        return False


def record_path(data_dir: Path | str) -> Path:
    """``<data_dir>/run/ariel.api.json`` (``~`` expanded)."""
    return Path(data_dir).expanduser() / "run" / RECORD_FILE


def write_record(data_dir: Path | str, *, pid: int, port: int, dsn: str) -> ArielApiRecord:
    """Record that process ``pid`` serves the ARIEL API on 127.0.0.1:``port`` over database ``dsn`` (replaced
    atomically; the DSN is kept as its identity, or as "" when it cannot be read, which matches nothing).
    Returns the record written. Raises ``OSError`` when the file cannot be written."""
    try:
        database = database_identity(dsn)
    except ValueError:
        database = ""
    record = ArielApiRecord(pid=pid, port=port, database=database)
    path = record_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(record.model_dump_json())
    tmp.replace(path)
    return record


def read_record(data_dir: Path | str) -> ArielApiRecord | None:
    """The record in ``data_dir``, or None when there is none or it cannot be read (a stack started by an older
    Tern has none: its API is then not used unless ``ariel.api_url`` names it)."""
    try:
        return ArielApiRecord.model_validate(json.loads(record_path(data_dir).read_text()))
    except (OSError, ValueError, ValidationError):
        return None


def remove_record(data_dir: Path | str) -> None:
    """Remove the record (``tern down``); no error when there is none."""
    record_path(data_dir).unlink(missing_ok=True)


PROCESS_MARKER = "tern.ariel.api"
"""What the API process's command line shows (``python -m tern.ariel.api``, as ``tern up`` starts it)."""


def running_record(data_dir: Path | str) -> ArielApiRecord | None:
    """The record when its process is alive and its port accepts connections, else None.

    Alive: :func:`tern.embedded.pids.live_process` with :data:`PROCESS_MARKER`: a zombie, a PID since reused by
    another program, or a process this user may not inspect does not count (the CLI then searches itself)."""
    from tern.embedded.net import port_in_use
    from tern.embedded.pids import live_process

    record = read_record(data_dir)
    if record is None or not live_process(record.pid, PROCESS_MARKER) or not port_in_use(record.port):
        return None
    return record
