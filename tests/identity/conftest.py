"""Fixtures of the identity tests: SSH keys (ssh-keygen) and a real local OIDC issuer (oidc_issuer.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.identity.keys import make_key
from tests.identity.oidc_issuer import LocalIssuer


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Private key paths of alice, bob, carol, mallory (listed for nobody) and a matrix-bridge service."""
    d = tmp_path_factory.mktemp("ssh-keys")
    return {n: make_key(d, n) for n in ("alice", "bob", "carol", "mallory", "matrix-bridge")}


@pytest.fixture
def oidc_issuer() -> Iterator[LocalIssuer]:
    """A :class:`LocalIssuer` serving on a free loopback port for one test (client id ``tern-cli``, polling
    interval 1 s)."""
    with LocalIssuer() as issuer:
        yield issuer
