"""The ``tern`` command line.

Exit status: 0 success (for ``run --wait``, ``result`` and ``demo``: the run completed); 1 the run ended
otherwise (rejected, failed, timed out) or a service is unreachable; 2 bad input (nothing started or written).
``--json`` prints machine-readable output on stdout; messages go to stderr.

Heavy modules (the Temporal client, ``workflows``, docker, asyncpg, rich tables) are imported inside the
commands that use them, so ``tern --help`` and ``tern status`` start fast (issue 17; see ``starters.common``).
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from starters.archiver_cli import app as archiver_app
from starters.ariel_cli import app as ariel_app
from starters.bridge_cli import app as bridge_app
from starters.channels_cli import app as channels_app
from starters.common import (
    DEMO_OPERATOR,
    console,
    err,
    fail,
    hard_exit,
    load_settings,
    print_json,
    run_async,
    started_json,
    with_run_id,
)
from starters.deploy_cli import app as deploy_app
from starters.deploy_cli import patches
from starters.eval_cli import app as eval_app
from starters.freeze_cli import freeze, thaw
from starters.login_cli import login
from starters.memory_cli import app as memory_app
from starters.replay_cli import replay_check
from starters.sandbox_cli import app as sandbox_app
from starters.sim_cli import app as sim_app
from starters.trigger_cli import app as trigger_app
from starters.verify_cli import verify

if TYPE_CHECKING:
    from tern.models import AgentRunResult, AgentRunStatus, ApprovalRecord
    from tern.models.progress import RunProgress

app = typer.Typer(
    help="Tern: operator-assistant agents for particle accelerators, on Temporal.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(ariel_app, name="ariel")
app.add_typer(channels_app, name="channels")
app.add_typer(sandbox_app, name="sandbox")
app.command()(verify)
app.command()(login)
app.command()(freeze)
app.command()(thaw)
app.command("replay-check")(replay_check)
app.add_typer(archiver_app, name="archiver")
app.add_typer(memory_app, name="memory")
app.add_typer(bridge_app, name="bridge")
app.add_typer(trigger_app, name="trigger")
app.add_typer(sim_app, name="sim")
app.add_typer(eval_app, name="eval")
app.add_typer(deploy_app, name="deploy")
app.command()(patches)
out = console()


class StackPart(StrEnum):
    """Optional parts of the embedded stack (``tern up --with``; ``tern.embedded.stack.WITH``)."""

    matrix = "matrix"
    bluesky = "bluesky"


# --- the embedded stack -----------------------------------------------------------------------------------
@app.command()
def up(
    as_json: Annotated[bool, typer.Option("--json", help="Print the stack status as JSON.")] = False,
    with_: Annotated[
        list[StackPart] | None,
        typer.Option(
            "--with",
            help="Optional part to start too: 'matrix' (Synapse on TERN_CHAT__MATRIX_PORT with "
            "#control-room:localhost, "
            "and the Matrix approval bridge); 'bluesky' (a Bluesky queue server with Redis and ophyd's simulated "
            "devices on TERN_BLUESKY__CONTROL_PORT).",
        ),
    ] = None,
) -> None:
    """Start the embedded stack (PostgreSQL, Temporal dev server + Web UI, simulated accelerator, archiver, worker,
    ARIEL API; with --with matrix also Synapse and the Matrix approval bridge; with --with bluesky a Bluesky queue
    server)."""
    from tern.embedded.stack import WITH, EmbeddedStack, StackError

    assert all(w.value in WITH for w in with_ or ())  # StackPart lists the parts of WITH
    try:
        stack = EmbeddedStack(
            load_settings(), progress=lambda m: err.print(f"[dim]{m}[/dim]"), extras=tuple(w.value for w in with_ or ())
        )
        status = stack.up()
    except StackError as exc:
        fail(str(exc), 1)
    if as_json:
        print_json(status.model_dump())
    else:
        _print_stack(status)


@app.command()
def down(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Stop the embedded stack (state stays in the data directory)."""
    from tern.embedded.stack import EmbeddedStack

    status = EmbeddedStack(load_settings(), progress=lambda m: err.print(f"[dim]{m}[/dim]")).down()
    if as_json:
        print_json(status.model_dump())
    else:
        _print_stack(status)


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show each component's state, PID, address and port, the write freeze, and the worker deployment (versions,
    their roles and open runs: `tern deploy status`)."""
    from starters.deploy_cli import print_deployment, status_section
    from tern.embedded.stack import EmbeddedStack

    s = load_settings()
    st = EmbeddedStack(s).status()
    temporal_up = any(c.name == "temporal" and c.state == "running" for c in st.components)
    freeze = _freeze_line(s) if temporal_up else None
    deployment = status_section(s, stack_temporal=temporal_up)
    if as_json:
        write_freeze = freeze.model_dump(mode="json") if freeze else None
        print_json({**st.model_dump(), "write_freeze": write_freeze, "deployment": deployment})
    else:
        _print_stack(st)
        if deployment is not None:
            print_deployment(deployment)
        if freeze is not None:
            colour = "red" if freeze.frozen else "green"
            out.print(f"write freeze: [{colour}]{freeze.describe()}[/{colour}]", highlight=False)


@app.command()
def migrate(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Bring the database schema up to date as its owner (database.url, else the embedded server as postgres):
    migrations, the tern_writer (insert-only audit) and tern_reader (read-only) roles and their grants. `tern up`
    does this too; no other command migrates. Exit 1 when the database cannot be reached or a migration fails."""
    import asyncio

    from tern.db import DatabaseError, migrate_dsn

    s = load_settings()
    try:
        applied = asyncio.run(migrate_dsn(s.dsn, login_roles=s.database.url is None))
    except DatabaseError as exc:
        fail(str(exc), 1)
    if as_json:
        print_json({"applied": applied})
    else:
        out.print(f"migrated: applied {', '.join(f'{v:03d}' for v in applied)}" if applied else "schema up to date")


def _freeze_line(s: Any) -> Any:
    """The facility write freeze (``FreezeState``) for ``tern status``, or None when it cannot be read within a few
    seconds (status must not hang on Temporal)."""
    import asyncio

    from starters.client import TernClient

    async def go() -> Any:
        return await (await TernClient.connect(s)).freeze_state()

    try:
        return asyncio.run(asyncio.wait_for(go(), 10))
    except Exception:
        return None


def _print_stack(st: Any) -> None:
    from rich.table import Table

    table = Table(title=f"Tern embedded stack ({st.data_dir})")
    for col in ("component", "state", "pid", "address", "detail"):
        table.add_column(col)
    for c in st.components:
        colour = {"running": "green", "dead": "red"}.get(c.state, "yellow")
        addr = f"{c.address}:{c.port}" if c.port else ""
        table.add_row(c.name, f"[{colour}]{c.state}[/{colour}]", str(c.pid or ""), addr, c.detail)
    out.print(table)
    if st.sandbox is not None:
        ok = "[green]available[/]" if st.sandbox.available else "[red]unavailable[/]"
        out.print(f"sandbox ({st.sandbox.backend}): {ok} - {st.sandbox.detail}", highlight=False)
    if st.embedding is not None:
        e = st.embedding
        ok = "[green]installed[/]" if e.installed else "[red]not installed[/]"
        if e.loaded is not None:
            ok += ", [green]loaded[/]" if e.loaded else ", [red]not loaded[/]"
        if e.provider == "none":
            ok = "[yellow]off[/]"
        pkgs = ", ".join(f"{k} {v}" for k, v in e.packages.items())
        stored = f" (stored as {e.stored_as})" if e.stored_as and e.stored_as != e.model else ""
        out.print(
            f"embeddings ({e.provider}, {e.model}{stored}): {ok}"
            + (f" - {pkgs}" if pkgs else "")
            + (f"; {e.detail}" if e.detail else "")
            + (f"; loads in {e.loads_in}" if e.provider != "none" else ""),
            highlight=False,
        )
    if st.worker_urls:
        out.print(f"worker: {st.worker_urls['readyz']}, {st.worker_urls['metrics']}", highlight=False)


@app.command()
def worker() -> None:
    """Run a Tern worker in the foreground (uses writes_enabled and Channel Access settings as configured)."""
    import asyncio

    from worker.logs import configure_logging
    from worker.main import run_worker, startup_errors

    s = load_settings()
    configure_logging(s)
    if not s.control.writes_enabled:
        err.print("[yellow]control writes are disabled (writes_enabled=false): write steps will be refused[/]")
    try:
        asyncio.run(run_worker(s))
    except startup_errors() as exc:
        fail(f"the worker cannot start: {exc}", 1)


image_app = typer.Typer(help="Container images built locally, without a registry: the worker and the sandbox.")
app.add_typer(image_app, name="image")


@image_app.command("build")
def image_build(
    target: Annotated[str, typer.Argument(help="worker (infra/worker/Dockerfile) or sandbox (infra/sandbox).")],
    force: Annotated[bool, typer.Option("--force", help="Rebuild even when the image is up to date.")] = False,
) -> None:
    """Build an image on the local Docker engine (skipped when the image of the current source exists)."""
    from rich.markup import escape

    from tern.sandbox import SandboxError

    if target not in ("worker", "sandbox"):
        fail(f"unknown image {target!r}: worker or sandbox", 2)
    settings = load_settings()
    try:
        if target == "worker":
            from tern.worker_image import build_worker_image

            ref = build_worker_image(
                settings, force=force, progress=lambda line: out.print(escape(line), highlight=False)
            )
        else:
            from tern.sandbox.image import build_image

            ref = build_image(settings, force=force, progress=lambda line: out.print(escape(line), highlight=False))
    except SandboxError as exc:
        fail(str(exc), 1)
    out.print(f"{target} image: [bold]{ref}[/]")


# --- runs -------------------------------------------------------------------------------------------------
SignKey = Annotated[
    Path | None,
    typer.Option(
        "--key",
        help="Sign with this SSH key (proven identity; default when approval.identity is proven: the ID token of "
        "`tern login`, else ~/.ssh/id_ed25519).",
    ),
]


@app.command()
def run(
    query: Annotated[str, typer.Argument(help="The operator's question.")],
    plan: Annotated[Path, typer.Option("--plan", help="Plan file (JSON or YAML) with the steps to run.")],
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the result (approve from another shell).")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    user: Annotated[str | None, typer.Option("--user", help="Requesting user (default: you).")] = None,
    approver: Annotated[
        list[str] | None,
        typer.Option("--approver", help="Narrow who may approve (repeatable); the worker's policy decides."),
    ] = None,
    timeout: Annotated[float | None, typer.Option("--approval-timeout", help="Seconds to wait for a decision.")] = None,
    key: SignKey = None,
) -> None:
    """Start an agent run with an explicit plan.

    Everything is checked before Temporal is contacted (limits in ``tern.models.limits``); bad input exits 2
    with one line naming the option or plan field and the limit, and starts nothing.
    """
    from starters.client import TernClient, run_request
    from starters.plan_file import check_plan_channels, load_plan
    from starters.proofs import cli_signer

    s = load_settings()
    if not query.strip():
        fail("the query is empty")
    the_plan = _guard(lambda: load_plan(plan))
    _guard(lambda: check_plan_channels(the_plan, s))
    labels = {
        "query": "the query",
        "user": "--user" if user is not None else "user (your login name)",
        "approvers": "--approver",
        "approval_timeout_s": "--approval-timeout"
        if timeout is not None
        else "approval timeout (setting TERN_APPROVAL__TIMEOUT_S)",
    }
    who, signer = cli_signer(s, key=key, declared=user, option="--user")
    req = _guard(
        lambda: run_request(
            labels,
            user=who,
            query=query,
            plan=the_plan,
            approvers=approver or [],
            approval_timeout_s=timeout if timeout is not None else s.approval.timeout_s,
            python_approval_mode=s.approval.python_mode,
        )
    )

    async def go() -> None:
        client = await TernClient.connect(s)
        handle = await client.start_run(req, signer=signer)
        await _started(client, handle.id, s, wait=wait, as_json=as_json, doing="waiting")

    run_async(go())


async def _started(client: Any, workflow_id: str, s: Any, *, wait: bool, as_json: bool, doing: str) -> None:
    """Report a run just started (`tern run`, `tern ask`): its id and Web UI link, or with ``wait`` its result
    (exit status as `tern result`)."""
    if not wait:
        if as_json:
            print_json(started_json(s, workflow_id))
        else:
            out.print(f"started run [bold]{workflow_id}[/]  {s.run_url(workflow_id)}")
        return
    err.print(f"run {workflow_id} started; {doing} (approve with `tern approve {workflow_id}`)")
    _print_result(await client.result(workflow_id), as_json)


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The operator's question (at most 4,000 characters).")],
    approver: Annotated[
        list[str] | None,
        typer.Option("--approver", help="Narrow who may approve (repeatable); the worker's policy decides."),
    ] = None,
    plan_approval: Annotated[
        bool | None,
        typer.Option(
            "--plan-approval/--no-plan-approval",
            help="Ask an approver for the plan before any step runs (default: setting TERN_LLM__PLAN_APPROVAL).",
        ),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the result (approve from another shell).")] = False,
    follow: Annotated[
        bool, typer.Option("--follow", help="Print the run's progress live, then its result (as `tern follow`).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    user: Annotated[str | None, typer.Option("--user", help="Requesting user (default: you).")] = None,
    context: Annotated[str, typer.Option("--context", help="Your context for the planner (role, what you know).")] = "",
    timeout: Annotated[float | None, typer.Option("--approval-timeout", help="Seconds to wait for a decision.")] = None,
    key: SignKey = None,
) -> None:
    """Ask a question in plain words: the worker's LLM plans the steps, the run carries them out (writes still
    go through the limits check and an approver) and answers citing its sources.

    Exits 2 without starting anything when the question is empty or too long, or no LLM is configured.
    """
    from starters.client import TernClient
    from starters.proofs import cli_signer

    s = load_settings()
    _precheck_question(question, s)
    who, signer = cli_signer(s, key=key, declared=user, option="--user")

    async def go() -> None:
        client = await TernClient.connect(s)
        handle = await client.ask(
            question,
            user=who,
            signer=signer,
            approvers=approver or [],
            plan_approval=plan_approval,
            approval_timeout_s=timeout,
            context=context,
        )
        if follow:
            await _follow(client, handle.id, as_json)
        await _started(client, handle.id, s, wait=wait, as_json=as_json, doing="planning, then waiting")

    run_async(go())


@app.command("follow")
def follow_cmd(run_id: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Print a run's progress live (steps started and done, who it waits for, plan revisions), then its result.
    Reads what the run publishes (a long poll on its history), so it asks no worker and costs nothing while the run
    waits. ``--json``: one JSON object per line, ``{"progress": ...}`` then ``{"result": ...}``. Exit status as
    `tern result`."""
    from starters.client import TernClient

    _check_run_id(run_id)
    s = load_settings()

    async def go() -> None:
        await _follow(await TernClient.connect(s), run_id, as_json)

    run_async(go())


async def _follow(client: Any, run_id: str, as_json: bool) -> NoReturn:
    """Follow ``run_id`` to its end (``starters.follow_cli``) and exit as `tern result` (1 when it failed)."""
    from starters.follow_cli import follow_run, json_line

    res = await follow_run(client, run_id, as_json=as_json, out=out)
    if res is None:
        raise typer.Exit(1)
    if as_json:
        json_line({"result": with_run_id(res.model_dump(mode="json"))})
        raise typer.Exit(0 if res.status == "completed" else 1)
    _print_result(res, as_json=False)


def _precheck_question(question: str, s: Any) -> None:
    """Exit 2 before contacting Temporal: empty or over-long question, no LLM configured."""
    from starters.client import NO_LLM
    from tern.models.limits import MAX_QUERY_CHARS

    if not question.strip():
        fail("the question is empty")
    if len(question) > MAX_QUERY_CHARS:
        fail(f"the question is {len(question)} characters long; the limit is {MAX_QUERY_CHARS} (MAX_QUERY_CHARS)")
    if s.llm.provider == "none":
        fail(NO_LLM)


def _check_run_id(run_id: str) -> str:
    """``run_id``, or exit 2 when it is empty or longer than ``MAX_RUN_ID_CHARS`` (before anything is contacted)."""
    from tern.models.limits import MAX_RUN_ID_CHARS

    if not run_id.strip():
        fail("RUN_ID is empty")
    if len(run_id) > MAX_RUN_ID_CHARS:
        fail(f"RUN_ID has {len(run_id)} characters; the limit is {MAX_RUN_ID_CHARS}")
    return run_id


def _guard(fn: Any) -> Any:
    from starters.client import TernUserError

    try:
        return fn()
    except TernUserError as exc:
        fail(str(exc), 2)


@app.command()
def pending(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List runs waiting for an approval decision: one visibility query reading what each run publishes (its
    progress memo), so runs whose worker is down are listed too. ``--json``: each run's progress
    (``tern.models.progress.RunProgress``: ``pending`` holds the request's id, kind, summary, approvers, expiry and,
    for a write, the checked proposal)."""
    from rich.table import Table

    from starters.client import TernClient

    s = load_settings()

    async def go() -> list[RunProgress]:
        return await (await TernClient.connect(s)).pending()

    runs = run_async(go())
    if as_json:
        print_json([with_run_id(r.model_dump(mode="json")) for r in runs])
        return
    if not runs:
        out.print("no runs are waiting for approval")
        return
    table = Table(title="Runs waiting for approval")
    table.add_column("run id", no_wrap=True)
    for col in ("user", "request", "approvers", "expires (UTC)"):
        table.add_column(col, overflow="fold")
    for r in runs:
        p = r.pending
        assert p is not None
        table.add_row(
            r.workflow_id, r.user, p.summary, ", ".join(p.approvers), p.expires_at.strftime("%Y-%m-%d %H:%M:%S")
        )
    out.print(table)
    out.print(f"In the Web UI (each run's User Metadata tab says how to decide): {s.pending_url()}")


def _decide(
    run_id: str,
    approved: bool,
    who: str | None,
    comment: str,
    as_json: bool,
    wait: bool = False,
    request_id: str | None = None,
    key: Path | None = None,
) -> None:
    from starters.client import TernClient, check_user_name
    from starters.proofs import cli_signer
    from tern.models.limits import MAX_COMMENT_CHARS

    s = load_settings()
    _check_run_id(run_id)
    if who is not None:
        _guard(lambda: check_user_name(who, "--as"))
    name, signer = cli_signer(s, key=key, declared=who, option="--as")
    approver = _guard(lambda: check_user_name(name, "--as"))
    if len(comment) > MAX_COMMENT_CHARS:
        fail(f"--comment has {len(comment)} characters; the limit is {MAX_COMMENT_CHARS}")

    async def go() -> ApprovalRecord:
        return await (await TernClient.connect(s)).decide(
            run_id,
            approver,
            approved,
            comment,
            wait=wait,
            notify=lambda m: err.print(m, markup=False),
            expected_request=request_id,
            signer=signer,
        )

    record = run_async(go())
    if as_json:
        print_json(record.model_dump(mode="json"))
    else:
        out.print(
            f"{record.decision} request {record.request_id} of run {run_id} as {record.approver} "
            "(recorded in the audit table)"
        )


AsUser = Annotated[str | None, typer.Option("--as", help="Approver identity (default: you, or the --key's principal).")]
Comment = Annotated[str, typer.Option("--comment")]
AsJson = Annotated[bool, typer.Option("--json")]
RequestId = Annotated[
    str | None,
    typer.Option(
        "--request",
        help="The request id you read (tern show): refused if another request is pending by the time you decide.",
    ),
]
WaitForWorker = Annotated[
    bool,
    typer.Option(
        "--wait", help="If no worker is polling, wait for one (default: exit 1 after a few seconds, nothing sent)."
    ),
]


@app.command()
def approve(
    run_id: str,
    as_user: AsUser = None,
    comment: Comment = "",
    as_json: AsJson = False,
    wait: WaitForWorker = False,
    request: RequestId = None,
    key: SignKey = None,
) -> None:
    """Approve the pending request of a run (with --request, only the request you read)."""
    _decide(run_id, True, as_user, comment, as_json, wait, request, key)


@app.command()
def reject(
    run_id: str,
    as_user: AsUser = None,
    comment: Comment = "",
    as_json: AsJson = False,
    wait: WaitForWorker = False,
    request: RequestId = None,
    key: SignKey = None,
) -> None:
    """Reject the pending request of a run (nothing is written)."""
    _decide(run_id, False, as_user, comment, as_json, wait, request, key)


@app.command()
def show(run_id: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show a run's state and, in full, the request waiting for a decision (the code and its analysis, or the
    write with its current value, limits and verification): what an approver must read before deciding."""
    from starters.client import TernClient

    _check_run_id(run_id)
    s = load_settings()

    async def go() -> AgentRunStatus:
        return await (await TernClient.connect(s)).waiting(run_id)

    st = run_async(go())
    if as_json:
        print_json(with_run_id(st.model_dump(mode="json")))
        return
    from rich.panel import Panel
    from rich.syntax import Syntax

    out.print(
        f"run {st.workflow_id}: {st.state} (user {st.user}; step {st.current_step or '-'}, "
        f"{st.steps_done}/{st.steps_total} steps done)"
    )
    out.print(f"question: {st.query}", markup=False, highlight=False)
    p = st.pending
    if p is None:
        out.print("nothing is waiting for a decision")
        return
    out.print(f"\n[bold]waiting for a decision[/]: {p.summary}  (request {p.request_id})")
    out.print(
        f"requested by {p.requested_by}; approvers: {', '.join(p.approvers)}; "
        f"expires {p.expires_at:%Y-%m-%d %H:%M:%S} UTC"
    )
    if p.min_approvals > 1 or not p.allow_self_approval or p.policy_version:
        so_far = f", {len(p.approved_by)} so far ({', '.join(p.approved_by)})" if p.approved_by else ""
        out.print(
            f"needs {p.min_approvals} approval(s){so_far}"
            + ("" if p.allow_self_approval else f"; not by {p.requested_by}")
            + (f"; policy {p.policy_version} ({p.policy_rule})" if p.policy_version else "")
        )
    if p.reason:
        out.print(f"reason: {p.reason}", markup=False, highlight=False)
    if p.write is not None:
        w = p.write
        out.print(
            f"channel {w.channel}: now {w.current_value} {w.units} -> {w.value} {w.units}; "
            f"limits [{w.min_value}, {w.max_value}], max step {w.max_step}; "
            f"verification {w.verification.level}",
            markup=False,
            highlight=False,
        )
        if w.predicted_effect is not None:
            out.print(w.predicted_effect.summary(), markup=False, highlight=False)
    if p.plan is not None:
        from tern.approval.render import plan_lines

        out.print("plan:")
        for n, line in enumerate(plan_lines(p.plan), start=1):
            out.print(f"  {n}. {line}", markup=False, highlight=False)
    if p.entry is not None:
        e = p.entry
        out.print(
            f"logbook entry to {e.target}: {e.title!r} by {e.author}; tags: {', '.join(e.tags) or '-'}",
            markup=False,
            highlight=False,
        )
        for a in e.attachments:
            out.print(f"  attachment {a.artifact_id} {a.name} ({a.media_type}, {a.size_bytes} bytes)", markup=False)
    if p.code is not None:
        out.print(f"policy analysis: {p.code.analysis}", markup=False, highlight=False)
        if p.code.expected_keys:
            out.print(f"expected results: {', '.join(p.code.expected_keys)}")
        out.print(
            Panel(
                Syntax(p.code.code, "python", line_numbers=True, word_wrap=True),
                title=f"code (attempt {p.code.attempt})",
            )
        )
    if p.digest:
        from tern.identity.statement import request_digest, short_digest

        shown = request_digest(p)  # what a signed decision will name, computed from what is printed above
        mark = "" if shown == p.digest else "  [bold red]does not match the worker's digest: do not sign[/]"
        out.print(f"digest {short_digest(shown)} (identity: {p.identity}){mark}")
    sign = " --key PATH" if p.identity == "proven" else ""
    out.print(
        f"\ndecide with: tern approve {run_id} --request {p.request_id}{sign}   or   "
        f"tern reject {run_id} --request {p.request_id}{sign} --comment 'why'"
    )


@app.command()
def artifact(
    artifact_id: str,
    out_file: Annotated[Path, typer.Option("--out", help="File to write (e.g. figure.png).")],
) -> None:
    """Save an artifact (a figure a python step produced) from PostgreSQL to a file."""
    from starters.client import TernUnavailable
    from tern.db import DatabaseError, create_pool
    from tern.sandbox.artifacts import load_artifact

    s = load_settings()

    async def go() -> bytes | None:
        try:
            pool = await create_pool(s.reader_dsn)
        except DatabaseError as exc:
            raise TernUnavailable(str(exc)) from exc
        try:
            found = await load_artifact(pool, artifact_id)
            return found.content if found else None
        finally:
            await pool.close()

    data = run_async(go())
    if data is None:
        fail(f"no artifact with id {artifact_id!r}")
    out_file.write_bytes(data)
    err.print(f"wrote {out_file} ({len(data)} bytes)")


@app.command()
def result(run_id: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Wait for a run's result and print it."""
    from starters.client import TernClient

    _check_run_id(run_id)
    s = load_settings()

    async def go() -> AgentRunResult:
        return await (await TernClient.connect(s)).result(run_id)

    _print_result(run_async(go()), as_json)


def _print_result(res: AgentRunResult, as_json: bool, ui_url: str | None = None) -> NoReturn:
    """Print a run's result (JSON: the ``AgentRunResult``, plus ``ui_url`` when given) and exit 0 if it completed."""
    from starters.common import search_lines

    if as_json:
        print_json(with_run_id(res.model_dump(mode="json")) | ({"ui_url": ui_url} if ui_url else {}))
    else:
        colour = "green" if res.status == "completed" else "red"
        out.print(
            f"run {res.workflow_id}: [{colour}]{res.status}[/{colour}]" + (f" ({res.error})" if res.error else "")
        )
        for line in search_lines(res):
            out.print(line, markup=False, highlight=False)
        for w in res.writes:
            out.print(
                f"write {w.channel}: {w.previous_value} -> {w.value} readback {w.readback} "
                f"{'verified' if w.verified else 'NOT VERIFIED'}"
            )
        for a in res.approvals:
            out.print(f"approval {a.request_id}: {a.decision} by {a.approver or '-'} via {a.via}")
        for v in res.plan:
            cause = {"question": "for the question", "plan_rejected": "after rejection by", "step_failed": "after"}
            steps = ", ".join(f"{st.id} ({st.kind})" for st in v.plan.steps)
            out.print(f"plan v{v.version} {cause[v.cause]} {v.by}: {steps}", markup=False, highlight=False)
        if res.unsupported_citations:
            out.print(f"removed unsupported citations: {', '.join(res.unsupported_citations)}", markup=False)
        if ui_url:
            out.print(f"Web UI (this run and its steps): {ui_url}", markup=False, highlight=False)
        if res.answer:
            out.print()
            out.print(res.answer, markup=False, highlight=False)
    raise typer.Exit(0 if res.status == "completed" else 1)


@app.command()
def audit(run_id: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Print the audit trail (requests, decisions and writes) of a run and of its python steps (child runs
    RUN_ID.STEP, shown in the "run" column), oldest first, from PostgreSQL."""
    from rich.table import Table

    from starters.client import TernUnavailable
    from tern.approval.render import exact_number
    from tern.audit.store import events_for_run
    from tern.db import DatabaseError, create_pool

    _check_run_id(run_id)
    s = load_settings()

    async def go() -> list[dict[str, Any]]:
        try:
            pool = await create_pool(s.reader_dsn)
        except DatabaseError as exc:
            raise TernUnavailable(str(exc)) from exc
        try:
            async with pool.acquire() as conn:
                return await events_for_run(conn, run_id)
        finally:
            await pool.close()

    rows = run_async(go())
    if not rows:
        fail(f"no audit events for run {run_id!r}")
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"Audit trail of {run_id}")
    for col in ("time (UTC)", "run", "event", "actor", "decision", "channel", "value", "verified", "comment"):
        table.add_column(col)
    for r in rows:
        child = r["run_id"][len(run_id) :] or "-"  # ".<step>" for a child run, "-" for the run itself
        table.add_row(
            r["occurred_at"].strftime("%Y-%m-%d %H:%M:%S"),
            child,
            r["event_kind"],
            r["actor"] or "",
            r["decision"] or "",
            r["channel"] or "",
            "" if r["value"] is None else exact_number(r["value"]),
            "" if r["verified"] is None else str(r["verified"]),
            r["comment"][:60],
        )
    out.print(table)


@app.command("export-history")
def export_history(run_id: str, out_file: Annotated[Path, typer.Option("--out", help="JSON file to write.")]) -> None:
    """Save a run's event history as JSON (for replay tests and incident reviews)."""
    from starters.client import TernClient, TernUserError

    _check_run_id(run_id)
    s = load_settings()

    async def go() -> str:
        client = await TernClient.connect(s)
        handle = client.client.get_workflow_handle(run_id)
        try:
            history = await handle.fetch_history()
        except Exception as exc:
            raise TernUserError(f"cannot fetch the history of {run_id!r}: {exc}") from exc
        return history.to_json()

    text = run_async(go())
    out_file.write_text(text)
    err.print(f"wrote {out_file} ({len(text)} bytes)")


# --- MCP ------------------------------------------------------------------------------------------------------
@app.command()
def mcp(
    http: Annotated[
        int | None,
        typer.Option(
            "--http",
            metavar="PORT",
            help="Serve streamable HTTP at http://HOST:PORT/mcp instead of stdio.",
            min=1,
            max=65535,
        ),
    ] = None,
    host: Annotated[
        str,
        typer.Option(
            "--host",
            help="Address to bind with --http (default loopback only).",
        ),
    ] = "127.0.0.1",
    no_auth: Annotated[
        bool,
        typer.Option(
            "--no-auth",
            help="With --http on a loopback address: serve without the bearer token (TERN_MCP__TOKEN).",
        ),
    ] = False,
    user: Annotated[
        str | None,
        typer.Option("--user", help="Requesting user of the runs started through MCP (default: you)."),
    ] = None,
) -> None:
    """Serve Tern's tools to agent clients over the Model Context Protocol (stdio by default).

    Tools: ask, run_plan, propose_write (start runs; a write always waits for a human approver, whom no MCP
    client can replace), run_status, run_result, pending_approvals, search_logbook, find_channels,
    read_channels, archiver_read. Resources: tern://runs/{workflow_id}/audit and
    tern://runs/{workflow_id}/artifacts. Claude Code: `claude mcp add --transport stdio tern -- tern mcp`.
    Over --http, clients send `Authorization: Bearer $TERN_MCP__TOKEN` (setting mcp.token, 16+ characters).
    """
    import asyncio

    from pydantic import TypeAdapter, ValidationError

    from starters.mcp_server import serve
    from tern.config import current_user
    from tern.models.limits import UserName

    s = load_settings()
    try:  # as starters.client.check_user_name, without importing the Temporal client before serving
        who: str = TypeAdapter(UserName).validate_python(user if user is not None else current_user())
    except ValidationError as exc:
        fail(f"--user: {exc.errors()[0]['msg']}")
    loopback = host in ("127.0.0.1", "localhost", "::1")
    if http is None and (not loopback or no_auth):
        fail(f"{'--no-auth' if no_auth else '--host'} needs --http PORT")
    if http is not None and no_auth and not loopback:
        fail(f"--no-auth is allowed on a loopback address only, not --host {host}: set TERN_MCP__TOKEN instead")
    if http is not None and not no_auth and s.mcp.token is None:
        fail(
            "--http needs a bearer token for its clients: set TERN_MCP__TOKEN (setting mcp.token, at least 16 "
            "characters, e.g. `openssl rand -hex 24`), or pass --no-auth to serve loopback without one"
        )
    if http is not None:
        if not loopback:
            err.print(
                f"[yellow]serving MCP on {host} over plain HTTP: put TLS in front of it; "
                f"token holders start runs as {who}[/]"
            )
        shown = f"[{host}]" if ":" in host else host
        how = "no authentication" if no_auth else "bearer token required"
        err.print(
            f"serving MCP at http://{shown}:{http}/mcp (runs requested by {who}; {how}); Ctrl-C stops", markup=False
        )
    try:
        asyncio.run(serve(s, who, http_port=http, host=host, no_auth=no_auth))
    except KeyboardInterrupt:
        pass


# --- the main job ---------------------------------------------------------------------------------------------
@app.command()
def demo(
    auto_approve: Annotated[bool, typer.Option("--auto-approve", help=f"Approve as {DEMO_OPERATOR}.")] = False,
    ask: Annotated[
        bool, typer.Option("--ask", help="Plan the demo question with the configured LLM instead of the bundled plan.")
    ] = False,
    orbit: Annotated[
        bool,
        typer.Option("--orbit", help="The orbit demo: a corrector write approved with its predicted effect."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    approver: Annotated[
        list[str] | None,
        typer.Option(
            "--approver",
            help="Also let this approver decide (repeatable); `--approver operator` with `tern up --with matrix` "
            "makes the demo approvable from #control-room.",
        ),
    ] = None,
) -> None:
    """Start the stack if needed, ingest the demo logbook, and run the bundled demo plan (with --ask: the plan the
    configured LLM makes for the demo question; exits 2 when no LLM is configured)."""
    import asyncio

    from starters.client import TernUnavailable, TernUserError
    from starters.common import run_family_url
    from starters.demo import DemoError, run_demo
    from tern.config import current_user
    from tern.models import AgentRunResult

    s = load_settings()
    if ask and s.llm.provider == "none":
        from starters.client import NO_LLM

        fail(NO_LLM)
    try:
        outcome = asyncio.run(
            run_demo(
                s,
                auto_approve=auto_approve,
                ask=ask,
                progress=lambda m: err.print(f"[dim]{m}[/dim]"),
                extra_approvers=approver or (),
                orbit=orbit,
            )
        )
    except DemoError as exc:
        fail(str(exc), 1)
    except (TernUnavailable, TernUserError) as exc:
        fail(str(exc), 1)
    if isinstance(outcome, AgentRunResult):
        _print_result(outcome, as_json, run_family_url(s, outcome.workflow_id))
    run_id, who, asks = outcome
    as_self = "" if who == current_user() else f" --as {who}"
    write_cmd = f"tern approve {run_id} --as {DEMO_OPERATOR}"
    if as_json:
        print_json(
            {
                "workflow_id": run_id,
                "run_id": run_id,
                "status": "awaiting_approval",
                "approve_command": f"tern approve {run_id}{as_self}",
                "approve_write_command": write_cmd,
                "ui_url": s.run_url(run_id),
                "ui_runs_url": run_family_url(s, run_id),
            }
        )
        return
    out.print(f"run [bold]{run_id}[/] is waiting for your approval.")
    if asks > 1:
        out.print(
            "It asks twice: first for its analysis code (a sandboxed python step), then for the write the "
            "code proposes. You started the run, so the two-person rule lets you approve its code but not "
            f"its write: approve the write as {DEMO_OPERATOR}. `tern show` prints what waits in full."
        )
    out.print(f"  approve:  tern approve {run_id}{as_self}")
    out.print(f"  write:    {write_cmd}")
    out.print(f"  reject:   tern reject {run_id} --comment 'why'")
    out.print("  pending:  tern pending")
    out.print(f"  Web UI:   {s.run_url(run_id)}")
    out.print(f"  steps:    {run_family_url(s, run_id)}  (the run and its python steps)")
    out.print(f"  waiting:  {s.pending_url()}  (a run's User Metadata tab says how to decide)")


def main() -> None:
    """Console entry point: run the app and leave with ``os._exit`` after flushing (sdk-python issue 300).

    The app runs in click's standalone mode, so typer itself prints usage errors (unknown command or option,
    missing argument: usage line, error, exit 2) and turns ``typer.Exit``/``Abort`` into ``SystemExit``. This
    does not depend on where click lives (typer 0.29 vendors it as ``typer._click``; earlier versions import
    ``click``): ``tests/test_cli_bad_input.py`` checks it against the installed typer.
    """
    code: int
    try:
        app()
        code = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            err.print(str(exc.code), markup=False, highlight=False)
            code = 1
    except KeyboardInterrupt:
        err.print("aborted")
        code = 130
    hard_exit(code)


if __name__ == "__main__":
    main()
