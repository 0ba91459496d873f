"""Archived time series in memory (columnar), in the EPICS Archiver Appliance JSON shape, and as CSV.

Appliance JSON (``/retrieval/data/getData.json``; archiver-appliance/epicsarchiverap, ``JSONEncoder``):
``[{"meta": {"name": PV, "PREC": "3", ...}, "data": [{"secs": 1700000000, "nanos": 0, "val": 1.5,
"severity": 0, "status": 0}, ...]}]``; ``secs`` are POSIX seconds (UTC), ``nanos`` the nanoseconds within.
Columns rather than one object per sample, so that a week of 1 Hz data (604,800 samples) stays cheap.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tern.models.archiver import SeriesSummary


@dataclass
class Series:
    """One channel's samples in time order.

    Attributes:
        channel: channel (PV) name.
        meta: the Appliance ``meta`` object (``name``, ``PREC``, maybe ``EGU``), values as strings.
        secs, nanos: sample times, POSIX seconds (UTC) and nanoseconds within the second.
        vals: values (floats; integers of enum/status channels as floats).
        severity, status: EPICS alarm severity (0 NO_ALARM .. 3 INVALID) and status of each sample.
        binning: the operator applied by the server, e.g. ``mean_600``, or None for raw samples.
    """

    channel: str
    meta: dict[str, Any] = field(default_factory=dict)
    secs: list[int] = field(default_factory=list)
    nanos: list[int] = field(default_factory=list)
    vals: list[float] = field(default_factory=list)
    severity: list[int] = field(default_factory=list)
    status: list[int] = field(default_factory=list)
    binning: str | None = None

    def __len__(self) -> int:
        return len(self.secs)

    def times(self) -> list[float]:
        """Sample times as POSIX seconds (float)."""
        return [s + n * 1e-9 for s, n in zip(self.secs, self.nanos, strict=True)]

    @classmethod
    def from_appliance(cls, obj: dict[str, Any], binning: str | None = None) -> Series:
        """Parse one element of the Appliance JSON array. Raises ``ValueError`` on a malformed element."""
        try:
            meta = dict(obj.get("meta") or {})
            data = obj["data"]
            s = cls(channel=str(meta.get("name", "")), meta=meta, binning=binning)
            for d in data:
                val = d["val"]
                if isinstance(val, list):  # waveforms: keep the first element (Tern archives scalars)
                    val = val[0] if val else math.nan
                if val is None:  # NaN is written as null (JSON has no NaN)
                    val = math.nan
                s.secs.append(int(d["secs"]))
                s.nanos.append(int(d.get("nanos", 0)))
                s.vals.append(float(val))
                s.severity.append(int(d.get("severity", 0)))
                s.status.append(int(d.get("status", 0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed archiver JSON element: {exc!r}") from exc
        return s

    def to_appliance(self) -> dict[str, Any]:
        """This series as one element of the Appliance JSON array (inverse of :meth:`from_appliance`)."""
        return {
            "meta": self.meta or {"name": self.channel, "PREC": "0"},
            "data": [
                {"secs": s, "nanos": n, "val": v, "severity": sev, "status": st}
                for s, n, v, sev, st in zip(self.secs, self.nanos, self.vals, self.severity, self.status, strict=True)
            ],
        }

    def summary(self) -> SeriesSummary:
        """Count, first/last time, min/max/mean/last value and the worst severity (NaN values skipped)."""
        finite = [v for v in self.vals if math.isfinite(v)]
        ts = self.times()
        return SeriesSummary(
            channel=self.channel,
            count=len(self),
            first=datetime.fromtimestamp(ts[0], UTC) if ts else None,
            last=datetime.fromtimestamp(ts[-1], UTC) if ts else None,
            min=min(finite) if finite else None,
            max=max(finite) if finite else None,
            mean=sum(finite) / len(finite) if finite else None,
            last_value=self.vals[-1] if self.vals and math.isfinite(self.vals[-1]) else None,
            max_severity=max(self.severity) if self.severity else 0,
            binning=self.binning,
            units=str(self.meta.get("EGU", "")),
        )


def to_csv(series: list[Series]) -> str:
    """Long-format CSV: ``channel,time,secs,nanos,value,severity,status`` (time in ISO 8601 UTC)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["channel", "time", "secs", "nanos", "value", "severity", "status"])
    for s in series:
        for sec, ns, v, sev, st in zip(s.secs, s.nanos, s.vals, s.severity, s.status, strict=True):
            t = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{ns // 1_000_000:03d}Z"
            w.writerow([s.channel, t, sec, ns, repr(v), sev, st])
    return out.getvalue()


SERIES_MEDIA_TYPE = "application/vnd.tern.series+json+gzip"
"""Media type of a stored series artifact: gzip of the Appliance JSON array (one element per channel)."""


def pack(series: list[Series]) -> bytes:
    """Series as the artifact content: gzip-compressed Appliance JSON (what ``getDataForPVs.json`` returns),
    so any Appliance reader can open it; ``meta.binning`` records the server-side operator."""
    doc = []
    for s in series:
        el = s.to_appliance()
        el["meta"] = {**el["meta"], "name": s.channel, **({"binning": s.binning} if s.binning else {})}
        doc.append(el)
    return gzip.compress(json.dumps(doc, separators=(",", ":")).encode(), compresslevel=6, mtime=0)


def unpack(content: bytes) -> list[Series]:
    """Inverse of :func:`pack`. Raises ``ValueError`` on content that is not a packed series."""
    try:
        doc = json.loads(gzip.decompress(content))
    except (OSError, ValueError) as exc:
        raise ValueError(f"not a packed series artifact: {exc}") from exc
    return [Series.from_appliance(el, binning=(el.get("meta") or {}).get("binning")) for el in doc]
