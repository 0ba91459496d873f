"""``python -m tern.bluesky``: run a Bluesky queue server (Redis and the RE Manager, :mod:`tern.bluesky.server`) in
the foreground until SIGTERM or SIGINT, then stop both. Ports from ``TernSettings.bluesky``; files under
``<data_dir>/bluesky``. ``tern up --with bluesky`` runs this; ``tern down`` stops it."""

from __future__ import annotations

import logging
import signal
import sys
import threading


def main() -> int:
    from tern.bluesky.server import QueueServer, QueueServerError
    from tern.config import TernSettings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    log = logging.getLogger("tern.bluesky")
    s = TernSettings()
    server = QueueServer(s.data_dir / "bluesky", s.bluesky.redis_port, s.bluesky.control_port, s.bluesky.info_port)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        server.start(timeout_s=120)
    except QueueServerError as exc:
        log.error("%s", exc)
        return 1
    log.info("queue server on %s (Redis 127.0.0.1:%d)", server.control_addr, s.bluesky.redis_port)
    try:
        while not stop.wait(1.0):
            dead = [n for n, p in server.procs.items() if p.poll() is not None]
            if dead:
                log.error("%s exited; stopping", ", ".join(dead))
                return 1
        return 0
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
