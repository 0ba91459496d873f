"""Channel events: when a monitored value makes a channel trigger fire (threshold with hysteresis, alarm
severity change, value change), and the deterministic Workflow ID of the run one event starts.

Severity numbers are EPICS alarm severities (``SEVR``: 0 NO_ALARM, 1 MINOR, 2 MAJOR, 3 INVALID; EPICS Record
Reference Manual, "Alarm Fields"), as pyepics passes them to a monitor callback (``severity``).
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field

from tern.models.trigger import RUN_PREFIX, ChannelWatch


@dataclass
class Detector:
    """The state of one channel trigger between monitor updates. Feed every update to :meth:`update`.

    ``above``: armed while the value is at or below ``threshold``; fires when an armed value goes above it, then
    stays disarmed until the value falls to ``threshold - hysteresis`` or lower (``below`` mirrors it). The
    first update only sets the reference (a value already above the threshold does not fire: it did not
    *cross*). A NaN value never fires and leaves the state alone.
    """

    watch: ChannelWatch
    _armed: bool | None = field(default=None, init=False)
    _last_value: float | None = field(default=None, init=False)
    _last_severity: int | None = field(default=None, init=False)

    def update(self, value: float, severity: int = 0) -> bool:
        """Whether this update is an event. ``value`` in engineering units, ``severity`` 0..3."""
        w = self.watch
        if w.condition == "severity_change":
            fired = self._last_severity is not None and severity != self._last_severity
            self._last_severity = severity
            return fired
        if math.isnan(value):
            return False
        if w.condition == "on_change":
            fired = self._last_value is not None and value != self._last_value
            self._last_value = value
            return fired
        assert w.threshold is not None
        beyond = value > w.threshold if w.condition == "above" else value < w.threshold
        rearm = value <= w.threshold - w.hysteresis if w.condition == "above" else value >= w.threshold + w.hysteresis
        if self._armed is None:  # the first value: the reference
            self._armed = not beyond
            return False
        if self._armed and beyond:
            self._armed = False
            return True
        if not self._armed and rearm:
            self._armed = True
        return False


def time_bucket(timestamp: float, window_s: float) -> int:
    """The dedup bucket of an event at ``timestamp`` (POSIX seconds): ``floor(timestamp / window_s)``."""
    return math.floor(timestamp / window_s)


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def channel_run_id(name: str, channel: str, timestamp: float, window_s: float) -> str:
    """``trigger-<name>-<channel>-<bucket>``: the Workflow ID of the run an event of ``channel`` at ``timestamp``
    starts. Events of one trigger and channel within one dedup window (``window_s`` seconds, aligned to the
    epoch) share it, so Temporal refuses all but the first (``WorkflowAlreadyStartedError``)."""
    safe = _UNSAFE.sub("_", channel)
    return f"{RUN_PREFIX}{name}-{safe}-{time_bucket(timestamp, window_s)}"


def webhook_run_id(name: str, body: bytes, timestamp: float, window_s: float) -> str:
    """``trigger-<name>-webhook-<bucket>-<12 hex of the body's SHA-256>``: the same body posted twice within a
    dedup window starts one run; different bodies start one each."""
    digest = hashlib.sha256(body).hexdigest()[:12]
    return f"{RUN_PREFIX}{name}-webhook-{time_bucket(timestamp, window_s)}-{digest}"
