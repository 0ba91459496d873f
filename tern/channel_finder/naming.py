"""The naming convention of the simulated ALS-like accelerator, spelled out for people and for search.

Names are ``AREA:SYSTEM:FAMILY:DEVICE:FIELD:SIGNAL`` (``SR:RF:CAVITY:01:POWER:REV``: storage ring, RF system,
cavity 1, power, reflected), the convention of Osprey's limits database (``tern/data/channel_limits.json``;
meanings of the diagnostics as the simulator serves them, ``tern.sim.accelerator``; units
``tern.control.units``). The tables below expand each abbreviation; :func:`describe` builds a channel's
description and search words from them; :func:`query_terms` turns what an operator types ("cav 1 fwd pwr")
into the same vocabulary.

Sectors: the storage ring has 12 sectors (the ALS lattice: 12 triple-bend achromats). The limits database
numbers a family's devices consecutively around the ring, so a family with 12 k devices has k per sector:
device n is in sector ``(n - 1) // k + 1``, number ``(n - 1) % k + 1`` in that sector (HCM 14: sector 3,
number 2). Vacuum gauges carry their sector in the name (``SR05``). This mapping is this module's convention
for the simulated machine, not a fact of the data; a real database brings its own descriptions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tern.control.units import units_for

SECTORS = 12  # storage-ring sectors (ALS: 12 triple-bend achromats)

AREAS = {"SR": "storage ring", "BR": "booster ring", "BTS": "booster-to-storage-ring transfer line"}
SYSTEMS = {"MAG": "magnets", "DIAG": "diagnostics", "RF": "RF (radio-frequency) system", "VAC": "vacuum"}
FAMILIES = {
    "BPM": "beam position monitor (BPM)",
    "DCCT": "DCCT beam current monitor (DC current transformer)",
    "GAMMA": "gamma radiation monitor",
    "NEUTRON": "neutron radiation monitor",
    "DIPOLE": "dipole bending magnet",
    "HCM": "horizontal corrector magnet (HCM, horizontal steering)",
    "VCM": "vertical corrector magnet (VCM, vertical steering)",
    "QF": "focusing quadrupole magnet (QF)",
    "QD": "defocusing quadrupole magnet (QD)",
    "QFA": "focusing quadrupole magnet type A (QFA)",
    "SF": "focusing sextupole magnet (SF)",
    "SD": "defocusing sextupole magnet (SD)",
    "SHF": "harmonic focusing sextupole magnet (SHF)",
    "SHD": "harmonic defocusing sextupole magnet (SHD)",
    "CAVITY": "RF cavity",
    "KLYSTRON": "klystron (RF power amplifier)",
    "GAUGE": "vacuum gauge",
    "ION-PUMP": "ion pump",
    "VALVE": "vacuum gate valve",
}
FIELDS = {
    "CURRENT": "current",
    "POSITION": "position",
    "STATUS": "status",
    "GOLDEN": "golden reference orbit",
    "OFFSET": "offset",
    "FREQUENCY": "frequency",
    "POWER": "power",
    "TEMPERATURE": "temperature",
    "TUNER": "tuner position",
    "VOLTAGE": "voltage",
    "PRESSURE": "pressure",
    "DOSE_RATE": "dose rate",
    "CONTROL": "control command",
}
SIGNALS = {
    "SP": "setpoint",
    "RB": "readback",
    "GOLDEN": "golden reference value",
    "X": "horizontal (X)",
    "Y": "vertical (Y)",
    "FWD": "forward",
    "REV": "reflected (reverse)",
    "NET": "net",
    "FAULT": "fault flag",
    "READY": "ready flag",
    "ON": "on (powered) flag",
    "VALID": "valid flag",
    "CONNECTED": "connected flag",
    "INTERLOCK": "interlock flag",
    "ALARM": "alarm flag",
    "AVG_1HR": "one-hour average",
    "AVG_1MIN": "one-minute average",
    "INST": "instantaneous",
    "OPEN": "open",
    "CLOSE": "close",
    "CLOSED": "closed",
}
# Phrases for particular (family, field, signal) combinations, where the parts alone read badly.
SPECIAL = {
    ("DCCT", "CURRENT", "RB"): "stored beam current readback",
    ("BPM", "POSITION", "X"): "horizontal (X) beam position (orbit)",
    ("BPM", "POSITION", "Y"): "vertical (Y) beam position (orbit)",
    ("BPM", "GOLDEN", "X"): "horizontal (X) golden reference orbit",
    ("BPM", "GOLDEN", "Y"): "vertical (Y) golden reference orbit",
    ("BPM", "OFFSET", "X"): "horizontal (X) offset",
    ("BPM", "OFFSET", "Y"): "vertical (Y) offset",
    ("VALVE", "CONTROL", "OPEN"): "open command",
    ("VALVE", "CONTROL", "CLOSE"): "close command",
    ("VALVE", "POSITION", "OPEN"): "position switch: valve is open",
    ("VALVE", "POSITION", "CLOSED"): "position switch: valve is closed",
    ("KLYSTRON", "POWER", "RB"): "output power readback",
    ("KLYSTRON", "VOLTAGE", "SP"): "high voltage setpoint",
    ("KLYSTRON", "VOLTAGE", "RB"): "high voltage readback",
}
# Explanations added to the description only (not to the name words, where their words would mislead search).
NOTES = {("POWER", "NET"): " (forward minus reflected)"}
# How operators abbreviate (query side): each word maps to the words the descriptions use. Written from
# control-room usage, not from the benchmark's queries.
ABBREVIATIONS = {
    "cav": "cavity",
    "cavs": "cavity",
    "fwd": "forward",
    "pwr": "power",
    "refl": "reflected",
    "ref": "reflected",
    "rev": "reflected",
    "reverse": "reflected",
    "rb": "readback",
    "rbv": "readback",
    "reading": "readback",
    "sp": "setpoint",
    "set": "setpoint",
    "setting": "setpoint",
    "temp": "temperature",
    "freq": "frequency",
    "volt": "voltage",
    "volts": "voltage",
    "hv": "high voltage",
    "hcm": "horizontal corrector",
    "vcm": "vertical corrector",
    "hcorr": "horizontal corrector",
    "vcorr": "vertical corrector",
    "corr": "corrector",
    "steering": "corrector",
    "steerer": "corrector",
    "quad": "quadrupole",
    "quads": "quadrupole",
    "sext": "sextupole",
    "bpm": "beam position monitor",
    "bpms": "beam position monitor",
    "dcct": "dcct beam current",
    "vac": "vacuum",
    "press": "pressure",
    "sr": "storage ring",
    "br": "booster",
    "bts": "transfer line",
    "kly": "klystron",
    "klys": "klystron",
    "x": "horizontal",
    "hor": "horizontal",
    "horiz": "horizontal",
    "y": "vertical",
    "vert": "vertical",
    "bend": "dipole bending",
    "bending": "dipole bending",
    "mag": "magnet",
    "pos": "position",
    "orbit": "beam position",
    "ip": "ion pump",
    "gv": "gate valve",
    "rad": "radiation",
    "hourly": "hour average",
    "avg": "average",
    "faulted": "fault",
    "tripped": "fault",
    "interlocked": "interlock",
}
# Multi-word phrases replaced before the words are looked at: a magnet's "power supply" is the magnet's channels
# (its current and status), not RF power.
PHRASES = {"power supply": "magnet", "power supplies": "magnet"}
NUMBER_WORDS = {
    "one": "1", "first": "1", "two": "2", "second": "2", "three": "3", "third": "3", "four": "4", "fourth": "4",
    "five": "5", "fifth": "5", "six": "6", "sixth": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
STOPWORDS = frozenset(
    "a an the of is are in at to into for from what whats what's s show me give get value please its it "
    "this that which channel pv".split()
)
# Tie-breaking prior: what an operator most likely means when a description fits several signals equally
# (a measurement before its setpoint, those before flags and references; the storage ring before the injector).
_SIGNAL_PRIOR = {"RB": 0.03, "FWD": 0.03, "REV": 0.03, "NET": 0.03, "X": 0.03, "Y": 0.03, "INST": 0.03, "SP": 0.02}
_AREA_PRIOR = {"SR": 0.01}
MAX_PRIOR = max(_SIGNAL_PRIOR.values()) + max(_AREA_PRIOR.values())  # the largest prior any channel has
_REFERENCE_FIELDS = ("GOLDEN", "OFFSET")  # references and calibrations, not measurements
_QUALIFIERS = ("FWD", "REV", "NET", "X", "Y")  # read before the quantity: "forward power", not "power forward"

_TOKEN = re.compile(r"[a-z0-9]+")
_SECTOR = re.compile(r"\bsector\s+0*(\d+)\b")


def words(text: str) -> list[str]:
    """Lower-case alphanumeric words of ``text`` with leading zeros dropped from numbers (``01`` -> ``1``),
    a trailing plural ``s`` dropped (``magnets`` -> ``magnet``), and "sector N" joined into ``sectorN``; the same
    normalisation for descriptions and queries, so that they meet."""
    out = []
    for w in _TOKEN.findall(_SECTOR.sub(r"sector\1", text.lower())):
        if w.isdigit():
            w = str(int(w))
        elif len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
            w = w[:-1]
        out.append(w)
    return out


def query_terms(text: str) -> list[str]:
    """The search terms of an operator's query: phrases replaced (``PHRASES``), abbreviations expanded
    (``ABBREVIATIONS``), number words made digits, stop words dropped, ``cav1`` split into ``cavity 1``,
    duplicates removed (order kept)."""
    raw = re.sub(r"([a-z])(\d)", r"\1 \2", text.lower())
    for phrase, replacement in PHRASES.items():
        raw = re.sub(rf"\b{phrase}\b", replacement, raw)
    expanded: list[str] = []
    for w in _TOKEN.findall(raw.replace("'", "")):
        w = NUMBER_WORDS.get(w, w)
        expanded += ABBREVIATIONS.get(w, w).split()
    seen: dict[str, None] = {}
    for w in words(" ".join(x for x in expanded if x not in STOPWORDS)):
        seen.setdefault(w, None)
    return list(seen)


@dataclass
class Described:
    """What the naming convention says about one channel (see :func:`describe`)."""

    description: str
    units: str
    parts: dict[str, str] = field(default_factory=dict)  # level -> segment (``HIERARCHY_LEVELS``)
    name_words: str = ""  # expanded name segments, for search (weight A)
    prior: float = 0.0


def _sector(area: str, family: str, device: str, family_size: int) -> str:
    if area != "SR":
        return ""
    m = re.fullmatch(r"SR(\d+)", device)
    if m:
        return f"sector {int(m.group(1))}"
    if device.isdigit() and family_size >= SECTORS and family_size % SECTORS == 0:
        per = family_size // SECTORS
        n = int(device)
        if per == 1:
            return f"sector {n}"
        return f"sector {(n - 1) // per + 1}, number {(n - 1) % per + 1} in the sector"
    return ""


def describe(name: str, family_size: int = 0, writable: bool = False) -> Described | None:
    """Describe a name of the convention ``AREA:SYSTEM:FAMILY:DEVICE:FIELD:SIGNAL``; None for other names.

    Args:
        name: the channel name.
        family_size: how many devices the channel's family has in its area (for the sector, see module doc).
        writable: whether the limits database lets it be written (said in the description).
    """
    parts = name.split(":")
    if len(parts) != 6:
        return None
    area, system, family, device, fld, signal = parts
    if area not in AREAS or system not in SYSTEMS or family not in FAMILIES:
        return None
    number = str(int(device)) if device.isdigit() else device
    digits = re.sub(r"\D", "", device)  # a device id with a prefix (gauge SR05) is also its number (5)
    sector = _sector(area, family, device, family_size)
    quantity, qualifier = FIELDS.get(fld, fld.lower()), SIGNALS.get(signal, signal.lower())
    pair = (qualifier, quantity) if signal in _QUALIFIERS else (quantity, qualifier)
    what = SPECIAL.get((family, fld, signal)) or " ".join(pair)
    units = units_for(name)
    text = f"{AREAS[area].capitalize()} {FAMILIES[family]} {number}"
    text += f" ({sector})" if sector else ""
    text += f": {what}{NOTES.get((fld, signal), '')}"
    text += f" [{units}]" if units else ""
    text += ", writable setpoint." if writable else ", read-only."
    name_words = " ".join(
        [
            AREAS[area],
            SYSTEMS[system],
            FAMILIES[family],
            number,
            digits if digits != device else "",
            FIELDS.get(fld, ""),
            SIGNALS.get(signal, ""),
            what,
        ]
        + [sector.replace(", number", " ").split(" in the")[0]] * bool(sector)
        + [p.lower() for p in parts if not p.isdigit()]
    )
    reference = fld in _REFERENCE_FIELDS or signal == "GOLDEN"
    prior = (0.0 if reference else _SIGNAL_PRIOR.get(signal, 0.0)) + _AREA_PRIOR.get(area, 0.0)
    levels = dict(zip(("area", "system", "family", "device", "field", "signal"), parts, strict=True))
    return Described(text, units, levels, name_words, prior)


def segment_description(path: list[str]) -> str:
    """A short description of a hierarchy node of the convention (``["SR", "RF", "CAVITY"]`` -> "RF cavity");
    "" when the tables do not know it."""
    tables: tuple[dict[str, str], ...] = (AREAS, SYSTEMS, FAMILIES, {}, FIELDS, SIGNALS)
    if not path or len(path) > len(tables):
        return ""
    seg = path[-1]
    if len(path) == 4:
        return f"{FAMILIES.get(path[2], path[2])} {int(seg) if seg.isdigit() else seg}"
    return tables[len(path) - 1].get(seg, "")
