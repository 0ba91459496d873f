"""A PVAccess write through the write activity (issue 24): limits check, the exactly-once ledger, verification
and the audit work as for Channel Access, on the session's simulator (which serves the same channels over both
protocols). The IOC's put log is the independent record: one put per approved write, under the bare name."""

from __future__ import annotations

import json
import time

import asyncpg
import pytest
from temporalio.testing import ActivityEnvironment

from activities.agent import AgentActivities
from tern.audit.invariants import check_writes, read_put_log
from tern.control import channel_access as ca
from tern.control.write import load_limits
from tern.models import AuditEvent
from tern.models.activity_io import WriteCheckInput, WriteInput
from tests.conftest import IOC_PUT_LOG

CHANNEL = "SR:MAG:QD:16:CURRENT:SP"  # no other test writes it


def _puts(name: str, value: float) -> int:
    lines = [json.loads(x) for x in IOC_PUT_LOG["path"].read_text().splitlines() if x.strip()]
    return sum(1 for p in lines if p["channel"] == name and p["value"] == pytest.approx(value))


async def test_pva_write_is_checked_written_once_verified_and_audited(settings) -> None:
    address = f"pva://{CHANNEL}"
    acts = AgentActivities(settings)
    env = ActivityEnvironment()
    since = time.time() - 1
    try:
        before = ca.read_value(CHANNEL)
        limits = load_limits(settings.control).channels[CHANNEL]
        assert limits.max_value is not None
        refused = await env.run(
            acts.check_write,
            WriteCheckInput(workflow_id="pva-run", step_id="w0", channel=address, value=limits.max_value + 1.0),
        )
        assert not refused.allowed and refused.violation == "above_max"  # pva:// has the bare name's limits
        target = round(before + 3.0, 3)
        check = await env.run(
            acts.check_write, WriteCheckInput(workflow_id="pva-run", step_id="w1", channel=address, value=target)
        )
        assert check.allowed, check.message
        assert check.current_value == pytest.approx(before)
        inp = WriteInput(
            workflow_id="pva-run",
            step_id="w1",
            idempotency_key="k-pva-1",
            channel=address,
            value=target,
            request_id="q1",
            approver="alice",
            approved_from=before,
        )
        decision = AuditEvent(  # the approval the workflow records before a write
            event_kind="decision",
            workflow_id="pva-run",
            event_key="d:k-pva-1",
            request_id="q1",
            actor="alice",
            decision="approved",
        )
        assert await env.run(acts.record_audit, decision)
        record = await env.run(acts.write_channel, inp)
        again = await env.run(acts.write_channel, inp)  # a retry of the same write: answered from the ledger
    finally:
        await acts.close()
    assert record.verified and record.channel == address, record.message
    assert record.verification == "readback" and "RB" in record.message
    assert again.model_dump() == record.model_dump()
    assert ca.read_value(CHANNEL) == pytest.approx(target)  # the independent view: Channel Access
    assert _puts(CHANNEL, target) == 1  # the IOC received exactly one put
    conn = await asyncpg.connect(settings.dsn)
    try:
        row = await conn.fetchrow("SELECT state, channel FROM write_ledger WHERE idempotency_key = 'k-pva-1'")
        assert dict(row) == {"state": "done", "channel": address}
        audit = await conn.fetchrow(
            "SELECT channel, value, verified, actor FROM audit_events WHERE event_key = 'write:k-pva-1'"
        )
        assert dict(audit) == {"channel": address, "value": target, "verified": True, "actor": "alice"}
        report = await check_writes(conn, read_put_log(IOC_PUT_LOG["path"], since=since))
        assert not [v for v in report.violations if v.channel == CHANNEL], report.violations
    finally:
        await conn.close()


async def test_image_reading_goes_to_an_artifact_the_sandbox_loads(settings, tmp_path) -> None:
    """An NTNDArray read by the read activity: a summary in the reading, the pixels in an artifact of the run, and
    the sandbox's load_image() gives them back as a numpy array (checked against the simulator's spot, computed
    here from its definition: Gaussian at row 20, column 30, sigma 6, peak 4000 over 100, uint16, 48x64)."""
    import numpy as np

    from tern.models.activity_io import ChannelReadInput
    from tern.sandbox.artifacts import load_artifact
    from tern.sandbox.runner import make_load_structured

    acts = AgentActivities(settings)
    try:
        channels = ["pva://SIM:CAMERA:IMAGE", "SR:MAG:QF:03:CURRENT:SP", "pva://SIM:BPM:TABLE"]
        readings = await ActivityEnvironment().run(
            acts.read_channels, ChannelReadInput(workflow_id="img-run", step_id="s1", channels=channels)
        )
        art = await load_artifact(await acts.pool(), readings[0].artifact_id or "")
    finally:
        await acts.close()
    assert [r.channel for r in readings] == channels
    assert readings[0].structured == "image" and readings[0].value == "NTNDArray image 48x64 uint16, min 100, max 4100"
    assert readings[1].structured is None and readings[1].artifact_id is None and isinstance(readings[1].value, float)
    assert readings[2].structured == "table" and readings[2].artifact_id
    assert art is not None and art.workflow_id == "img-run" and art.media_type == "application/x-npz"
    rows, cols = np.mgrid[0:48, 0:64]
    expected = (100 + 4000 * np.exp(-((rows - 20) ** 2 + (cols - 30) ** 2) / 72.0)).astype(np.uint16)
    (tmp_path / "s1__0.npz").write_bytes(art.content)
    step = {"readings": [r.model_dump(mode="json") for r in readings]}
    load_structured, load_image = make_load_structured({"s1": step, "s1__0": str(tmp_path / "s1__0.npz")})
    image = load_image("s1")
    assert image.dtype == np.uint16 and np.array_equal(image, expected)
    assert np.array_equal(load_structured("s1", "pva://SIM:CAMERA:IMAGE")["value"], expected)
    with pytest.raises(FileNotFoundError, match="no stored channel 'pva://SIM:BPM:TABLE'"):
        load_image("s1", "pva://SIM:BPM:TABLE")  # stored, but not given to this step as a file


@pytest.mark.load
async def test_fifty_concurrent_pva_write_activities(settings) -> None:
    """50 limits checks and then 50 approved writes at once, each its own pva:// setpoint, through the write
    activity (ledger, verification, audit) of one worker's AgentActivities: all allowed, all verified, one put
    each in the IOC's log, every value then read over Channel Access."""
    import asyncio

    from tests.test_pva import BURST

    # 50 claims then reads on a shared, loaded machine can take longer than the default put window (half of
    # the 10 s settle delay); a put past it is refused by design, which is not what this test is about.
    # Likewise the readbacks: the simulator recomputes the ring's closed orbit after each corrector put, one at a
    # time, so under load the 50th readback can come later than the session's 1.5 s.
    settings.control.write_settle_delay_s = 60.0
    settings.control.readback_timeout_s = 15.0
    acts = AgentActivities(settings)
    env = ActivityEnvironment()
    try:
        befores = [ca.read_value(n) for n in BURST]
        targets = [round(b + (1.0 if b < 0 else -1.0) + i / 1000, 3) for i, b in enumerate(befores)]
        checks = await asyncio.gather(
            *(
                env.run(
                    acts.check_write,
                    WriteCheckInput(workflow_id="burst", step_id=f"c{i}", channel=f"pva://{n}", value=t),
                )
                for i, (n, t) in enumerate(zip(BURST, targets, strict=True))
            )
        )
        assert all(c.allowed for c in checks), [c.message for c in checks if not c.allowed][:3]
        records = await asyncio.gather(
            *(
                env.run(
                    acts.write_channel,
                    WriteInput(
                        workflow_id="burst",
                        step_id=f"w{i}",
                        idempotency_key=f"k-burst-{i}",
                        channel=f"pva://{n}",
                        value=t,
                        request_id=f"q{i}",
                        approver="alice",
                        approved_from=c.current_value,
                    ),
                )
                for i, (n, t, c) in enumerate(zip(BURST, targets, checks, strict=True))
            )
        )
    finally:
        await acts.close()
    bad = [r for r in records if not r.verified]
    assert not bad, [r.message for r in bad[:3]]
    assert [ca.read_value(n) for n in BURST] == pytest.approx(targets)
    assert [_puts(n, t) for n, t in zip(BURST, targets, strict=True)] == [1] * len(BURST)
    conn = await asyncpg.connect(settings.dsn)
    try:
        done = await conn.fetchval("SELECT count(*) FROM write_ledger WHERE run_id = 'burst' AND state = 'done'")
        audited = await conn.fetchval(
            "SELECT count(*) FROM audit_events WHERE run_id = 'burst' AND event_kind = 'write' AND verified"
        )
    finally:
        await conn.close()
    assert (done, audited) == (50, 50)
