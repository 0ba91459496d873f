"""``python -m tests.bluesky.follow_plan CONTROL INFO KEY``: submit ``count([det1], num=30, delay=0.2)`` with
idempotency key KEY and follow it, printing ``submitted <uid> <added>`` once added (the test SIGKILLs this
process while the plan runs)."""

from __future__ import annotations

import asyncio
import sys

from tern.bluesky.plans import PlanRequest, follow, submit_once

SLOW_PLAN = PlanRequest(name="count", args=[["det1"]], kwargs={"num": 30, "delay": 0.2})


async def main(control: str, info: str, key: str) -> None:
    from bluesky_queueserver_api.zmq.aio import REManagerAPI

    api = REManagerAPI(zmq_control_addr=control, zmq_info_addr=info)
    uid, added = await submit_once(api, SLOW_PLAN, key)
    print(f"submitted {uid} {added}", flush=True)
    outcome = await follow(api, uid)
    print(f"done {outcome.exit_status}", flush=True)
    await api.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
