"""``python -m tern.archiver``: the embedded archiver (part of ``tern up``) in the foreground.

Opens PostgreSQL (``database_url`` / the embedded server), generates the first-start history
(``archiver_backfill_days``), monitors ``archiver_channels`` over Channel Access (``ca_*`` settings) and serves the
Appliance retrieval API on 127.0.0.1:``archiver_port`` until SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime


async def serve() -> None:
    """Run backfill, monitor and HTTP server until cancelled or the server stops."""
    import uvicorn

    from tern.archiver.backfill import backfill
    from tern.archiver.monitor import ChannelMonitor
    from tern.archiver.server import create_app
    from tern.archiver.store import ArchiveStore
    from tern.config import TernSettings
    from tern.control.ca_context import configure_environment
    from tern.db import create_pool

    s = TernSettings()
    configure_environment(s.ca_environment())
    pool = await create_pool(s.dsn)
    store = ArchiveStore(pool)
    monitor = ChannelMonitor(store, s.archiver.channels)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(store, monitor.connected),
            host="127.0.0.1",
            port=s.archiver.port,
            log_level="warning",
            lifespan="off",
        )
    )
    log = logging.getLogger("tern.archiver")
    try:
        written = await backfill(
            store,
            s.archiver.channels,
            end=datetime.now(UTC),
            days=s.archiver.backfill_days,
            period_s=s.archiver.backfill_period_s,
            limits_path=s.control.limits_path,
        )
        log.info("history generated for %d channels", len(written))
        await monitor.start()
        sampling = asyncio.create_task(monitor.run())
        log.info("archiving %d channels; retrieval API on 127.0.0.1:%d", len(s.archiver.channels), s.archiver.port)
        try:
            await server.serve()
        finally:
            sampling.cancel()
            await asyncio.gather(sampling, return_exceptions=True)
    finally:
        monitor.stop()
        await pool.close()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(serve())


if __name__ == "__main__":
    main()
