"""The EPICS Archiver Appliance's PB/HTTP format (``/retrieval/data/getData.raw``): encode and decode.

Source: archiver-appliance/epicsarchiverap, ``src/proto/EPICSEvent.proto`` (compiled with protoc into
:mod:`tern.archiver.proto.EPICSEvent_pb2`), ``docs/source/reader/references/pb_pbraw.md`` ("The .pb file format
and the .pbraw binary protocol"), ``PBRAWResponse.java`` and ``PB/utils/LineEscaper.java``:

- A response is one or more *chunks*; chunks are separated by an empty line (``\\n``).
- A chunk is a header line, a serialized ``PayloadInfo`` (PV name, ``PayloadType``, ``year``, ``elementCount``,
  ``headers`` such as ``PREC``, ``EGU`` and an enum's labels ``ENUM_0``, ``ENUM_1``, ...), then one line per
  sample: the serialized message of the payload type (``ScalarDouble``, ``ScalarInt``, ``ScalarEnum``, ...) with
  ``secondsintoyear`` (seconds since 1 January 00:00 UTC of the chunk's year), ``nano``, ``val``, ``severity``,
  ``status``. Every line ends with ``\\n``.
- A chunk belongs to one PV and one (UTC) year, so a range spanning New Year gives two chunks.
- Line escaping, applied to each serialized message: ``0x1B`` -> ``0x1B 0x01``, ``0x0A`` -> ``0x1B 0x02``,
  ``0x0D`` -> ``0x1B 0x03`` (the escape byte first when escaping, last when unescaping).

No Temporal import; values come from :class:`tern.archiver.series.Series` (doubles, as the store keeps them).
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tern.archiver.proto import EPICSEvent_pb2 as ee
from tern.archiver.series import Series

ESC, NL, CR = b"\x1b", b"\n", b"\r"

MESSAGES: dict[str, Any] = {
    "SCALAR_STRING": ee.ScalarString,
    "SCALAR_SHORT": ee.ScalarShort,
    "SCALAR_FLOAT": ee.ScalarFloat,
    "SCALAR_ENUM": ee.ScalarEnum,
    "SCALAR_BYTE": ee.ScalarByte,
    "SCALAR_INT": ee.ScalarInt,
    "SCALAR_DOUBLE": ee.ScalarDouble,
}
"""Sample message class for each scalar ``PayloadType`` name (EPICSEvent.proto)."""

_INTEGRAL = {"SCALAR_SHORT", "SCALAR_ENUM", "SCALAR_INT"}


class PBError(ValueError):
    """A PB/HTTP body that cannot be decoded, or a value that cannot be encoded as its payload type."""


def escape_line(data: bytes) -> bytes:
    """Escape one serialized message for a PB line (LineEscaper.escapeNewLines)."""
    return data.replace(ESC, b"\x1b\x01").replace(NL, b"\x1b\x02").replace(CR, b"\x1b\x03")


def unescape_line(line: bytes) -> bytes:
    """Inverse of :func:`escape_line`. Raises :class:`PBError` on an escape byte not followed by 1, 2 or 3."""
    if ESC not in line:
        return line
    out = bytearray()
    i, n = 0, len(line)
    while i < n:
        j = line.find(ESC, i)
        if j < 0:
            out += line[i:]
            break
        out += line[i:j]
        code = line[j + 1 : j + 2]
        if code not in (b"\x01", b"\x02", b"\x03"):
            raise PBError(f"bad escape sequence {line[j : j + 2]!r} at byte {j}")
        out += {b"\x01": ESC, b"\x02": NL, b"\x03": CR}[code]
        i = j + 2
    return bytes(out)


def year_start(year: int) -> int:
    """POSIX seconds of 1 January ``year`` 00:00:00 UTC."""
    return calendar.timegm((year, 1, 1, 0, 0, 0, 0, 0, 0))


def year_of(secs: int) -> int:
    """The UTC year of POSIX second ``secs``."""
    return datetime.fromtimestamp(secs, UTC).year


def _header(pv: str, payload_type: str, year: int, headers: Mapping[str, str]) -> bytes:
    info = ee.PayloadInfo(pvname=pv, type=payload_type, year=year, elementCount=1)
    for name, val in headers.items():
        if val:  # the Appliance leaves out empty header values
            info.headers.add(name=name, val=val)
    return escape_line(info.SerializeToString())


def encode(
    series: Series, payload_type: str = "SCALAR_DOUBLE", headers: Mapping[str, str] | None = None, year: int = 0
) -> bytes:
    """``series`` as a PB/HTTP body: one chunk per UTC year its samples fall in, in time order.

    Args:
        series: one PV's samples in time order (POSIX seconds, nanoseconds, double values, severity, status).
        payload_type: a scalar ``PayloadType`` name (keys of :data:`MESSAGES` except ``SCALAR_STRING``);
            integral types (SHORT, INT, ENUM) get the value as an integer, BYTE as one byte.
        headers: ``PayloadInfo.headers`` (e.g. ``PREC``, ``EGU``, ``ENUM_0``...); empty values are left out.
        year: the year of the header sent for an empty series (the Appliance sends a header even then); 0 means
            the current UTC year.

    Raises:
        PBError: unknown or non-numeric payload type, or a value that is not integral for an integral type.
    """
    if payload_type not in MESSAGES or payload_type == "SCALAR_STRING":
        raise PBError(f"cannot encode doubles as payload type {payload_type!r}")
    cls = MESSAGES[payload_type]
    hdr = dict(headers or {})
    pv = series.channel
    if not series.secs:
        return _header(pv, payload_type, year or year_of(int(time.time())), hdr) + NL
    integral = payload_type in _INTEGRAL
    byte = payload_type == "SCALAR_BYTE"
    out: list[bytes] = []
    lo = hi = -1  # current chunk's [year start, next year start)
    msg = cls()  # reused: every field is set each sample, or cleared when it must be absent (Clear() costs 2x)
    has_sev = has_st = False
    for secs, nano, val, sev, st in zip(
        series.secs, series.nanos, series.vals, series.severity, series.status, strict=True
    ):
        if not lo <= secs < hi:
            y = year_of(secs)
            lo, hi = year_start(y), year_start(y + 1)
            if out:
                out.append(NL)  # the empty line that ends a chunk
            out.append(_header(pv, payload_type, y, hdr))
            out.append(NL)
        msg.secondsintoyear = secs - lo
        msg.nano = nano
        if integral or byte:
            if val != int(val):
                raise PBError(f"{pv}: value {val!r} at {secs}.{nano:09d} is not an integer ({payload_type})")
            msg.val = bytes([int(val) & 0xFF]) if byte else int(val)
        else:
            msg.val = val
        if sev:  # severity and status 0 are the proto's defaults: left out, as the Appliance leaves them
            msg.severity, has_sev = sev, True
        elif has_sev:
            msg.ClearField("severity")
            has_sev = False
        if st:
            msg.status, has_st = st, True
        elif has_st:
            msg.ClearField("status")
            has_st = False
        out.append(escape_line(msg.SerializeToString()))
        out.append(NL)
    return b"".join(out)


@dataclass
class Chunk:
    """One decoded chunk: its ``PayloadInfo`` and samples as ``(secs, nanos, val, severity, status)`` with POSIX
    seconds (``val`` as the message holds it: float, int, bytes or str)."""

    pv: str
    payload_type: str
    year: int
    headers: dict[str, str]
    samples: list[tuple[int, int, Any, int, int]] = field(default_factory=list)


def decode(body: bytes) -> list[Chunk]:
    """Parse a PB/HTTP body into its chunks (inverse of :func:`encode`). Raises :class:`PBError` on a malformed
    body (bad escape, a line that is not the message its header announces, an unknown payload type)."""
    from google.protobuf.message import DecodeError

    chunks: list[Chunk] = []
    for part in body.split(b"\n\n"):
        lines = [ln for ln in part.split(NL) if ln]
        if not lines:
            continue
        try:
            info = ee.PayloadInfo.FromString(unescape_line(lines[0]))
            name = ee.PayloadType.Name(info.type)
            if name not in MESSAGES:
                raise PBError(f"payload type {name} is not supported by this decoder")
            cls, base = MESSAGES[name], year_start(info.year)
            chunk = Chunk(info.pvname, name, info.year, {h.name: h.val for h in info.headers})
            for ln in lines[1:]:
                m = cls.FromString(unescape_line(ln))
                chunk.samples.append((base + m.secondsintoyear, m.nano, m.val, m.severity, m.status))
        except (DecodeError, ValueError) as exc:
            if isinstance(exc, PBError):
                raise
            raise PBError(f"malformed PB/HTTP chunk {len(chunks)}: {exc}") from exc
        chunks.append(chunk)
    return chunks
