"""Query understanding for the naming hierarchy: what *set* of channels an operator's request means.

"the last three horizontal corrector setpoints", "both planes of BPM 12", "is the sector 4 valve closed?":
:func:`resolve` reads such a request against a :class:`Catalog` of the database's ordered instances (which
areas, families, devices and ``FIELD:SIGNAL`` leaves exist) and returns a :class:`Resolution`: the exact set of
channel names, how many (one, several, all of a family) and a confidence, or None when the request does not
name a family, a device and a quantity it can be sure of (the ranked search answers then).

Steps, each consuming the words it used: areas ("storage ring", "booster", "transfer line"; several may be named:
"the storage and booster ring"); families by the *family names the database carries* (each channel's property
``family_aliases``, comma-separated; the bundled ones from ``tern/data/channel_families.json``; longest phrase
first, and when a generic and a specific name both match, the specific one: "SF sextupole" is SF); "sector N"
(digits or words) mapped to the area's sector numbering (``tern.channel_finder.naming``: a family of 12k devices has k
per sector, gauges carry their sector, ``SR05``); positions: ordinals ("third", "5th"), "first/last N", "last",
"all", "both", or a device number, resolved against the family's *ordered instances* (the last three of 72
correctors are 70-72); quantities: field words (current, position, pressure, voltage...) and signal words
(setpoint, readback, horizontal, vertical, forward, open, fault...), a union within each kind ("setpoint and
readback", "both planes") and an intersection across kinds. Yes/no questions name the flag that answers them
("open?" -> ``POSITION:OPEN``, "on?" -> ``STATUS:ON``). A device named without a quantity means its main
measurement (:data:`PRIMARY`).

Pure functions, no I/O: the finder builds the catalog from the ``channels`` table.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from tern.channel_finder.naming import ABBREVIATIONS, SECTORS

ORDINALS = {
    w: i
    for i, w in enumerate(
        "first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth thirteenth fourteenth "
        "fifteenth sixteenth seventeenth eighteenth nineteenth twentieth".split(),
        start=1,
    )
}
CARDINALS = {
    w: i
    for i, w in enumerate(
        "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen twenty".split(),
        start=1,
    )
}
AREA_WORDS = {("storage", "ring"): "SR", ("storage",): "SR", ("booster", "ring"): "BR", ("booster",): "BR",
              ("transfer", "line"): "BTS", ("injector",): "BR"}  # fmt: skip
SYSTEM_WORDS = {"vacuum": "VAC", "rf": "RF", "magnet": "MAG", "diagnostic": "DIAG"}
FIELD_WORDS = {
    "current": "CURRENT", "position": "POSITION", "offset": "OFFSET", "golden": "GOLDEN", "frequency": "FREQUENCY",
    "power": "POWER", "temperature": "TEMPERATURE", "tuner": "TUNER", "voltage": "VOLTAGE", "pressure": "PRESSURE",
    "dose": "DOSE_RATE", "status": "STATUS", "command": "CONTROL", "control": "CONTROL",
}  # fmt: skip
SIGNAL_WORDS = {
    "setpoint": "SP", "readback": "RB", "horizontal": "X", "vertical": "Y", "forward": "FWD", "reflected": "REV",
    "net": "NET", "fault": "FAULT", "ready": "READY", "valid": "VALID", "connected": "CONNECTED",
    "interlock": "INTERLOCK", "alarm": "ALARM", "minute": "AVG_1MIN", "hour": "AVG_1HR", "instantaneous": "INST",
    "open": "OPEN", "closed": "CLOSED", "close": "CLOSE",
}  # fmt: skip
# A device named without a quantity means its main measurement: the first of these it has (a group of leaves).
PRIMARY: tuple[tuple[str, ...], ...] = (
    ("POSITION:X", "POSITION:Y"),
    ("CURRENT:RB",),
    ("PRESSURE:RB",),
    ("DOSE_RATE:INST",),
)
_PLANES = {"X", "Y"}
_QUERY_PHRASES = {  # before numbers are read: "one-minute average" is no device number
    r"\bone[- ]minute\b": "minute",
    r"\b1[- ]?min(ute)?\b": "minute",
    r"\bone[- ]hour\b": "hour",
    r"\bhourly\b": "hour",
    r"\bboth planes\b": "horizontal vertical",
    r"\bpower supply\b": "magnet",
    r"\bright now\b": "",
}
_ORD_SUFFIX = re.compile(r"\b(\d+)(st|nd|rd|th)\b")
_TOKEN = re.compile(r"[a-z0-9#]+")
_SECTOR_NOTE = re.compile(r"\(sector (\d+)(?:, number \d+ in the sector)?\)")


def tokens(text: str) -> list[str]:
    """Normalised words of ``text``: lower case, ``cav1`` split, abbreviations expanded
    (``tern.channel_finder.naming.ABBREVIATIONS``), plurals singular, numbers in words made digits, ordinals
    ("third", "5th") made ``#3``/``#5``."""
    raw = text.lower().replace("'s", "").replace("?", " ")
    for pat, rep in _QUERY_PHRASES.items():
        raw = re.sub(pat, rep, raw)
    raw = _ORD_SUFFIX.sub(r"#\1", raw)
    raw = re.sub(r"([a-z])(\d)", r"\1 \2", raw)
    out: list[str] = []
    for w in _TOKEN.findall(raw):
        if w.startswith("#") and w[1:].isdigit():
            out.append(f"#{int(w[1:])}")
            continue
        w = w.strip("#")
        if not w:
            continue
        if w in ORDINALS:
            out.append(f"#{ORDINALS[w]}")
            continue
        if w in CARDINALS:
            out.append(str(CARDINALS[w]))
            continue
        if w.isdigit():
            out.append(str(int(w)))
            continue
        for x in ABBREVIATIONS.get(w, w).split():
            if x.endswith("ies") and len(x) > 4:
                x = x[:-3] + "y"
            elif len(x) > 3 and x.endswith("s") and not x.endswith(("ss", "us")):
                x = x[:-1]
            out.append(x)
    return out


def _device_number(device: str) -> int | None:
    digits = re.sub(r"\D", "", device)
    return int(digits) if digits else None


@dataclass
class FamilyInstances:
    """One family in one area: its system, its devices in order, and each device's ``FIELD:SIGNAL`` leaves."""

    area: str
    system: str
    family: str
    devices: list[str] = field(default_factory=list)
    leaves: dict[str, set[str]] = field(default_factory=dict)
    by_number: dict[int, list[str]] = field(default_factory=dict)  # device number -> devices (SR05 is 5)
    sectors: dict[int, list[str]] = field(default_factory=dict)  # sector -> devices, as the descriptions say

    def note_sector(self, device: str, description: str) -> None:
        """Record the sector a channel's description gives its device ("(sector 3, number 2 in the sector)")."""
        m = _SECTOR_NOTE.search(description)
        if m:
            devices = self.sectors.setdefault(int(m.group(1)), [])
            if device not in devices:
                devices.append(device)

    def sector_devices(self, sector: int) -> list[str] | None:
        """The devices of ``sector`` by the naming convention, or None when this family has no sector numbering
        (``tern.channel_finder.naming``: gauges carry it, ``SR05``; a storage-ring family of 12k devices has k each)."""
        if self.sectors:  # the database says (descriptions): authoritative
            return sorted(self.sectors.get(sector, []), key=self.devices.index)
        if self.area != "SR":
            return None
        named = [d for d in self.devices if re.fullmatch(r"SR\d+", d)]
        if named:
            return [d for d in named if int(d[2:]) == sector]
        n = len(self.devices)
        if n < SECTORS or n % SECTORS:
            return None
        per = n // SECTORS
        return self.devices[(sector - 1) * per : sector * per]


@dataclass
class Catalog:
    """The hierarchy's ordered instances and the family names, as :func:`resolve` needs them.

    Build with :meth:`from_rows` from ``(area, system, family, device, field, signal, family_aliases[,
    description])`` rows; a description's "(sector S[, number K in the sector])" places its device in sector S."""

    families: dict[tuple[str, str], FamilyInstances] = field(default_factory=dict)
    synonyms: dict[tuple[str, ...], set[str]] = field(default_factory=dict)  # phrase (tokens) -> families

    @classmethod
    def from_rows(cls, rows: Iterable[Iterable[str | None]]) -> Catalog:
        """A catalog from channel rows ``(area, system, family, device, field, signal, family_aliases)``; rows
        without all six levels are skipped. ``family_aliases`` is a comma-separated list of phrases or None."""
        cat = cls()
        named: set[tuple[str, str]] = set()  # (family, aliases) already read: 100,000 rows share a few dozen
        for row in rows:
            area, system, fam, device, fld, signal, aliases, *rest = (x or "" for x in row)
            if not all((area, system, fam, device, fld, signal)):
                continue
            inst = cat.families.setdefault((area, fam), FamilyInstances(area, system, fam))
            if device not in inst.leaves and rest:
                inst.note_sector(device, rest[0])
            inst.leaves.setdefault(device, set()).add(f"{fld}:{signal}")
            if (fam, aliases) in named:
                continue
            named.add((fam, aliases))
            for phrase in [fam, *aliases.split(",")]:
                toks = tuple(tokens(phrase))
                if toks:
                    cat.synonyms.setdefault(toks, set()).add(fam)
        for inst in cat.families.values():
            inst.devices = sorted(inst.leaves, key=lambda d: (_device_number(d) or 0, d))
            for d in inst.devices:
                inst.by_number.setdefault(_device_number(d) or 0, []).append(d)
        return cat


@dataclass
class Resolution:
    """The set a request means: ``names`` (in hierarchy order), ``kind`` ("one", "several" or "family": every
    device of a family), ``confidence`` (0..1: 1 when every level was named; lower when the area or the quantity
    was defaulted), and ``explanation`` (how it was read, for people)."""

    names: list[str]
    kind: str
    confidence: float
    explanation: str


def _take(toks: list[str | None], phrase: tuple[str, ...]) -> bool:
    n = len(phrase)
    for i in range(len(toks) - n + 1):
        if tuple(toks[i : i + n]) == phrase:
            toks[i : i + n] = [None] * n
            return True
    return False


def _number_after(toks: list[str | None], i: int) -> int | None:
    if i + 1 < len(toks) and toks[i + 1] is not None and str(toks[i + 1]).isdigit():
        return int(str(toks[i + 1]))
    return None


def resolve(query: str, catalog: Catalog) -> Resolution | None:
    """The set of channels ``query`` means in ``catalog`` (module docstring), or None when unsure."""
    toks: list[str | None] = list(tokens(query))
    if not toks:
        return None
    notes: list[str] = []
    confidence = 1.0
    # yes/no "... on?": the on flag (only as the last word: "on" elsewhere is a preposition)
    yes_no_on = toks[-1] == "on"
    if yes_no_on:
        toks[-1] = None
    all_signals = _take(toks, ("all", "signal")) or _take(toks, ("every", "signal"))
    if not all_signals:
        for i in range(len(toks) - 1):
            if toks[i] == "all" and "signal" in toks[i + 1 :]:
                all_signals = True
                toks[toks.index("signal")] = None
                break
    # areas
    areas: set[str] = set()
    for phrase, area in sorted(AREA_WORDS.items(), key=lambda kv: -len(kv[0])):
        while _take(toks, phrase):
            areas.add(area)
    # families: longest phrases first; specific names win over generic ones
    matched: list[set[str]] = []
    for phrase in sorted(catalog.synonyms, key=len, reverse=True):
        while _take(toks, phrase):
            matched.append(set(catalog.synonyms[phrase]))
    families: set[str] = set()
    if matched:
        inter = set.intersection(*matched)
        families = inter if inter else set.union(*matched)
    systems = {SYSTEM_WORDS[t] for t in toks if t in SYSTEM_WORDS}
    # sector
    sector: int | None = None
    for i, t in enumerate(toks):
        if t == "sector" and (n := _number_after(toks, i)) is not None:
            sector = n
            toks[i] = toks[i + 1] = None
            break
    # positions
    first_n = last_n = ordinal = number = None
    want_all = False
    for i, t in enumerate(toks):
        if t is None:
            continue
        if t == "#1" and (n := _number_after(toks, i)) is not None and n > 1:
            first_n = n
            toks[i] = toks[i + 1] = None
        elif t == "last":
            n = _number_after(toks, i)
            last_n = n or 1
            toks[i] = None
            if n:
                toks[i + 1] = None
        elif t in ("all", "every", "both", "each"):
            want_all = True
            toks[i] = None
    for i, t in enumerate(toks):
        if t is None:
            continue
        if t.startswith("#") and ordinal is None:
            ordinal = int(t[1:])
            toks[i] = None
        elif t.isdigit() and number is None:
            number = int(t)
            toks[i] = None
    # quantities
    fields = {FIELD_WORDS[t] for t in toks if t in FIELD_WORDS}
    signals = {SIGNAL_WORDS[t] for t in toks if t in SIGNAL_WORDS}
    if yes_no_on:
        signals.add("ON")
    golden = "GOLDEN" in fields  # a reference: BPM GOLDEN:X, magnet CURRENT:GOLDEN, cavity VOLTAGE:GOLDEN
    fields.discard("GOLDEN")
    if golden or "OFFSET" in fields:
        fields.discard("POSITION")
    if toks[0] in ("open", "close") and "CONTROL" not in fields:  # imperative: "open gate valve 7"
        fields.add("CONTROL")
        signals.discard("CLOSED")
        signals.add(str(SIGNAL_WORDS[str(toks[0])]))
    if signals & {"OPEN", "CLOSED", "CLOSE"} and "CONTROL" not in fields:
        fields.add("POSITION")
    # candidate family instances
    insts = [
        inst
        for (area, fam), inst in sorted(catalog.families.items())
        if (not families or fam in families)
        and (not areas or area in areas)
        and (not systems or inst.system in systems)
    ]
    if not families:
        if not (fields or signals or golden) or all_signals or sector is None:
            return None  # no family: only "sector N <quantity>" says which devices; else the ranking answers
        insts = [i for i in insts if any(_leaves(i, d, fields, signals, False, golden) for d in i.devices[:1])]
    if not insts:
        return None
    if not areas:
        in_sr = [i for i in insts if i.area == "SR"]
        if in_sr and len(in_sr) < len(insts):
            insts = in_sr
            confidence -= 0.1
            notes.append("storage ring (no area named)")
    if sector is not None and not families:
        mapped = [i for i in insts if i.sector_devices(sector) is not None]
        insts = mapped or insts
    names: list[str] = []
    whole_family = True
    for inst in insts:
        devices = _devices(inst, sector, first_n, last_n, ordinal, number, want_all)
        if devices is None:
            continue
        if sector is not None and inst.sector_devices(sector) is None:
            confidence -= 0.2
            notes.append(f"{inst.family} has no sector numbering: sector {sector} read as device {sector}")
        whole_family &= len(devices) == len(inst.devices)
        for d in devices:
            leaves = sorted(inst.leaves[d]) if all_signals else _leaves(inst, d, fields, signals, True, golden)
            if leaves is None:
                return None
            if not (fields or signals or all_signals or golden):
                notes.append("main measurement (no quantity named)")
            names += [f"{inst.area}:{inst.system}:{inst.family}:{d}:{leaf}" for leaf in leaves]
    if not names:
        return None
    if not (fields or signals or all_signals or golden):
        confidence -= 0.1
    names = list(dict.fromkeys(names))
    kind = "one" if len(names) == 1 else ("family" if whole_family and len(insts) >= 1 and want_all else "several")
    explanation = "; ".join(dict.fromkeys(notes)) or "every level named"
    return Resolution(names=names, kind=kind, confidence=round(max(confidence, 0.1), 2), explanation=explanation)


def _devices(
    inst: FamilyInstances,
    sector: int | None,
    first_n: int | None,
    last_n: int | None,
    ordinal: int | None,
    number: int | None,
    want_all: bool,
) -> list[str] | None:
    pool = inst.devices
    if sector is not None:
        in_sector = inst.sector_devices(sector)
        if in_sector is None:  # no sector numbering: "the sector 4 pump" is pump 4
            number = number if number is not None else sector
        else:
            pool = in_sector
            if number is not None and ordinal is None:  # "corrector number 2 in sector 3": 2nd of the sector
                ordinal, number = number, None
    if first_n:
        return pool[:first_n] if first_n <= len(pool) else None
    if last_n:
        return pool[-last_n:] if last_n <= len(pool) else None
    if ordinal is not None:
        return [pool[ordinal - 1]] if 1 <= ordinal <= len(pool) else None
    if number is not None:
        found = inst.by_number.get(number, [])
        if pool is not inst.devices:
            found = [d for d in found if d in pool]
        return found or None
    if want_all or sector is not None or len(pool) == 1:
        return list(pool)
    return None


def _leaves(
    inst: FamilyInstances, device: str, fields: set[str], signals: set[str], narrow: bool, golden: bool = False
) -> list[str] | None:
    have = sorted(inst.leaves.get(device, ()))
    if golden:
        have = [leaf for leaf in have if "GOLDEN" in leaf.split(":")]
    if not fields and not signals and not golden:
        for group in PRIMARY:
            if all(g in have for g in group):
                return list(group)
        return None
    fit = [
        leaf
        for leaf in have
        if (not fields or leaf.split(":")[0] in fields or (golden and leaf.split(":")[0] == "GOLDEN"))
        and (not signals or leaf.split(":")[1] in signals)
    ]
    if not fit:
        return None
    if not fields and len({leaf.split(":")[0] for leaf in fit}) > 1:  # "both planes": of the beam position
        main = [leaf for leaf in fit if any(leaf in group for group in PRIMARY)]
        fit = main or fit
    if narrow and not signals and len(fit) > 1:  # a quantity without a signal: its readback or measurement
        sigs = {leaf.split(":")[1] for leaf in fit}
        if sigs <= _PLANES:
            return fit
        for prefer in ("RB", "INST"):
            pick = [leaf for leaf in fit if leaf.endswith(":" + prefer)]
            if pick:
                return pick
        return None
    return fit
