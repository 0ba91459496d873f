"""``tern trigger``: runs started by events, not by an operator asking (issue 12, README "Triggers").

- ``add NAME --cron "*/10 * * * *"`` or ``--every 10m``: a Temporal Schedule ``tern-trigger-NAME``;
- ``add NAME --channel PV --above X [--hysteresis H]`` (or ``--below X``, ``--severity-change``,
  ``--on-change``): watched by the trigger monitor (``tern up`` component ``triggers``);
- ``add NAME --webhook --key-id KEY``: fired by a ``POST /triggers/NAME`` signed with one of the named keys on
  Tern's webhook API (``tern bridge webhook``);

each with ``--question "..."`` (planned by the worker's LLM) or ``--plan FILE``. ``list``, ``pause``,
``resume`` and ``remove`` act on all three kinds. Bad input (a name in use or malformed, a cron expression that
does not parse, an unknown channel, a plan file that does not load, no LLM for a question, an unknown trigger)
exits 2 with the reason and creates or changes nothing; an unreachable Temporal or PostgreSQL exits 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from starters.common import console, fail, load_settings, print_json, run_async

if TYPE_CHECKING:
    import asyncpg

    from tern.config import TernSettings

app = typer.Typer(
    help="Event triggers: schedules, channel conditions and webhooks that start runs.", no_args_is_help=True
)
out = console()
AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


async def _pool(settings: TernSettings) -> asyncpg.Pool:
    from starters.client import TernUnavailable
    from tern.db import DatabaseError, create_pool

    try:
        return await create_pool(settings.writer_dsn, max_size=2)
    except DatabaseError as exc:
        raise TernUnavailable(str(exc)) from exc


def _action(settings: TernSettings, question: str | None, plan: Path | None, user: str) -> Any:
    """The checked ``TriggerAction``, or exit 2."""
    from pydantic import ValidationError

    from starters.client import NO_LLM, TernUserError, validation_message
    from starters.plan_file import check_plan_channels, load_plan
    from tern.models.limits import MAX_QUERY_CHARS
    from tern.models.trigger import TriggerAction

    if (question is None) == (plan is None):
        fail("give exactly one of --question and --plan")
    the_plan = None
    if question is not None:
        if not question.strip():
            fail("--question is empty")
        if len(question) > MAX_QUERY_CHARS:
            fail(f"--question is {len(question)} characters long; the limit is {MAX_QUERY_CHARS} (MAX_QUERY_CHARS)")
        if settings.llm.provider == "none":
            fail(f"--question needs an LLM: {NO_LLM}")
    else:
        assert plan is not None
        try:
            the_plan = load_plan(plan)
            check_plan_channels(the_plan, settings)
        except TernUserError as exc:
            fail(str(exc))
    try:
        return TriggerAction(
            question=question, plan=the_plan, plan_file=str(plan) if plan is not None else None, user=user
        )
    except ValidationError as exc:
        fail(validation_message(exc, "trigger", {"user": "--user", "question": "--question"}))


def _watch(
    channel: str, above: float | None, below: float | None, severity: bool, on_change: bool, hysteresis: float | None
) -> Any:
    """The checked ``ChannelWatch`` (channel not yet looked up), or exit 2."""
    from pydantic import ValidationError

    from starters.client import validation_message
    from tern.models.trigger import ChannelWatch

    given = [
        c
        for c, on in (
            ("above", above is not None),
            ("below", below is not None),
            ("severity_change", severity),
            ("on_change", on_change),
        )
        if on
    ]
    if len(given) != 1:
        fail("a channel trigger takes exactly one of --above, --below, --severity-change, --on-change")
    condition = given[0]
    if hysteresis is not None and condition not in ("above", "below"):
        fail("--hysteresis goes with --above or --below")
    try:
        return ChannelWatch(
            channel=channel,
            condition=condition,
            threshold=above if above is not None else below,
            hysteresis=hysteresis or 0.0,
        )
    except ValidationError as exc:
        fail(validation_message(exc, "--channel", {"hysteresis": "--hysteresis", "threshold": f"--{condition}"}))


def _check_channel_listed(settings: TernSettings, channel: str) -> bool:
    """Whether the limits database lists ``channel``."""
    from tern.control.limits import LimitsDatabase, LimitsDatabaseError

    try:
        return channel in LimitsDatabase.load(settings.control.limits_path)
    except LimitsDatabaseError as exc:
        fail(f"cannot check the channel: {exc}")


def _key_ids(settings: TernSettings, given: list[str], webhook: bool) -> list[str]:
    """The checked ``--key-id`` list: required with ``--webhook`` (a trigger any key could fire would let every
    bot start every trigger's runs), refused without it, each a key of ``TERN_CHAT__WEBHOOK_SECRETS`` (exit 2)."""
    if not webhook:
        if given:
            fail("--key-id goes with --webhook")
        return []
    if not given:
        fail(
            "--webhook needs --key-id KEY: the webhook key id(s) of TERN_CHAT__WEBHOOK_SECRETS that may fire this "
            "trigger "
            "(no trigger may be fired by every key)"
        )
    known = settings.chat.webhook_secrets
    for k in given:
        if k == settings.chat.webhook_notify_key_id:
            fail(f"--key-id {k!r} is the outbound notification key id, which Tern never accepts inbound")
        if k not in known:
            fail(
                f"--key-id {k!r} is not a key of TERN_CHAT__WEBHOOK_SECRETS"
                + (f" (keys: {', '.join(sorted(known))})" if known else " (none are set)")
            )
    return list(dict.fromkeys(given))


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Trigger name: lower-case letters, digits and dashes, at most 48.")],
    question: Annotated[str | None, typer.Option("--question", help="Question the run asks (needs an LLM).")] = None,
    plan: Annotated[Path | None, typer.Option("--plan", help="Plan file (JSON or YAML) the run carries out.")] = None,
    cron: Annotated[str | None, typer.Option("--cron", help="Schedule: five-field cron expression (UTC).")] = None,
    every: Annotated[str | None, typer.Option("--every", help="Schedule: interval, e.g. 30s, 10m, 1h30m.")] = None,
    channel: Annotated[str | None, typer.Option("--channel", help="Channel trigger: the channel to watch.")] = None,
    above: Annotated[float | None, typer.Option("--above", help="Fire when the value rises above this.")] = None,
    below: Annotated[float | None, typer.Option("--below", help="Fire when the value falls below this.")] = None,
    hysteresis: Annotated[
        float | None,
        typer.Option("--hysteresis", help="Re-arm only once the value is back this far past the threshold."),
    ] = None,
    severity_change: Annotated[
        bool, typer.Option("--severity-change", help="Fire when the alarm severity changes.")
    ] = False,
    on_change: Annotated[bool, typer.Option("--on-change", help="Fire whenever the value changes.")] = False,
    webhook: Annotated[bool, typer.Option("--webhook", help="Fire on a signed POST /triggers/NAME.")] = False,
    key_id: Annotated[
        list[str] | None,
        typer.Option(
            "--key-id",
            help="Webhook trigger: a key id of TERN_CHAT__WEBHOOK_SECRETS that may fire it (repeat for more; "
            "required).",
        ),
    ] = None,
    user: Annotated[str | None, typer.Option("--user", help="User the runs are started as (default: you).")] = None,
    as_json: AsJson = False,
) -> None:
    """Add a trigger. Everything is checked before anything is created (exit 2 with the reason)."""
    from tern.config import current_user
    from tern.models.trigger import TRIGGER_NAME
    from tern.triggers.schedule_spec import ScheduleSpecError, check_cron, parse_every

    s = load_settings()
    if not TRIGGER_NAME.match(name):
        fail(
            f"trigger name {name!r}: use 1 to 48 lower-case letters, digits and dashes, starting with a letter or digit"
        )
    kinds = [
        k
        for k, on in (
            ("--cron", cron is not None),
            ("--every", every is not None),
            ("--channel", channel is not None),
            ("--webhook", webhook),
        )
        if on
    ]
    if len(kinds) != 1:
        fail(
            "give exactly one of --cron, --every, --channel, --webhook"
            + (f" (got {', '.join(kinds)})" if kinds else "")
        )
    if channel is None and (
        above is not None or below is not None or hysteresis is not None or severity_change or on_change
    ):
        fail("--above, --below, --hysteresis, --severity-change and --on-change go with --channel")
    key_ids = _key_ids(s, key_id or [], webhook)
    action = _action(s, question, plan, user if user is not None else current_user())
    try:
        cron_text = check_cron(cron) if cron is not None else None
        interval = parse_every(every) if every is not None else None
    except ScheduleSpecError as exc:
        fail(str(exc))
    watch = _watch(channel, above, below, severity_change, on_change, hysteresis) if channel is not None else None
    listed = _check_channel_listed(s, channel) if channel is not None else True

    async def go() -> dict[str, Any]:
        from starters.client import TernClient, TernUserError
        from starters.triggers import create_schedule, schedule_exists
        from tern.models.trigger import TriggerDefinition, schedule_id
        from tern.triggers.store import add_trigger, get_trigger

        client = (await TernClient.connect(s)).client
        pool = await _pool(s)
        try:
            async with pool.acquire() as conn:
                if await get_trigger(conn, name) is not None or await schedule_exists(client, name):
                    raise TernUserError(
                        f"a trigger named {name!r} exists; remove it first (tern trigger remove {name})"
                    )
                if watch is not None and not listed:
                    known = await conn.fetchval("SELECT count(*) FROM channels WHERE name = $1", watch.channel)
                    if not known:
                        raise TernUserError(
                            f"unknown channel {watch.channel!r}: not in the limits database "
                            f"{s.control.limits_path} nor in the channel table"
                        )
                if cron_text is not None or interval is not None:
                    when = cron_text if cron_text is not None else f"every {every}"
                    await create_schedule(client, s, name, action, cron=cron_text, every=interval, when=when)
                    return {"name": name, "kind": "schedule", "schedule_id": schedule_id(name), "when": when}
                d = TriggerDefinition(
                    name=name,
                    kind="channel" if watch is not None else "webhook",
                    action=action,
                    watch=watch,
                    key_ids=key_ids,
                    created_by=action.user,
                )
                if not await add_trigger(conn, d):
                    raise TernUserError(
                        f"a trigger named {name!r} exists; remove it first (tern trigger remove {name})"
                    )
                if watch is not None:
                    return {"name": name, "kind": d.kind, "when": watch.describe()}
                return {"name": name, "kind": d.kind, "when": f"POST /triggers/{name}", "key_ids": key_ids}
        finally:
            await pool.close()

    result = run_async(go())
    result["action"] = f"question: {action.question}" if action.question else f"plan: {action.plan_file}"
    if as_json:
        print_json(result)
    else:
        out.print(f"trigger [bold]{name}[/] added ({result['kind']}: {result['when']})", highlight=False)


@app.command("list")
def list_(as_json: AsJson = False) -> None:
    """List Tern's triggers: schedules (read from Temporal), channel and webhook triggers (from PostgreSQL)."""
    from starters.triggers import TriggerInfo

    s = load_settings()

    async def go() -> list[TriggerInfo]:
        from starters.client import TernClient
        from starters.triggers import schedule_info, schedule_names, stored_info
        from tern.triggers.store import list_triggers

        client = (await TernClient.connect(s)).client
        found: list[TriggerInfo] = []
        for name in await schedule_names(client):
            info = await schedule_info(client, name)
            if info is not None:
                found.append(info)
        pool = await _pool(s)
        try:
            async with pool.acquire() as conn:
                found += [stored_info(d) for d in await list_triggers(conn)]
        finally:
            await pool.close()
        return sorted(found, key=lambda t: t.name)

    infos = run_async(go())
    if as_json:
        print_json([i.model_dump(mode="json") for i in infos])
        return
    if not infos:
        out.print("no triggers")
        return
    from rich.table import Table

    table = Table(title="Triggers")
    for col in ("name", "kind", "state", "when", "action", "user", "next run (UTC)"):
        table.add_column(col, overflow="fold")
    for i in infos:
        table.add_row(
            i.name,
            i.kind,
            "paused" if i.paused else "active",
            i.when,
            i.action,
            i.user,
            i.next_run.strftime("%Y-%m-%d %H:%M:%S") if i.next_run else "",
        )
    out.print(table)


def _change(name: str, what: str, as_json: bool) -> None:
    """Remove, pause or resume trigger ``name`` (a schedule, else a stored trigger); exit 2 when there is none."""
    s = load_settings()

    async def go() -> str:
        from starters.client import TernClient, TernUserError
        from starters.triggers import delete_schedule, set_schedule_paused
        from tern.triggers.store import remove_trigger, set_paused

        client = (await TernClient.connect(s)).client
        done = (
            await delete_schedule(client, name)
            if what == "removed"
            else await set_schedule_paused(client, name, what == "paused")
        )
        if done:
            return "schedule"
        pool = await _pool(s)
        try:
            async with pool.acquire() as conn:
                if what == "removed":
                    done = await remove_trigger(conn, name)
                else:
                    done = await set_paused(conn, name, what == "paused")
        finally:
            await pool.close()
        if not done:
            raise TernUserError(f"no trigger named {name!r} (tern trigger list shows them)")
        return "stored"

    kind = run_async(go())
    if as_json:
        print_json({"name": name, "status": what, "kind": kind})
    else:
        out.print(f"trigger [bold]{name}[/] {what}")


@app.command("remove")
def remove(name: str, as_json: AsJson = False) -> None:
    """Remove a trigger (runs it started go on)."""
    _change(name, "removed", as_json)


@app.command("pause")
def pause(name: str, as_json: AsJson = False) -> None:
    """Pause a trigger: it starts nothing until resumed."""
    _change(name, "paused", as_json)


@app.command("resume")
def resume(name: str, as_json: AsJson = False) -> None:
    """Resume a paused trigger."""
    _change(name, "resumed", as_json)
