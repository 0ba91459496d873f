"""The identity map: which Tern approver name a chat identity stands for.

The chat platform authenticates the person (Matrix user id, Slack user id, webhook key id); this map turns
that identity into the approver name the bridge puts in the ``decide`` Update. The workflow's validator and the
worker's approval policy still decide whether that name may approve: the map authenticates, it never authorises.

File (``TERN_CHAT__IDENTITY_MAP_PATH``), TOML or JSON by suffix, one table per platform::

    [matrix]
    "@operator:localhost" = "operator"
    "@alice:facility.org" = "alice"
    [slack]
    U024BE7LH = "alice"
    [webhook]
    ops-bot = "bob"

Re-read whenever its content changes (checked at each lookup; the SHA-256 of the bytes is the version). An
unreadable or invalid file maps nobody (fail closed) and :attr:`IdentityMap.error` says why.
"""

from __future__ import annotations

import hashlib
import json
import threading
import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from tern.models.limits import UserName


class _MapFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    matrix: dict[str, UserName] = {}
    slack: dict[str, UserName] = {}
    webhook: dict[str, UserName] = {}


class IdentityMap:
    """Hot-reloaded platform identity -> approver name map.

    Args:
        path: the map file, or None for an empty map.
        static: extra entries ``{platform: {identity: name}}`` (tests, ``tern up --with matrix``'s operator);
            the file wins on a clash.
    """

    def __init__(self, path: Path | None, static: dict[str, dict[str, str]] | None = None) -> None:
        self.path = path
        self.static = static or {}
        self.version = ""
        self.error: str | None = None
        self._map: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()

    def _load(self) -> dict[str, dict[str, str]]:
        merged = {p: dict(v) for p, v in self.static.items()}
        if self.path is None:
            return merged
        try:
            raw = self.path.read_bytes()
        except OSError as exc:
            self.error = f"identity map {self.path}: {exc}"
            return {}
        version = hashlib.sha256(raw).hexdigest()[:12]
        if version == self.version and self.error is None:
            return self._map
        try:
            data = json.loads(raw) if self.path.suffix == ".json" else tomllib.loads(raw.decode())
            parsed = _MapFile.model_validate(data)
        except (ValueError, ValidationError) as exc:
            self.error = f"identity map {self.path}: {exc}"
            self.version = version
            return {}
        self.error = None
        self.version = version
        for platform, entries in parsed.model_dump().items():
            merged.setdefault(platform, {}).update(entries)
        return merged

    def lookup(self, platform: str, identity: str) -> str | None:
        """The approver name of ``identity`` on ``platform`` (``matrix``, ``slack``, ``webhook``), or None when
        it is unmapped or the file is invalid."""
        with self._lock:
            self._map = self._load()
            return self._map.get(platform, {}).get(identity)
