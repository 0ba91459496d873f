"""Two throwaway benchmark stacks (benchmarks.load's environment, used by load, floors and soak) can run side by
side: every port a stack listens on is a free loopback port (``free_port``), never a fixed default.

Regression: the worker's HTTP endpoint kept its default 127.0.0.1:9464 (and the archiver 17668); a floors run
started beside a soak found 9464 held by the soak's worker, whose /readyz then answered for it ("worker:
started"), while its own worker exited "cannot bind 127.0.0.1:9464" in a restart loop and its runs never started;
the next floors run stopped at "cannot start archiver: 127.0.0.1:17668 is busy"."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.load import _environment
from tern.config import TernSettings

PORT_VARIABLES = (
    "TERN_DATABASE__PG_PORT",
    "TERN_TEMPORAL__UI_PORT",
    "TERN_CONTROL__CA_SERVER_PORT",
    "TERN_ARIEL__API_PORT",
    "TERN_ARCHIVER__PORT",
    "TERN_WORKER__HTTP_PORT",
)


def _ports(env: dict[str, str]) -> set[int]:
    return {int(env[k]) for k in PORT_VARIABLES} | {int(env["TERN_TEMPORAL__ADDRESS"].rsplit(":", 1)[1])}


def test_every_listening_port_is_the_stacks_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = _environment(tmp_path)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s = TernSettings()
    defaults = {9464, 7233, 8233, 55432, 5064, 17668, 8765}
    assert s.worker.http_port == int(env["TERN_WORKER__HTTP_PORT"]) and s.worker.http_port not in defaults
    assert s.archiver.port == int(env["TERN_ARCHIVER__PORT"]) and s.archiver.port not in defaults
    assert s.worker.http_host == "127.0.0.1"
    assert not _ports(env) & defaults
    assert env["TERN_TEMPORAL__ADDRESS"].startswith("127.0.0.1:")
