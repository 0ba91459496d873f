"""The Bluesky queue server fixture: a real ``start-re-manager`` with Debian's ``redis-server`` on loopback."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from tern.embedded.net import free_port
from tests.conftest import unavailable


@pytest.fixture(scope="session")
def bluesky_installed() -> None:
    """Skip (or fail under TERN_REQUIRE_ALL=1) when the bluesky extra or Debian's redis-server is missing."""
    try:
        import bluesky_queueserver  # noqa: F401
        import bluesky_queueserver_api  # noqa: F401
    except ImportError:
        unavailable("the bluesky extra (bluesky-queueserver, bluesky-queueserver-api) is not installed")
    if shutil.which("redis-server") is None:
        unavailable("Debian's redis-server is not installed (scripts/system-deps.sh)")


@pytest.fixture(scope="session")
def queue_server(tmp_path_factory: pytest.TempPathFactory, bluesky_installed: None) -> Iterator[object]:
    """A started :class:`tern.bluesky.server.QueueServer` on free loopback ports."""
    from tern.bluesky.server import QueueServer

    server = QueueServer(tmp_path_factory.mktemp("qserver"), free_port(), free_port(), free_port())
    server.start(timeout_s=90)
    yield server
    server.stop()
