"""Engineering units of the simulated accelerator's channels, derived from the channel naming convention
``AREA:SYSTEM:DEVICE:NN:QUANTITY[:SUFFIX]`` of the Osprey limits database (e.g. ``SR:RF:CAVITY:01:VOLTAGE:SP``)."""

from __future__ import annotations

_BY_QUANTITY = {
    "CURRENT": "A",
    "FREQUENCY": "MHz",
    "TUNER": "mm",
    "TEMPERATURE": "degC",
    "POWER": "kW",
    "PRESSURE": "Torr",
    "POSITION": "mm",
    "FLOW": "L/min",
}


def units_for(channel: str) -> str:
    """Best-effort engineering units for ``channel`` ('' when unknown). RF cavity voltage is in MV, klystron
    voltage in kV, ion-pump voltage in V,
    BPM ``:X``/``:Y`` in mm, DCCT beam current in mA."""
    parts = channel.split(":")
    if "ION-PUMP" in parts and "VOLTAGE" in parts:
        return "V"
    if "ION-PUMP" in parts and "CURRENT" in parts:
        return "uA"
    if "DCCT" in parts:
        return "mA"
    if "DOSE_RATE" in parts:
        return "uSv/h"
    if "VOLTAGE" in parts:
        return "MV" if "CAVITY" in parts else "kV"
    if parts[-1] in ("X", "Y"):
        return "mm"
    if "BEAM" in parts and "CURRENT" in parts:
        return "mA"
    for p in parts:
        if p in _BY_QUANTITY:
            return _BY_QUANTITY[p]
    return ""
