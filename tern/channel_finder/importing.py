"""Reading a production channel list: a ChannelFinder service JSON export, or CSV.

JSON: what ChannelFinder's REST API returns for ``GET /ChannelFinder/resources/channels`` (the ChannelFinder
service, https://channelfinder.readthedocs.io): a list of ``{"name", "owner", "properties": [{"name", "value",
...}], "tags": [{"name", ...}]}``. Recognised properties (case-insensitive): ``description`` (or ``desc``),
``aliases`` / ``alias`` (comma-separated), ``units`` / ``egu``, and the hierarchy levels ``area``, ``system``,
``family``, ``device``, ``field``, ``signal``. Every other property is kept and searched; tags are searched.

CSV: ``name,description[,alias,...]``, one channel a line; a first line ``name,description,...`` is a header.

A name must be 1 to 200 characters of ``A-Z a-z 0-9 _ : . - [ ] { } $`` (the plan's channel-name rule). Errors
raise :class:`ChannelImportError` naming the line (JSON: the line where the record starts) and the reason.
``writable`` is never read from the file: it comes from the limits database.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

from tern.channel_finder.store import ChannelRecord, family_sizes, record_for
from tern.control.limits import LimitsDatabase
from tern.models.channel_finder import HIERARCHY_LEVELS

_NAME = re.compile(r"^[A-Za-z0-9_:.\-\[\]{}$]{1,200}$")
MAX_DESCRIPTION_CHARS = 2000
_DESC_KEYS = ("description", "desc")
_ALIAS_KEYS = ("aliases", "alias")
_UNIT_KEYS = ("units", "egu")


class ChannelImportError(ValueError):
    """The file cannot be imported; the message names the file, the line and the reason."""


def _check_name(where: str, name: Any) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ChannelImportError(
            f"{where}: channel name must be 1 to 200 characters of letters, digits and _:.-[]{{}}$, got {name!r}"
        )
    return name


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _json_items(path: Path, text: str) -> list[tuple[int, Any]]:
    """The elements of the top-level JSON list with the line each starts on."""
    dec = json.JSONDecoder()
    try:
        whole = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ChannelImportError(f"{path}: line {exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(whole, list):
        raise ChannelImportError(f"{path}: line 1: expected a JSON list of channels, got {type(whole).__name__}")
    items: list[tuple[int, Any]] = []
    i = text.index("[") + 1
    for _ in whole:
        while text[i] in " \t\r\n,":
            i += 1
        value, end = dec.raw_decode(text, i)
        items.append((_line_of(text, i), value))
        i = end
    return items


def _record_from_json(where: str, item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise ChannelImportError(f"{where}: expected an object with 'name', got {type(item).__name__}")
    name = _check_name(where, item.get("name"))
    props: dict[str, str] = {}
    for p in item.get("properties") or []:
        if not isinstance(p, dict) or not isinstance(p.get("name"), str) or not p["name"]:
            raise ChannelImportError(f"{where}: channel {name!r}: each property needs a 'name' and a 'value'")
        value = p.get("value")
        props[p["name"]] = "" if value is None else str(value)
    tags = []
    for t in item.get("tags") or []:
        if not isinstance(t, dict) or not isinstance(t.get("name"), str) or not t["name"]:
            raise ChannelImportError(f"{where}: channel {name!r}: each tag needs a 'name'")
        tags.append(t["name"])
    lower = {k.lower(): v for k, v in props.items()}
    desc = next((lower[k] for k in _DESC_KEYS if lower.get(k)), "")
    aliases_text = next((lower[k] for k in _ALIAS_KEYS if lower.get(k)), "")
    units = next((lower[k] for k in _UNIT_KEYS if lower.get(k)), "")
    parts = {lvl: lower[lvl] for lvl in HIERARCHY_LEVELS if lower.get(lvl)}
    used = {*_DESC_KEYS, *_ALIAS_KEYS, *_UNIT_KEYS, *HIERARCHY_LEVELS}
    extra = {k: v for k, v in props.items() if k.lower() not in used}
    if item.get("owner"):
        extra.setdefault("owner", str(item["owner"]))
    return {
        "name": name,
        "description": desc,
        "aliases": [a.strip() for a in aliases_text.split(",") if a.strip()],
        "units": units,
        "parts": parts,
        "tags": tags,
        "properties": extra,
    }


def _records_from_csv(path: Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    out = []
    for lineno, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or all(not c.strip() for c in row):
            continue
        if lineno == 1 and row[0].strip().lower() == "name":
            continue
        where = f"{path}: line {lineno}"
        name = _check_name(where, row[0].strip())
        if len(row) < 2 or not row[1].strip():
            raise ChannelImportError(
                f"{where}: channel {name!r} has no description (expected name,description[,aliases...])"
            )
        out.append(
            (
                lineno,
                {"name": name, "description": row[1].strip(), "aliases": [a.strip() for a in row[2:] if a.strip()]},
            )
        )
    return out


def read_channel_file(path: Path, limits: LimitsDatabase | None = None) -> list[ChannelRecord]:
    """The channel records of a ChannelFinder JSON export (``.json``) or a CSV file (anything else).

    Args:
        path: the file.
        limits: the limits database that says which channels are writable (None: none is).

    Raises:
        ChannelImportError: unreadable file, malformed JSON or CSV, a bad or duplicate name, a missing
            description (CSV), a description over ``MAX_DESCRIPTION_CHARS``; the message names the line.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ChannelImportError(f"{path}: cannot read: {exc}") from None
    if path.suffix.lower() == ".json":
        given = [(line, _record_from_json(f"{path}: line {line}", item)) for line, item in _json_items(path, text)]
    else:
        given = _records_from_csv(path, text)
    if not given:
        raise ChannelImportError(f"{path}: no channels in the file")
    seen: dict[str, int] = {}
    for line, g in given:
        if g["name"] in seen:
            raise ChannelImportError(
                f"{path}: line {line}: channel {g['name']!r} already given on line {seen[g['name']]}"
            )
        seen[g["name"]] = line
        if len(g["description"]) > MAX_DESCRIPTION_CHARS:
            raise ChannelImportError(
                f"{path}: line {line}: description of {g['name']!r} is over {MAX_DESCRIPTION_CHARS} characters"
            )
    sizes = family_sizes(list(seen))
    channels = limits.channels if limits is not None else {}
    return [
        record_for(
            g["name"],
            bool(channels.get(g["name"]) and channels[g["name"]].writable),
            sizes,
            **{k: v for k, v in g.items() if k != "name"},
        )
        for _, g in given
    ]


def source_name(path: Path) -> str:
    """The ``source`` recorded for channels imported from ``path``: ``import:<file name>``."""
    return f"import:{path.name}"
