"""The embedded stack's bookkeeping: stale PID files are recognised (no services needed)."""

from __future__ import annotations

import os

from tern.config import TernSettings
from tern.embedded.net import free_port
from tern.embedded.stack import COMPONENTS, EmbeddedStack


def test_stale_pid_files_are_reported_dead(tmp_path) -> None:
    settings = TernSettings(data_dir=tmp_path, pg_port=free_port(), ca_server_port=free_port(),
                            temporal_address=f"127.0.0.1:{free_port()}")
    stack = EmbeddedStack(settings)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "sim.pid").write_text("999999")  # no such process
    (tmp_path / "run" / "worker.pid").write_text(str(os.getpid()))  # alive, but not a Tern worker
    (tmp_path / "run" / "temporal.pid").write_text("not a pid")
    states = {c.name: (c.state, c.detail) for c in stack.status().components}
    assert set(states) == set(COMPONENTS)
    assert states["sim"][0] == "dead" and "PID file" in states["sim"][1]
    assert states["worker"][0] == "dead"
    assert states["temporal"][0] == "dead"
    assert states["postgres"][0] == "stopped"
