"""``python -m tests.ca_burst CHANNEL...``: many Channel Access activities at once, in a fresh process.

A worker that has just started has not used Channel Access yet; its first activities then run concurrently.
This script reproduces that: settings from the ``TERN_*`` environment (database, CA port, writes enabled), the
CA environment set as ``worker.main.run_worker`` sets it, then one ``check_write`` and one ``write_channel``
per channel (target: current value + 1.0 in engineering units), all started together with
``asyncio.gather``. Prints one JSON object: ``{"checks": [...], "writes": [...]}``, each item either the
activity's result or ``{"error": "..."}``. A crash of the process (libca segfault) shows as its exit status.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any


async def burst(channels: list[str]) -> dict[str, list[dict[str, Any]]]:
    from activities.agent import AgentActivities
    from tern.config import TernSettings
    from tern.control.channel_access import configure_environment
    from tern.models.activity_io import WriteCheckInput, WriteInput

    settings = TernSettings()
    configure_environment(settings.ca_environment())
    acts = AgentActivities(settings)
    await acts.pool()  # the pool (the settings fixture's database is migrated)

    async def one(coro: Any) -> dict[str, Any]:
        try:
            return (await coro).model_dump(mode="json")
        except Exception as exc:  # the outcome is the data here
            return {"error": f"{type(exc).__name__}: {exc}"}

    checks = await asyncio.gather(
        *(
            one(acts.check_write(WriteCheckInput(workflow_id="burst", step_id=f"c{i}", channel=ch, value=0.0)))
            for i, ch in enumerate(channels)
        )
    )
    currents = [c.get("current_value") for c in checks]
    writes = await asyncio.gather(
        *(
            one(
                acts.write_channel(
                    WriteInput(
                        workflow_id="burst",
                        step_id=f"w{i}",
                        idempotency_key=f"burst/{ch}",
                        channel=ch,
                        value=(cur if cur is not None else 0.0) + 1.0,
                        request_id="q",
                        approver="burst",
                        approved_from=cur,
                    )
                )
            )
            for i, (ch, cur) in enumerate(zip(channels, currents, strict=True))
        )
    )
    await acts.close()
    return {"checks": checks, "writes": writes}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(burst(sys.argv[1:]))))
