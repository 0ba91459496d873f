"""Fixtures for the sandbox tests: the real Docker engine and the real sandbox image (no mocks).

Without an engine or image the Docker tests skip locally and FAIL in CI (``TERN_REQUIRE_ALL=1``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tern.sandbox import SandboxLimits
from tern.sandbox.docker_backend import LABEL, DockerBackend
from tests.conftest import TEST_RUN_ID


@pytest.fixture
def no_leftovers(docker_backend: DockerBackend) -> Iterator[None]:
    """Assert after the test that no container of this test run remains (running or stopped)."""
    yield
    leftovers = docker_backend.client.api.containers(
        all=True, filters={"label": [f"{LABEL}=1", f"tern.run_id={TEST_RUN_ID}"]}
    )
    assert not leftovers, f"sandbox containers left behind: {[c['Id'][:12] for c in leftovers]}"


@pytest.fixture
def limits() -> SandboxLimits:
    """Small limits so abuse cases end fast: 5 s, 192 MiB, 1 CPU, 32 PIDs."""
    return SandboxLimits(timeout_s=5, memory_bytes=192 * 2**20, cpus=1.0, pids=32, stdout_bytes=16 * 1024)
