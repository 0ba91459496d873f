"""``python -m tern.bluesky`` (what ``tern up --with bluesky`` runs): a queue server that answers, and that stops
with its Redis and RE Manager on SIGTERM (``tern down``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from tern.embedded.net import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_service_answers_and_stops_with_its_children(tmp_path: Path, bluesky_installed: None) -> None:
    from bluesky_queueserver_api.zmq import REManagerAPI

    control, info, redis = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TERN_DATA_DIR": str(tmp_path),
        "TERN_BLUESKY__CONTROL_PORT": str(control),
        "TERN_BLUESKY__INFO_PORT": str(info),
        "TERN_BLUESKY__REDIS_PORT": str(redis),
    }
    log = open(tmp_path / "service.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "tern.bluesky"], env=env, stdout=log, stderr=subprocess.STDOUT)
    api = REManagerAPI(
        zmq_control_addr=f"tcp://127.0.0.1:{control}", zmq_info_addr=f"tcp://127.0.0.1:{info}", timeout_recv=2.0
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (tmp_path / "service.log").read_text()[-2000:]
            try:
                status = api.status()
                break
            except Exception:
                assert time.monotonic() < deadline, "the queue server did not answer"
        assert status["manager_state"] == "idle"
        assert sorted(api.plans_allowed()["plans_allowed"]) == ["count", "list_scan", "rel_scan", "scan"]
        children = psutil.Process(proc.pid).children(recursive=True)
        names = {" ".join(c.cmdline()) for c in children}
        assert any("redis-server" in n for n in names) and any("start-re-manager" in n for n in names), names
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        _gone, alive = psutil.wait_procs(children, timeout=30)
        assert not alive, [c.cmdline() for c in alive]
    finally:
        api.close()
        if proc.poll() is None:
            proc.kill()
        log.close()
