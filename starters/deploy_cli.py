"""``tern deploy`` (Worker Deployment versions) and ``tern patches`` (patch retirement).

``tern deploy status`` shows the deployment (``worker.deployment_name``): its current and ramping build ids, every
version with its role (current, ramping, draining, drained, inactive) and how many open runs each holds.
``tern deploy current BUILD`` makes a version current (its workers must be polling); ``tern deploy ramp BUILD
PERCENT`` sends that share of new runs to it (``tern deploy ramp --off`` ends a ramp). Without BUILD they act on
this checkout's build id (:func:`tern.build_id.resolve_build_id`). See docs/concepts/deployments.md.

``tern patches`` lists each ``workflow.patched`` id of the code (:data:`workflows.patches.PATCHES`) and each one the
namespace's open runs recorded (search attribute ``TemporalChangeVersion``), with the count of open runs that
carry it, so a patch is retired (``deprecate_patch``, then removed) only when no open run needs it.

``--json`` on each prints the result. Exit 2 for bad input, 1 when Temporal cannot be reached or refuses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from starters.common import console, fail, load_settings, print_json, run_async

if TYPE_CHECKING:
    from temporalio.client import Client

    from starters.patches import PatchReport
    from tern.config import TernSettings
    from worker.versioning import DeploymentInfo

out = console()
app = typer.Typer(help="Worker Deployment versions: status, make current, ramp.", no_args_is_help=True)

AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
Build = Annotated[str | None, typer.Argument(help="Build id (default: this checkout's, see `tern deploy status`).")]
STATUS_TIMEOUT_S = 10.0


async def _client(s: TernSettings) -> Client:
    from starters.client import TernClient

    return (await TernClient.connect(s)).client


def _version(s: TernSettings, build: str | None) -> Any:
    from temporalio.common import WorkerDeploymentVersion

    from tern.build_id import BUILD_ID_PATTERN, BuildIdError, resolve_build_id

    if build is not None and not BUILD_ID_PATTERN.fullmatch(build):
        fail(f"build id {build!r}: 1-200 letters, digits, '_', '.', '+' or '-'")
    try:
        return WorkerDeploymentVersion(s.worker.deployment_name, build or resolve_build_id(s.worker.build_id))
    except BuildIdError as exc:
        fail(str(exc))


async def deployment_info(s: TernSettings, client: Client | None = None) -> DeploymentInfo | None:
    """The deployment ``s.worker.deployment_name`` (:func:`worker.versioning.describe`), None when no versioned
    worker has polled yet."""
    from worker.versioning import describe

    return await describe(client or await _client(s), s.worker.deployment_name)


def status_section(s: TernSettings, *, stack_temporal: bool) -> dict[str, Any] | None:
    """``tern status``'s ``deployment`` entry: the deployment as JSON, ``{"name": ..., "versions": []}`` when it has
    no version yet, or None when Temporal is neither the embedded stack's (``stack_temporal``) nor accepts a TCP
    connection at ``temporal.address`` (0.3 s), or does not answer within :data:`STATUS_TIMEOUT_S` (status must not
    hang)."""
    import asyncio

    from tern.embedded.net import port_in_use

    host, _, port = s.temporal.address.rpartition(":")
    if not stack_temporal and not port_in_use(int(port), host.strip("[]") or "127.0.0.1"):
        return None

    async def go() -> dict[str, Any]:
        info = await deployment_info(s)
        if info is None:
            return {"name": s.worker.deployment_name, "current_build_id": None, "versions": []}
        return info.model_dump(mode="json")

    try:
        return asyncio.run(asyncio.wait_for(go(), STATUS_TIMEOUT_S))
    except Exception:
        return None


def print_deployment(d: dict[str, Any]) -> None:
    """The deployment as a table (``tern deploy status``, ``tern status``)."""
    from rich.table import Table

    if not d.get("versions"):
        out.print(f"deployment {d['name']}: no versioned worker has polled yet", highlight=False)
        return
    ramp = f", ramping {d['ramping_build_id']} at {d['ramp_percentage']:g} %" if d.get("ramping_build_id") else ""
    table = Table(title=f"deployment {d['name']}: current {d['current_build_id'] or 'none (unversioned)'}{ramp}")
    for col in ("build id", "role", "open runs", "created"):
        table.add_column(col)
    colours = {"current": "green", "ramping": "cyan", "draining": "yellow"}
    for v in d["versions"]:
        c = colours.get(v["role"], "dim")
        table.add_row(v["build_id"], f"[{c}]{v['role']}[/{c}]", str(v["open_runs"]), str(v.get("created") or ""))
    out.print(table)
    if d.get("unversioned_open_runs"):
        out.print(f"open runs on no version (started before versioning): {d['unversioned_open_runs']}")


@app.command("status")
def deploy_status(as_json: AsJson = False) -> None:
    """Show the deployment: current and ramping build ids, each version's role and its open runs."""
    s = load_settings()

    async def go() -> dict[str, Any]:
        info = await deployment_info(s)
        if info is None:
            return {"name": s.worker.deployment_name, "current_build_id": None, "versions": []}
        return info.model_dump(mode="json")

    d = _deploy_call(go())
    if as_json:
        print_json(d)
    else:
        print_deployment(d)


@app.command("current")
def deploy_current(build: Build = None, as_json: AsJson = False) -> None:
    """Make BUILD the current version: new runs and AutoUpgrade runs' next tasks go to its workers."""
    from worker.versioning import set_current

    s = load_settings()
    version = _version(s, build)

    async def go() -> dict[str, Any]:
        prev = await set_current(await _client(s), version)
        return {"deployment": version.deployment_name, "current_build_id": version.build_id, "previous": prev}

    res = _deploy_call(go())
    if as_json:
        print_json(res)
    else:
        out.print(f"{version.to_canonical_string()} is current (was {res['previous'] or 'unversioned'})")


@app.command("ramp")
def deploy_ramp(
    build: Build = None,
    percentage: Annotated[float | None, typer.Argument(help="Share of new runs, 0-100.")] = None,
    off: Annotated[bool, typer.Option("--off", help="End the ramp (no ramping version).")] = False,
    as_json: AsJson = False,
) -> None:
    """Send PERCENTAGE of new runs to BUILD (the rest to the current version); --off ends a ramp."""
    from worker.versioning import set_ramping

    s = load_settings()
    if off:
        if build is not None or percentage is not None:
            fail("--off takes no BUILD or PERCENTAGE")
        version, pct = None, 0.0
    else:
        if percentage is None:
            fail("tern deploy ramp needs BUILD and PERCENTAGE (0-100), or --off")
        if not 0 <= percentage <= 100:
            fail(f"PERCENTAGE must be 0-100, got {percentage:g}")
        version, pct = _version(s, build), percentage

    async def go() -> dict[str, Any]:
        await set_ramping(await _client(s), s.worker.deployment_name, version.build_id if version else None, pct)
        return {
            "deployment": s.worker.deployment_name,
            "ramping_build_id": version.build_id if version else None,
            "percentage": pct,
        }

    res = _deploy_call(go())
    if as_json:
        print_json(res)
    elif version is None:
        out.print(f"deployment {s.worker.deployment_name}: no ramping version")
    else:
        out.print(f"{version.to_canonical_string()} ramping at {pct:g} % of new runs")


def _deploy_call(coro: Any) -> Any:
    from worker.versioning import DeploymentError

    try:
        return run_async(coro)
    except DeploymentError as exc:
        fail(str(exc), 1)


def patches(
    query: Annotated[
        str, typer.Option("--query", help="Visibility query of the executions to count.")
    ] = 'ExecutionStatus = "Running"',
    as_json: AsJson = False,
) -> None:
    """List each patch id with the number of open runs that recorded it (TemporalChangeVersion): a deprecated
    patch with 0 can be removed; see docs/how-to/upgrade-workers.md."""
    from temporalio.service import RPCError

    from starters.patches import patch_report

    if not query.strip():
        fail("--query must not be empty")
    s = load_settings()

    async def go() -> PatchReport:
        try:
            return await patch_report(await _client(s), query)
        except RPCError as exc:
            fail(f"cannot list the executions ({query}): {exc}", 1)

    report = run_async(go())
    if as_json:
        print_json(report.model_dump(mode="json"))
        return
    from rich.table import Table

    table = Table(title=f"patches: {report.open_runs} executions ({report.query})")
    for col in ("patch id", "in code", "runs that recorded it", "retire"):
        table.add_column(col)
    for p in report.patches:
        if p.in_code == "deprecated":
            hint = "remove the deprecate_patch call" if p.open_runs == 0 else "wait: runs carry the marker"
        elif p.in_code == "absent":
            hint = "REMOVED while runs carry it: they cannot replay" if p.open_runs else ""
        else:
            hint = "deprecate once every older run closed"
        table.add_row(p.patch_id, p.in_code, str(p.open_runs), hint)
    out.print(table)
