"""Fixtures of the identity tests: a real local OIDC issuer (tests/identity/oidc_issuer.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.identity.oidc_issuer import LocalIssuer


@pytest.fixture
def oidc_issuer() -> Iterator[LocalIssuer]:
    """A :class:`LocalIssuer` serving on a free loopback port for one test (client id ``tern-cli``, polling
    interval 1 s)."""
    with LocalIssuer() as issuer:
        yield issuer
