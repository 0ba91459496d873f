"""Matrix approval latency and fan-out on the embedded stack (``tern up --with matrix`` on free ports in a
temporary data directory: Temporal dev server, PostgreSQL, the simulated IOC, a worker, Synapse and the Matrix
bridge, all real), with the operator as a real Matrix client (matrix-nio).

1. ``--runs`` (20) write runs one after another; for each: request -> card visible (the request's
   ``requested_at``, stamped by the workflow, to the moment the operator's client receives the card), and the
   operator's reply -> the write's readback (to the audited ``write`` row, and to the card edit showing the
   verified readback, as the operator sees it). p50/p95.
2. ``--fanout`` (50) runs started at once, all waiting: each must get exactly one card (counted from the room's
   timeline as the operator receives it); the time from the first start to the last card. Then all are
   cancelled, and each card must be edited to "Cancelled".

    .venv/bin/python -m benchmarks.chat_matrix --json benchmarks/results/chat_matrix.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from nio import AsyncClient, RoomMessageText, RoomSendResponse

from benchmarks._common import percentile
from starters.matrix_bridge import SYNC_FILTER
from tern.embedded.net import free_port

CHANNELS = [f"SR:MAG:VCM:{n:02d}:CURRENT:SP" for n in range(1, 73)]  # -12..12 A, mid-range 0 at start


class Operator:
    """The operator's Matrix client: every bot message in the room with the local time it arrived."""

    def __init__(self, creds: Any) -> None:
        self.creds = creds
        self.client = AsyncClient(creds.homeserver, creds.operator.user_id)
        self.seen: list[tuple[float, Any]] = []

    async def start(self) -> None:
        await self.client.login(self.creds.operator.password)
        await self.client.sync(timeout=0, full_state=True)
        self.client.add_event_callback(self._on, RoomMessageText)

    async def _on(self, room: Any, event: Any) -> None:
        if room.room_id == self.creds.room_id and event.sender == self.creds.bot.user_id:
            self.seen.append((time.time(), event))

    async def until(self, pred: Any, within_s: float = 120) -> tuple[float, Any]:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            for t, e in self.seen:
                if pred(e):
                    return t, e
            await self.client.sync(timeout=200, sync_filter=SYNC_FILTER)
        raise RuntimeError("not seen in time")

    async def reply(self, to: str, text: str) -> None:
        resp = await self.client.room_send(
            self.creds.room_id,
            "m.room.message",
            {"msgtype": "m.text", "body": text, "m.relates_to": {"m.in_reply_to": {"event_id": to}}},
        )
        assert isinstance(resp, RoomSendResponse), resp


def is_card(rid: str) -> Any:
    def pred(e: Any) -> bool:
        c = e.source.get("content", {})
        return "Approval needed" in e.body and rid in e.body and "m.new_content" not in c and "m.relates_to" not in c

    return pred


def is_edit(card_id: str, word: str) -> Any:
    def pred(e: Any) -> bool:
        c = e.source.get("content", {})
        rel = c.get("m.relates_to") or {}
        return rel.get("rel_type") == "m.replace" and rel.get("event_id") == card_id and word in e.body

    return pred


def plan(channel: str, value: float) -> Any:
    from tern.models import Plan

    return Plan.model_validate(
        {
            "steps": [
                {"id": "write", "kind": "control_write", "channel": channel, "value": value, "reason": "bench"},
                {"id": "answer", "kind": "respond"},
            ]
        }
    )


async def bench(settings: Any, runs: int, fanout: int) -> dict[str, Any]:
    from starters.client import TernClient
    from tern.embedded.matrix import matrix_dir, read_credentials
    from tern.models import AgentRunRequest
    from workflows.agent_run import AgentRunWorkflow

    creds = read_credentials(matrix_dir(settings.data_dir) / "credentials.json")
    client = await TernClient.connect(settings)
    op = Operator(creds)
    await op.start()
    db = await asyncpg.connect(settings.dsn)

    async def waiting(handle: Any) -> Any:
        while True:
            st = await handle.query(AgentRunWorkflow.status)
            if st.pending is not None:
                return st.pending
            await asyncio.sleep(0.05)

    to_card, to_audit, to_edit = [], [], []
    for i in range(runs):
        req = AgentRunRequest(user="physicist", query="bench", plan=plan(CHANNELS[0], 0.1 if i % 2 == 0 else 0.0))
        handle = await client.start_run(req)
        pending = await waiting(handle)
        t_card, card = await op.until(is_card(pending.request_id))
        to_card.append(t_card - pending.requested_at.timestamp())
        t_reply = time.time()
        await op.reply(card.event_id, "approve")
        t_edit, _ = await op.until(is_edit(card.event_id, "Written and verified"))
        await handle.result()
        written = await db.fetchval(
            "SELECT occurred_at FROM audit_events WHERE request_id = $1 AND event_kind = 'write'", pending.request_id
        )
        to_audit.append(written.timestamp() - t_reply)
        to_edit.append(t_edit - t_reply)
        print(
            f"run {i + 1}/{runs}: card {to_card[-1]:.3f} s, readback audited {to_audit[-1]:.3f} s, "
            f"card edited {to_edit[-1]:.3f} s",
            flush=True,
        )

    t0 = time.time()
    handles = await asyncio.gather(
        *(
            client.start_run(AgentRunRequest(user="physicist", query="fan-out", plan=plan(CHANNELS[1 + i], 0.1)))
            for i in range(fanout)
        )
    )
    pendings = await asyncio.gather(*(waiting(h) for h in handles))
    rids = {p.request_id for p in pendings}
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        cards = [e for _, e in op.seen if "Approval needed" in e.body and "m.new_content" not in e.source["content"]]
        per = {rid: sum(1 for e in cards if rid in e.body) for rid in rids}
        if all(per.values()):
            break
        await op.client.sync(timeout=200, sync_filter=SYNC_FILTER)
    t_all = time.time() - t0
    await asyncio.sleep(5)  # let any duplicate arrive before counting
    await op.client.sync(timeout=1000, sync_filter=SYNC_FILTER)
    cards = [e for _, e in op.seen if "Approval needed" in e.body and "m.new_content" not in e.source["content"]]
    per = {rid: sum(1 for e in cards if rid in e.body) for rid in rids}
    card_ids = {rid: next(e.event_id for e in cards if rid in e.body) for rid in rids if per[rid]}
    await asyncio.gather(*(h.cancel() for h in handles))
    cancelled = 0
    for cid in card_ids.values():
        await op.until(is_edit(cid, "Cancelled"), 120)
        cancelled += 1
    await db.close()
    await op.client.close()
    return {
        "runs": runs,
        "request_to_card_s": {"p50": percentile(to_card, 50), "p95": percentile(to_card, 95), "all": to_card},
        "reply_to_readback_audited_s": {
            "p50": percentile(to_audit, 50),
            "p95": percentile(to_audit, 95),
            "all": to_audit,
        },
        "reply_to_card_readback_s": {"p50": percentile(to_edit, 50), "p95": percentile(to_edit, 95), "all": to_edit},
        "fanout": fanout,
        "fanout_cards_per_request": sorted(set(per.values())),
        "fanout_requests_with_exactly_one_card": sum(1 for v in per.values() if v == 1),
        "fanout_first_start_to_last_card_s": t_all,
        "fanout_cards_edited_cancelled": cancelled,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--fanout", type=int, default=50)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    from tern.config import TernSettings
    from tern.embedded.stack import EmbeddedStack

    with tempfile.TemporaryDirectory(prefix="chat-bench-") as tmp:
        os.environ.update({"TERN_APPROVAL__APPROVERS": '["operator"]', "TERN_CHAT__POLL_INTERVAL_S": "0.2"})
        settings = TernSettings(
            data_dir=Path(tmp),
            database={"pg_port": free_port()},
            control={"ca_server_port": free_port()},
            temporal={"address": f"127.0.0.1:{free_port()}", "ui_port": free_port()},
            chat={"matrix_port": free_port()},
        )
        stack = EmbeddedStack(settings, progress=print, extras=("matrix",))
        try:
            stack.up()
            out = asyncio.run(bench(settings, args.runs, args.fanout))
        finally:
            stack.down()
    out["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count(), "load": os.getloadavg()}
    out["when"] = datetime.now(UTC).isoformat()
    print(json.dumps({k: v for k, v in out.items()}, indent=2, default=str))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str))
    os._exit(0)


if __name__ == "__main__":
    main()
