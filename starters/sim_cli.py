"""``tern sim``: drive the running simulated accelerator (``tern up``'s ``sim``, or ``python -m tern.sim``).

``tern sim trip cavity1`` writes ``trip cavity1`` to the simulator's scenario channel ``SIM:SCENARIO`` over
Channel Access (a put with completion callback): cavity 1's reflected power ``SR:RF:CAVITY:01:POWER:REV`` jumps
to 45 kW and decays back (:meth:`tern.sim.accelerator.SimulatedAccelerator.trip`), which is what the
issue-12 demo trigger (``--above 40``) fires on. An unknown target exits 2 before anything is sent; a simulator
that does not answer exits 1.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from starters.common import console, fail, load_settings, print_json

app = typer.Typer(help="Drive the simulated accelerator (scenarios).", no_args_is_help=True)
out = console()
PUT_TIMEOUT_S = 5.0


def _listed(settings: Any, channel: str) -> bool:
    from tern.control.limits import LimitsDatabase, LimitsDatabaseError

    try:
        return channel in LimitsDatabase.load(settings.control.limits_path)
    except LimitsDatabaseError as exc:
        fail(str(exc))


@app.command("trip")
def trip(
    target: Annotated[str, typer.Argument(help="What trips: cavity1 .. cavity9.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Trip an RF cavity: its reflected power jumps above 40 kW, then decays (seconds)."""
    import time

    from tern.control.ca_context import ChannelAccessError, attach_thread, configure_environment
    from tern.sim.accelerator import SCENARIO_CHANNEL, TRIP_PEAK, ScenarioError, trip_channel

    try:
        channel = trip_channel(target)
    except ScenarioError as exc:
        fail(str(exc))
    s = load_settings()
    if not _listed(s, channel):
        fail(
            f"{target}: {channel} is not in the limits database {s.control.limits_path}: the simulator does "
            "not serve it"
        )
    try:
        configure_environment(s.ca_environment())
        epics = attach_thread()
    except ChannelAccessError as exc:
        fail(str(exc), 1)
    sent_at = time.time()
    status = epics.caput(SCENARIO_CHANNEL, f"trip {target}", wait=True, timeout=PUT_TIMEOUT_S)
    if status != 1:
        fail(
            f"the simulator did not accept the scenario (no answer on {SCENARIO_CHANNEL} at port "
            f"{s.control.ca_server_port} within {PUT_TIMEOUT_S:g} s: is `tern up` running?)",
            1,
        )
    if as_json:
        print_json({"scenario": f"trip {target}", "channel": channel, "peak": TRIP_PEAK, "sent_at": sent_at})
    else:
        out.print(f"tripped {target}: {channel} jumps to {TRIP_PEAK:g} kW, then decays", highlight=False)
