"""The embedded Matrix homeserver's secrets on disk (issue 22): ``homeserver.yaml`` holds the registration shared
secret (it mints accounts, admin ones included), ``credentials.json`` the accounts' passwords. Both are created
mode 0600 in a 0700 folder whatever the process umask, using Synapse's real ``--generate-config``."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tern.embedded import matrix
from tern.embedded.net import free_port
from tests.conftest import unavailable


@pytest.fixture
def open_umask() -> Iterator[None]:
    """Umask 0 for the test: any file created without an explicit mode would be world-readable."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_private_creates_the_file_0600_and_replaces_a_wider_one(tmp_path: Path, open_umask: None) -> None:
    path = tmp_path / "credentials.json"
    matrix.write_private(path, '{"a": 1}')
    assert _mode(path) == 0o600 and path.read_text() == '{"a": 1}'
    path.chmod(0o644)  # an older install's file
    matrix.write_private(path, '{"a": 2}')
    assert _mode(path) == 0o600 and path.read_text() == '{"a": 2}'
    assert [p.name for p in tmp_path.iterdir()] == ["credentials.json"]  # no temporary file left


def test_homeserver_config_and_signing_key_are_private(tmp_path: Path, open_umask: None) -> None:
    try:
        import synapse  # noqa: F401
    except ImportError:
        unavailable("matrix-synapse is not installed (dev extra)")
    root = tmp_path / "data" / "matrix"
    config = matrix.write_config(root, free_port())
    assert _mode(root) == 0o700
    assert "registration_shared_secret" in config.read_text()
    written = [p for p in root.iterdir() if p.is_file()]
    assert config in written and any(p.name.endswith(".signing.key") for p in written)
    assert {p.name: _mode(p) for p in written} == {p.name: 0o600 for p in written}
    root.chmod(0o755)  # an older install's folder is narrowed at the next start
    config.chmod(0o644)
    matrix.write_config(root, free_port())
    assert _mode(root) == 0o700 and _mode(config) == 0o600
