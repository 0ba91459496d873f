"""Channel Access under concurrency (issue 16, defect 5): many activities at once in a worker that has just
started must all succeed, with no CA context error and no libca crash."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

BURST_CHANNELS = [f"SR:MAG:VCM:{n:02d}:CURRENT:SP" for n in range(1, 51)]  # no other test writes these


@pytest.mark.load
def test_fifty_concurrent_checks_and_writes_in_a_fresh_process(settings) -> None:
    env = {
        **os.environ,
        "TERN_DATABASE__URL": settings.dsn,
        "TERN_CONTROL__CA_SERVER_PORT": str(settings.control.ca_server_port),
        "TERN_CONTROL__WRITES_ENABLED": "true",
        "TERN_CONTROL__READBACK_TIMEOUT_S": "5",
        "TERN_DATA_DIR": str(settings.data_dir),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "tests.ca_burst", *BURST_CHANNELS], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"burst process died ({proc.returncode}): {proc.stderr[-3000:]}"
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    bad_checks = [
        (ch, c) for ch, c in zip(BURST_CHANNELS, out["checks"], strict=True) if "error" in c or not c["allowed"]
    ]
    assert not bad_checks, bad_checks[:3]
    bad_writes = [
        (ch, w) for ch, w in zip(BURST_CHANNELS, out["writes"], strict=True) if "error" in w or not w["verified"]
    ]
    assert not bad_writes, bad_writes[:3]
    assert "context" not in proc.stderr.lower(), proc.stderr[-2000:]
    from tern.control.channel_access import read_value

    for ch, w in zip(BURST_CHANNELS, out["writes"], strict=True):
        assert read_value(ch) == pytest.approx(w["value"])
