"""Keys for the identity tests: one set per session (ssh-keygen takes a few milliseconds each, but many tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.identity.keys import make_key


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Private key paths of alice, bob, carol, mallory (listed for nobody) and a matrix-bridge service."""
    d = tmp_path_factory.mktemp("ssh-keys")
    return {n: make_key(d, n) for n in ("alice", "bob", "carol", "mallory", "matrix-bridge")}
