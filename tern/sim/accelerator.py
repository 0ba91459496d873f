"""A simulated accelerator: one caproto Channel Access server serving every channel of a limits database.

- every ``...:SP`` setpoint has a readback ``...:RB`` that follows it ``readback_lag_s`` after a write (for
  testing verification: setpoints in ``slow_readbacks`` use their own lag; readbacks of setpoints listed in
  ``stuck_readbacks`` never move; setpoints in ``ignored_setpoints`` complete every put without processing it,
  value and timestamp unchanged, as an IOC that silently drops puts);
- every value is stamped by the simulated IOC's clock, ``clock_offset_s`` away from this host's (an IOC on
  another host whose clock differs);
- setpoints start at the middle of their [min, max] band, with control and display limits set from it;
- diagnostics (temperatures, BPM positions, pressures, dose rates, RF power, beam current) drift slowly as a
  bounded random walk; status channels are integers (READY/ON/VALID/CONNECTED/OPEN = 1, FAULT/ALARM = 0);
- scenarios: a client writes ``trip cavity<N>`` to the string channel ``SIM:SCENARIO`` (``tern sim trip
  cavity1``) and cavity N's reflected power ``SR:RF:CAVITY:0N:POWER:REV`` jumps to ``TRIP_PEAK`` (above the
  40 kW of the issue-12 demo trigger), then decays back to its drift band (:meth:`SimulatedAccelerator.trip`);
- with ``ring`` set (:class:`tern.sim.ring.RingSimulation`), the storage ring's mapped magnets act on one pyAT
  lattice with seeded errors when their readbacks follow, and the mapped BPM positions, ``SR:DIAG:TUNE:X/Y`` and
  ``SR:DIAG:CHROM:X/Y`` are that machine's closed orbit (plus noise), tunes and chromaticity instead of drifts;
- with ``put_log`` set, every put a setpoint receives is appended to that file as one JSON line
  (``{"channel", "value", "ioc_time", "host_time", "processed"}``), flushed at once: the IOC's own record of
  what it was told to do, which :mod:`tern.audit.invariants` compares with the audit table.

Protocol: caproto's asyncio server (https://caproto.github.io/caproto/), on the interfaces and port given (set
``EPICS_CA_SERVER_PORT`` for the port, as caproto reads it from the environment). The same channels are served
over PVAccess by :mod:`tern.sim.pva`: the caproto channels are the model's one state, and every change of a
channel (a put from either protocol, a readback following, drift) is told to :attr:`SimulatedAccelerator.listeners`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from caproto import ChannelData, ChannelDouble, ChannelInteger, ChannelString, SkipWrite

from tern.control.limits import LimitsDatabase
from tern.control.units import units_for
from tern.sim.ring import RingSimulation

log = logging.getLogger(__name__)

_ONE = ("READY", "ON", "VALID", "CONNECTED", "OPEN")
_ZERO = ("FAULT", "ALARM", "INTERLOCK", "CLOSE", "CLOSED")
_DRIFT = {  # quantity -> (start, step per tick, lower, upper)
    "TEMPERATURE": (32.0, 0.02, 25.0, 45.0),
    "PRESSURE": (2e-10, 2e-12, 5e-11, 1e-9),
    "DOSE_RATE": (0.5, 0.01, 0.0, 5.0),
    "FWD": (450.0, 0.5, 400.0, 500.0),
    "REV": (8.0, 0.1, 2.0, 20.0),
    "NET": (442.0, 0.5, 380.0, 498.0),
    "POWER": (300.0, 0.5, 250.0, 350.0),
}
SCENARIO_CHANNEL = "SIM:SCENARIO"
"""String channel of the simulator's scenarios (not in the limits database: Tern never reads or writes it)."""
TRIP_PEAK = 45.0  # kW: a trip's reflected power right after the trip
TRIP_DECAY_S = 3.0  # time constant of the decay back to the drift band, seconds


class ScenarioError(ValueError):
    """A scenario the simulator does not know; the message lists the known ones."""


def trip_channel(target: str) -> str:
    """The channel a ``trip <target>`` scenario moves: ``cavity<N>`` (N 1..9) -> ``SR:RF:CAVITY:0N:POWER:REV``.
    Raises :class:`ScenarioError` for another target."""
    if len(target) == 7 and target.startswith("cavity") and target[6] in "123456789":
        return f"SR:RF:CAVITY:0{target[6]}:POWER:REV"
    raise ScenarioError(f"unknown trip target {target!r}: cavity1 .. cavity9")


class _Notifying(ChannelData):
    """A channel that tells its simulator's listeners after each change it publishes (value and timestamp
    updated): the hook the PVAccess server mirrors the model through."""

    sim: SimulatedAccelerator | None = None
    pv_name = ""

    async def publish(self, flags: Any) -> None:
        await super().publish(flags)
        if self.sim is not None:
            self.sim.changed(self.pv_name, self)


class _Double(_Notifying, ChannelDouble):
    """A double channel that notifies (:class:`_Notifying`)."""


class _Integer(_Notifying, ChannelInteger):
    """An integer channel that notifies (:class:`_Notifying`)."""


@dataclass
class _Follow:
    readback: str
    value: float
    due: float  # monotonic seconds


@dataclass
class SimulatedAccelerator:
    """Builds the channel database and runs the dynamics.

    Args:
        limits: the limits database whose channels are served.
        readback_lag_s: seconds between a setpoint write and its readback following.
        stuck_readbacks: setpoint names whose readbacks never follow.
        slow_readbacks: setpoint name -> its own readback lag, seconds.
        ignored_setpoints: setpoint names that complete a put without processing it.
        clock_offset_s: the IOC clock's offset from this host's (time.time()), seconds.
        update_period_s: simulation tick in seconds.
        seed: random seed for the drift (deterministic runs in tests).
        put_log: file receiving one JSON line per put to a setpoint, or None.
        ring: the storage ring's lattice simulation, or None (every BPM drifts, no tune channels).
    """

    limits: LimitsDatabase
    readback_lag_s: float = 0.3
    stuck_readbacks: set[str] = field(default_factory=set)
    slow_readbacks: dict[str, float] = field(default_factory=dict)
    ignored_setpoints: set[str] = field(default_factory=set)
    clock_offset_s: float = 0.0
    update_period_s: float = 0.1
    seed: int = 1
    put_log: Path | None = None
    ring: RingSimulation | None = None
    pvdb: dict[str, ChannelData] = field(init=False, default_factory=dict)
    listeners: list[Callable[[str, ChannelData], None]] = field(init=False, default_factory=list)
    _pending: list[_Follow] = field(init=False, default_factory=list)
    _drifting: dict[str, tuple[float, float, float]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._put_log: IO[str] | None = None
        if self.put_log is not None:
            self.put_log.parent.mkdir(parents=True, exist_ok=True)
            self._put_log = open(self.put_log, "a", encoding="utf-8")  # kept open for the server's life
        for name, lim in self.limits.channels.items():
            self.pvdb[name] = self._make(name, lim.min_value, lim.max_value)
        self.pvdb[SCENARIO_CHANNEL] = _Scenario(self, value="")
        if self.ring is not None:
            for name, value in self.ring.readings().items():
                self._drifting.pop(name, None)
                units = "mm" if self.ring.is_bpm(name) else ""
                self.pvdb[name] = _Double(timestamp=self.now(), value=value, units=units, precision=5)
        for name, ch in self.pvdb.items():
            if isinstance(ch, _Notifying):
                ch.sim, ch.pv_name = self, name
        self._tasks: set[asyncio.Task[None]] = set()

    def changed(self, name: str, channel: ChannelData) -> None:
        """Tell every listener that ``channel`` (named ``name``) has a new value or timestamp. A listener that
        raises is logged and kept (the model goes on)."""
        for listener in self.listeners:
            try:
                listener(name, channel)
            except Exception:
                log.exception("listener of %s failed", name)

    def now(self) -> float:
        """The IOC clock: POSIX seconds, ``clock_offset_s`` from this host's clock."""
        return time.time() + self.clock_offset_s

    def _make(self, name: str, lo: float | None, hi: float | None) -> ChannelData:
        parts = name.split(":")
        last = parts[-1]
        units = units_for(name)
        ts = self.now()  # stamped by the IOC clock (caproto would use this host's time.time())
        if last in _ONE or last in _ZERO:
            return _Integer(timestamp=ts, value=1 if last in _ONE else 0)
        if last == "SP":
            mid = 0.0 if lo is None or hi is None else round((lo + hi) / 2, 4)
            kw: dict[str, Any] = {}
            if lo is not None and hi is not None:
                kw = dict(lower_ctrl_limit=lo, upper_ctrl_limit=hi, lower_disp_limit=lo, upper_disp_limit=hi)
            return _Setpoint(self, name, timestamp=ts, value=mid, units=units, precision=4, **kw)
        if last in ("RB", "GOLDEN"):
            sp = self.limits.channels.get(":".join(parts[:-1]) + ":SP")
            if sp is not None and sp.min_value is not None and sp.max_value is not None:
                mid = round((sp.min_value + sp.max_value) / 2, 4)
                return _Double(timestamp=ts, value=mid, units=units, precision=4)
        quantity = next((q for q in _DRIFT if q in parts), None)
        if last in ("X", "Y") and "POSITION" in parts:
            self._drifting[name] = (0.002, -0.05, 0.05)
            return _Double(timestamp=ts, value=0.0, units=units, precision=4)
        if "DCCT" in parts:
            self._drifting[name] = (0.05, 495.0, 505.0)
            return _Double(timestamp=ts, value=500.0, units=units, precision=3)
        if quantity is not None:
            start, step, low, high = _DRIFT[quantity]
            self._drifting[name] = (step, low, high)
            return _Double(timestamp=ts, value=start, units=units, precision=4)
        return _Double(timestamp=ts, value=0.0, units=units, precision=4)

    def log_put(self, name: str, value: float, processed: bool) -> None:
        """Append one put to the put log (when configured), flushed so a killed IOC loses none."""
        if self._put_log is None:
            return
        line = {
            "channel": name,
            "value": value,
            "ioc_time": self.now(),
            "host_time": time.time(),
            "processed": processed,
        }
        self._put_log.write(json.dumps(line) + "\n")
        self._put_log.flush()

    def model(self, name: str) -> tuple[float, float, float, float] | None:
        """How channel ``name`` behaves: ``(start value, drift step per second, lower bound, upper bound)``; a
        channel that does not drift has step 0 and bounds equal to its value. None for a channel not served."""
        ch = self.pvdb.get(name)
        if ch is None:
            return None
        value = float(ch.value)
        step, low, high = self._drifting.get(name, (0.0, value, value))
        return value, step, low, high

    def on_setpoint(self, name: str, value: float) -> None:
        """Schedule the readback of setpoint ``name`` to follow ``value`` (called by the IOC on write)."""
        if name in self.stuck_readbacks or name in self.ignored_setpoints:
            return
        rb = name[: -len(":SP")] + ":RB"
        if rb in self.pvdb:
            lag = self.slow_readbacks.get(name, self.readback_lag_s)
            self._pending.append(_Follow(rb, float(value), time.monotonic() + lag))

    def scenario(self, text: str) -> None:
        """Start scenario ``text`` (``trip cavity<N>``) on the running event loop. Raises :class:`ScenarioError`
        for an unknown scenario or a channel this simulator does not serve."""
        words = text.split()
        if len(words) != 2 or words[0] != "trip":
            raise ScenarioError(f"unknown scenario {text!r}: 'trip cavity<N>'")
        channel = trip_channel(words[1])
        if channel not in self.pvdb:
            raise ScenarioError(f"{channel} is not served by this simulator")
        task = asyncio.get_running_loop().create_task(self.trip(channel))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def trip(self, channel: str, peak: float = TRIP_PEAK, decay_s: float = TRIP_DECAY_S) -> None:
        """Jump ``channel`` to ``peak`` (stamped by the IOC clock), then decay exponentially (time constant
        ``decay_s``) to the top of its drift band and let it drift again. Drift is off meanwhile."""
        drift = self._drifting.pop(channel, None)
        ch = self.pvdb[channel]
        base = drift[2] if drift else float(ch.value)
        log.info("scenario: trip of %s to %g", channel, peak)
        try:
            await ch.write(peak, timestamp=self.now())
            start = time.monotonic()
            while True:
                await asyncio.sleep(self.update_period_s)
                v = base + (peak - base) * math.exp(-(time.monotonic() - start) / decay_s)
                if v - base < 0.05:
                    break
                await ch.write(v, timestamp=self.now())
            await ch.write(base, timestamp=self.now())
        finally:
            if drift is not None:
                self._drifting[channel] = drift

    async def run_dynamics(self) -> None:
        """Advance readbacks and drift forever (cancel the task to stop)."""
        tick = 0
        while True:
            await asyncio.sleep(self.update_period_s)
            now = time.monotonic()
            due = [f for f in self._pending if f.due <= now]
            self._pending = [f for f in self._pending if f.due > now]
            for f in due:
                await self.pvdb[f.readback].write(f.value, timestamp=self.now())
                setpoint = f.readback[: -len(":RB")] + ":SP"
                if self.ring is not None and self.ring.is_magnet(setpoint):
                    self.ring.set_current(setpoint, f.value)  # the field follows the current
            tick += 1
            second = tick % max(1, round(1.0 / self.update_period_s)) == 0
            if self.ring is not None and (await self.ring.step() or second):
                for name, value in self.ring.readings().items():
                    await self.pvdb[name].write(value, timestamp=self.now())
            if second:  # drift once a second
                for name, (step, low, high) in self._drifting.items():
                    ch = self.pvdb[name]
                    v = float(ch.value) + self._rng.uniform(-step, step)
                    await ch.write(min(high, max(low, v)), timestamp=self.now())


class _Setpoint(_Double):
    """A setpoint channel that tells the simulation when a client writes it, stamped by the IOC clock."""

    def __init__(self, sim: SimulatedAccelerator, name: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._sim = sim
        self._name = name

    async def write(self, value: Any, **metadata: Any) -> None:
        metadata.setdefault("timestamp", self._sim.now())
        await super().write(value, **metadata)

    async def verify_value(self, data: Any) -> Any:
        data = await super().verify_value(data)
        value = data[0] if isinstance(data, list | tuple) else data
        ignored = self._name in self._sim.ignored_setpoints
        self._sim.log_put(self._name, float(value), processed=not ignored)
        if ignored:
            raise SkipWrite  # the put completes (success to the client); value and timestamp stay
        self._sim.on_setpoint(self._name, float(value))
        return data


class _Scenario(ChannelString):
    """``SIM:SCENARIO``: a string written here starts that scenario (:meth:`SimulatedAccelerator.scenario`);
    an unknown one is refused (the put fails)."""

    def __init__(self, sim: SimulatedAccelerator, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._sim = sim

    async def verify_value(self, data: Any) -> Any:
        data = await super().verify_value(data)
        text = data[0] if isinstance(data, list | tuple) else data
        text = text.decode() if isinstance(text, bytes) else str(text)
        self._sim.scenario(text.strip())  # ScenarioError fails the put
        return data


async def serve(sim: SimulatedAccelerator, interfaces: list[str]) -> None:
    """Serve ``sim`` over Channel Access on ``interfaces`` until cancelled."""
    from caproto.asyncio.server import Context

    ctx = Context(sim.pvdb, interfaces)
    dynamics = asyncio.create_task(sim.run_dynamics())
    try:
        await ctx.run(log_pv_names=False)
    finally:
        dynamics.cancel()
