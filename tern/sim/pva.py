"""The simulated accelerator over PVAccess: p4p's server mirroring the caproto channels of
:class:`~tern.sim.accelerator.SimulatedAccelerator`.

One model, two protocols. Every numeric channel of the simulator is served as an ``NTScalar`` (``double`` or
``int``) of the same name, with units, precision and control/display limits. The caproto channel stays the one
state: a PVAccess put is written into it (through the same checks, put log, ignored setpoints and readback
following as a Channel Access put) and completes (``op.done()``) only after the model took it; every change of a
channel, whichever protocol or the dynamics caused it, is posted to its PVAccess twin with the channel's own
timestamp (the IOC clock, ``clock_offset_s``). A put the model refuses fails on the client with the model's
message; a put to an ignored setpoint completes without a new value or timestamp, as over Channel Access.
``SIM:SCENARIO`` (a string channel) stays Channel Access only.

Besides the mirrored channels, two structured channels exist only over PVAccess, for the structured-value path:
``SIM:CAMERA:IMAGE`` (an ``NTNDArray``, a 64x48 uint16 Gaussian spot) and ``SIM:BPM:TABLE`` (an ``NTTable`` of
BPM names and positions).

p4p server: https://epics-base.github.io/p4p/server.html (``p4p.server.Server``, ``p4p.server.asyncio.SharedPV``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from tern.sim.accelerator import SimulatedAccelerator, _Double, _Integer

log = logging.getLogger(__name__)
IMAGE_CHANNEL = "SIM:CAMERA:IMAGE"
TABLE_CHANNEL = "SIM:BPM:TABLE"
IMAGE_SHAPE = (48, 64)  # rows, columns


def server_config(port: int, interface: str = "127.0.0.1") -> dict[str, str]:
    """The p4p server configuration (``EPICS_PVAS_*``): TCP on ``interface:port``; no beacons elsewhere."""
    return {
        "EPICS_PVAS_INTF_ADDR_LIST": interface,
        "EPICS_PVAS_SERVER_PORT": str(port),
        "EPICS_PVAS_AUTO_BEACON_ADDR_LIST": "NO",
        "EPICS_PVAS_BEACON_ADDR_LIST": interface,
    }


def test_image() -> np.ndarray:
    """The camera's image: a uint16 Gaussian spot centred at (row 20, column 30), sigma 6 pixels, peak 4000
    over a floor of 100 (deterministic, so a test can compute what it must read back)."""
    rows, cols = np.mgrid[0 : IMAGE_SHAPE[0], 0 : IMAGE_SHAPE[1]]
    spot = 100 + 4000 * np.exp(-((rows - 20) ** 2 + (cols - 30) ** 2) / (2 * 6.0**2))
    return spot.astype(np.uint16)


class PVAMirror:
    """The PVAccess twins of a simulator's channels (build inside the running event loop).

    Args:
        sim: the simulator whose channels are mirrored.
    Attributes:
        pvs: channel name -> its ``SharedPV``.
    """

    def __init__(self, sim: SimulatedAccelerator) -> None:
        from p4p.nt import NTNDArray, NTScalar, NTTable
        from p4p.server.asyncio import SharedPV

        self.sim = sim
        self.pvs: dict[str, Any] = {}
        for name, ch in sim.pvdb.items():
            if isinstance(ch, _Double):
                nt = NTScalar("d", display=True, control=True)
            elif isinstance(ch, _Integer):
                nt = NTScalar("i", display=True, control=True)
            else:
                continue
            pv = SharedPV(nt=nt, initial=self._initial(ch), handler=_PutHandler(self, name))
            self.pvs[name] = pv
        self.pvs[IMAGE_CHANNEL] = SharedPV(nt=NTNDArray(), initial=test_image())
        table = NTTable([("name", "s"), ("x", "d"), ("y", "d")])
        rows = [{"name": f"SR:BPM:{i:02d}", "x": 0.01 * i, "y": -0.005 * i} for i in range(1, 13)]
        self.pvs[TABLE_CHANNEL] = SharedPV(nt=table, initial=table.wrap(rows))
        sim.listeners.append(self.changed)

    @staticmethod
    def _initial(ch: Any) -> dict[str, Any]:
        secs, frac = divmod(float(ch.timestamp), 1.0)
        v: dict[str, Any] = {
            "value": ch.value,
            "timeStamp.secondsPastEpoch": int(secs),
            "timeStamp.nanoseconds": int(frac * 1e9),
            "display.units": str(getattr(ch, "units", "") or ""),
        }
        lo, hi = getattr(ch, "lower_ctrl_limit", 0), getattr(ch, "upper_ctrl_limit", 0)
        if lo != hi:
            v.update({"control.limitLow": lo, "control.limitHigh": hi, "display.limitLow": lo, "display.limitHigh": hi})
        return v

    def changed(self, name: str, ch: Any) -> None:
        """Post a channel's new value and timestamp to its twin (a :attr:`SimulatedAccelerator.listeners` entry)."""
        pv = self.pvs.get(name)
        if pv is not None and pv.isOpen():
            pv.post(ch.value, timestamp=float(ch.timestamp))

    def provider(self) -> Any:
        """A p4p ``StaticProvider`` holding every twin."""
        from p4p.server import StaticProvider

        prov = StaticProvider("tern-sim")
        for name, pv in self.pvs.items():
            prov.add(name, pv)
        return prov


class _PutHandler:
    """Writes a PVAccess put into the caproto channel, then completes it (or fails it with the model's error)."""

    def __init__(self, mirror: PVAMirror, name: str) -> None:
        self.mirror = mirror
        self.name = name

    async def put(self, pv: Any, op: Any) -> None:
        ch = self.mirror.sim.pvdb[self.name]
        try:
            raw = op.value()
            value = int(raw) if isinstance(ch, _Integer) else float(raw)
            await ch.write(value)  # publishes -> PVAMirror.changed posts the new value and IOC timestamp
        except Exception as exc:  # refused by the model (limits, bad value): the client's put fails with this
            op.done(error=f"{self.name}: {exc}")
            return
        op.done()


class PVAServer:
    """p4p's server for a :class:`PVAMirror`; a context manager (stopped on exit).

    Args:
        mirror: the twins to serve.
        conf: :func:`server_config`.
    Raises ``RuntimeError`` when the server cannot start or its port is taken (PVXS would fall back to a random
    port, which no client configured for this one would find).
    """

    def __init__(self, mirror: PVAMirror, conf: Mapping[str, str]) -> None:
        from p4p.server import Server

        self.server = Server(providers=[mirror.provider()], conf=dict(conf), useenv=False)
        wanted, bound = conf.get("EPICS_PVAS_SERVER_PORT"), self.conf().get("EPICS_PVAS_SERVER_PORT")
        if wanted and wanted != bound:
            self.server.stop()
            raise RuntimeError(f"PVAccess port {wanted} is taken (another server listens there); not serving")

    def conf(self) -> dict[str, str]:
        """The configuration in force (``EPICS_PVAS_SERVER_PORT`` is the port actually bound)."""
        return dict(self.server.conf())

    def __enter__(self) -> PVAServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()
