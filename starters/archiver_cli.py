"""`tern archiver get CHANNEL... --from ... --to ...`: archived history from the Archiver Appliance (or the
embedded archiver) for people.

Mounted in the main CLI with ``app.add_typer(archiver_app, name="archiver")``. Exit status: 0 data printed;
1 the archiver did not answer (after its retries); 2 bad input (unparsable, reversed or too long a range,
unknown binning operator, a channel that is not archived or has no sample in the range). Output: a table of
summaries (default), ``--json`` (the Appliance JSON array), or ``--csv`` (one row per sample).
``tern.archiver`` is imported inside the command (start-up time, issue 17).
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from starters.common import console, fail, load_settings

app = typer.Typer(help="Archived history (EPICS Archiver Appliance retrieval API).", no_args_is_help=True)
out = console()


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:g}"


@app.command("get")
def get(
    channels: Annotated[list[str], typer.Argument(help="Channel (PV) names.")],
    frm: Annotated[
        str | None,
        typer.Option("--from", help="Start: ISO 8601, 'now', '6 h ago', 'yesterday 18:00' (facility time zone)."),
    ] = None,
    to: Annotated[str | None, typer.Option("--to", help="End (same forms); default now.")] = None,
    range_: Annotated[
        str | None, typer.Option("--range", help="A phrase instead: 'last 6 h', 'yesterday 18:00 to 22:00'.")
    ] = None,
    binning: Annotated[
        str, typer.Option(help="'auto', 'raw', or operator_seconds (mean_600, max_60, firstSample_3600, ...).")
    ] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the Appliance JSON array.")] = False,
    as_csv: Annotated[
        bool, typer.Option("--csv", help="Print CSV: channel,time,secs,nanos,value,severity,status.")
    ] = False,
) -> None:
    """Print CHANNELS' archived samples between --from and --to (or over --range)."""
    import asyncio

    from tern.archiver.binning import BinningError
    from tern.archiver.client import ArchiverClient, ArchiverError, ArchiverUnavailable
    from tern.archiver.read import choose_binning
    from tern.archiver.series import Series, to_csv
    from tern.models.timerange import TimeRangeError, resolve, zone

    if as_json and as_csv:
        fail("give --json or --csv, not both")
    s = load_settings()
    try:
        start, end = resolve(
            range_text=range_,
            start=frm,
            end=to,
            now=datetime.now(UTC),
            tz=zone(s.archiver.facility_timezone),
            max_span=timedelta(hours=s.archiver.max_span_h),
        )
        chosen = choose_binning(binning, (end - start).total_seconds(), s.archiver.target_points)
    except (TimeRangeError, BinningError) as exc:
        fail(str(exc))

    async def fetch() -> dict[str, Series | ArchiverError]:
        async with ArchiverClient(
            s.archiver.base_url, timeout_s=s.archiver.timeout_s, attempts=s.archiver.attempts
        ) as client:
            return await client.get_each(channels, start, end, chosen)

    found = asyncio.run(fetch())
    down = [r for r in found.values() if isinstance(r, ArchiverUnavailable)]
    if down:
        fail(str(down[0]), code=1)
    bad = [r for r in found.values() if isinstance(r, ArchiverError)]
    if bad:
        fail("; ".join(str(b) for b in bad))
    series = [r for r in found.values() if isinstance(r, Series)]
    if as_json:
        sys.stdout.write(json.dumps([x.to_appliance() for x in series]) + "\n")
    elif as_csv:
        sys.stdout.write(to_csv(series))
    else:
        from rich.table import Table

        t = Table(
            title=f"{start:%Y-%m-%d %H:%M:%S} to {end:%Y-%m-%d %H:%M:%S} UTC ({chosen.label if chosen else 'raw'})"
        )
        for col in ("channel", "points", "first", "last", "min", "max", "mean", "last value", "worst severity"):
            t.add_column(col)
        for x in series:
            m = x.summary()
            t.add_row(
                m.channel, str(m.count), f"{m.first:%m-%d %H:%M:%S}" if m.first else "-",
                f"{m.last:%m-%d %H:%M:%S}" if m.last else "-", _num(m.min), _num(m.max), _num(m.mean),
                f"{_num(m.last_value)} {m.units}".strip(), str(m.max_severity),
            )  # fmt: skip
        out.print(t)
