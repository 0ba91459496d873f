"""The Tern worker: one process polling the Tern task queue with every workflow and activity registered.

``tern worker`` (or ``python -m worker.main``) runs it until SIGINT/SIGTERM, then drains gracefully.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
from datetime import timedelta

import asyncpg
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from activities.agent import AgentActivities
from activities.ariel import ariel_activities
from tern.config import TernSettings
from tern.control.channels import configure_environment
from tern.db import create_pool
from workflows.agent_run import AgentRunWorkflow
from workflows.logbook_ingestion import ARIEL_WORKFLOWS

log = logging.getLogger("tern.worker")

WORKFLOWS: Sequence[type] = (AgentRunWorkflow, *ARIEL_WORKFLOWS)
GRACEFUL_SHUTDOWN = timedelta(seconds=10)


async def connect(settings: TernSettings) -> Client:
    """A Temporal client for ``settings`` with the pydantic data converter."""
    return await Client.connect(
        settings.temporal_address, namespace=settings.temporal_namespace, data_converter=pydantic_data_converter
    )


def build_worker(client: Client, settings: TernSettings, pool: asyncpg.Pool) -> Worker:
    """A worker on ``settings.task_queue`` with all Tern workflows and activities, sharing ``pool``."""
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=list(WORKFLOWS),
        activities=[*AgentActivities(settings, pool).all(), *ariel_activities(settings, pool)],
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
        max_concurrent_activities=50,
    )


async def run_worker(settings: TernSettings, stop: asyncio.Event | None = None) -> None:
    """Connect, migrate the database, and poll until ``stop`` is set (or SIGINT/SIGTERM)."""
    configure_environment(settings.ca_environment())
    pool = await create_pool(settings.dsn)
    client = await connect(settings)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with build_worker(client, settings, pool):
            log.info("worker polling %s on %s", settings.task_queue, settings.temporal_address)
            await stop.wait()
    finally:
        await pool.close()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(run_worker(TernSettings()))


if __name__ == "__main__":
    main()
