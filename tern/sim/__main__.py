"""``python -m tern.sim``: run the simulated accelerator's Channel Access server in the foreground, and (unless
``TERN_SIM__PVA=false``) the same channels over PVAccess on ``TERN_CONTROL__PVA_SERVER_PORT`` (:mod:`tern.sim.pva`).

Reads ``TernSettings`` (limits database, CA and PVA ports, readback lag, stuck and slow readbacks, ignored
setpoints, IOC clock offset, put log) and the ring settings (the storage ring served from the mapping's pyAT
lattice with seeded errors, ``ring.sim_enabled``); listens on 127.0.0.1 only. Exits with an error when the
PVAccess port is taken.
"""

from __future__ import annotations

import asyncio
import logging
import os


def main() -> None:
    from tern.config import TernSettings

    settings = TernSettings()
    os.environ["EPICS_CA_SERVER_PORT"] = str(settings.control.ca_server_port)
    os.environ.setdefault("EPICS_CAS_INTF_ADDR_LIST", "127.0.0.1")
    from tern.control.limits import LimitsDatabase
    from tern.sim.accelerator import SimulatedAccelerator

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    ring = None
    if settings.ring.sim_enabled:
        from tern.ring.model import MachineErrors
        from tern.sim.ring import RingSimulation

        errors = MachineErrors(seed=settings.ring.sim_error_seed).scaled(settings.ring.sim_error_scale)
        ring = RingSimulation(settings.ring.mapping_path, errors, settings.ring.sim_recompute_min_s)
    sim = SimulatedAccelerator(
        LimitsDatabase.load(settings.control.limits_path, allow_unlisted=True),
        readback_lag_s=settings.sim.readback_lag_s,
        stuck_readbacks=set(settings.sim.stuck_readbacks),
        slow_readbacks=dict(settings.sim.slow_readbacks),
        ignored_setpoints=set(settings.sim.ignored_setpoints),
        clock_offset_s=settings.sim.clock_offset_s,
        update_period_s=settings.sim.update_period_s,
        put_log=settings.sim.put_log_path,
        ring=ring,
    )
    logging.getLogger("tern.sim").info(
        "serving %d channels on 127.0.0.1:%d", len(sim.pvdb), settings.control.ca_server_port
    )
    asyncio.run(_serve_both(sim, settings.control.pva_server_port if settings.sim.pva else None))


async def _serve_both(sim: object, pva_port: int | None) -> None:
    from tern.sim.accelerator import SimulatedAccelerator, serve

    assert isinstance(sim, SimulatedAccelerator)
    if pva_port is None:
        await serve(sim, ["127.0.0.1"])
        return
    from tern.sim.pva import PVAMirror, PVAServer, server_config

    with PVAServer(PVAMirror(sim), server_config(pva_port)):
        logging.getLogger("tern.sim").info("serving %d channels over PVAccess on 127.0.0.1:%d", len(sim.pvdb), pva_port)
        await serve(sim, ["127.0.0.1"])


if __name__ == "__main__":
    main()
