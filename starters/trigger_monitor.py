"""``python -m starters.trigger_monitor``: the trigger monitor process (``tern up`` component ``triggers``).

Watches the channel triggers of PostgreSQL's ``triggers`` table over Channel Access
(:class:`tern.triggers.monitor.TriggerMonitor`) and starts one agent run per event through the Temporal client
(:func:`starters.triggers.start_triggered`: the deterministic Workflow ID is the dedup). In ``starters/``
because it starts workflows (``tern/`` imports no Temporal). Runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from tern.config import TernSettings
from tern.models.trigger import TriggerDefinition

log = logging.getLogger("tern.triggers")


def channel_starter(client: Any, settings: TernSettings) -> Any:
    """The :data:`tern.triggers.monitor.Starter` that starts a channel trigger's run on ``client``: nothing when the
    id exists or existed, or when the previous dedup bucket's run came less than ``triggers.dedup_window_s`` before
    the event (its ``timestamp``, the IOC's)."""
    from starters.triggers import start_triggered, trigger_request
    from tern.triggers.detect import channel_run_id

    window = settings.triggers.dedup_window_s

    async def start(d: TriggerDefinition, event: dict[str, Any], workflow_id: str) -> str | None:
        request = trigger_request(settings, d.name, "channel", d.action, event)
        at = float(event["timestamp"])
        previous = channel_run_id(d.name, str(event["channel"]), at - window, window)
        return await start_triggered(client, settings, request, workflow_id, at=at, previous_id=previous)

    return start


async def serve(settings: TernSettings, stop: asyncio.Event | None = None) -> None:
    """Run the monitor for ``settings`` until ``stop`` is set (or the task is cancelled)."""
    from starters.client import TernClient
    from tern.control.ca_context import configure_environment
    from tern.db import create_pool
    from tern.triggers.monitor import READY_MESSAGE, TriggerMonitor

    configure_environment(settings.ca_environment())
    client = (await TernClient.connect(settings)).client
    pool = await create_pool(settings.writer_dsn, max_size=2)
    log.info(READY_MESSAGE)
    monitor = TriggerMonitor(settings, pool, channel_starter(client, settings))
    task = asyncio.create_task(monitor.run())
    try:
        if stop is None:
            await task
        else:
            await stop.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await pool.close()
        log.info("trigger monitor stopped: %s", monitor.counts)


def main() -> None:
    """Entry point: log to stderr, stop cleanly on SIGTERM/SIGINT."""
    from starters.common import hard_exit

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = TernSettings()

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info("trigger monitor: watching channel triggers (re-read every %g s)", settings.triggers.poll_s)
        await serve(settings, stop)

    asyncio.run(run())
    hard_exit(0)


if __name__ == "__main__":
    main()
