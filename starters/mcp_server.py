"""``tern mcp``: Tern as a Model Context Protocol server, so that any agent client (Claude Code, IDE agents, chat
front ends) can search the logbook, read channels and start durable, approval-gated runs.

Built on the official ``mcp`` SDK's high-level server (``mcp.server.mcpserver.MCPServer``, SDK 2.x), over stdio
or streamable HTTP (``/mcp``). What the SDK would leave loose is made strict here:

- each tool's arguments are one model of :mod:`tern.models.mcp` (``extra="forbid"``): its JSON Schema is the
  tool's ``inputSchema`` and an unknown argument is refused with a tool error naming it (the SDK's own argument
  models ignore unknown keys);
- every failure reaches the client as a tool error (``isError``) with the reason: Tern's errors
  (:class:`~starters.client.TernUserError`, :class:`~starters.client.TernUnavailable`, bad queries, an archiver
  that does not answer) carry their message; anything else is the SDK's generic "Error executing tool X", its
  traceback logged on the server's stderr only.

There is no tool that approves or rejects: an MCP client can start a run, never decide one. A write is proposed
(``propose_write``) as a run whose only step is the write, checked up front against the limits database, the
master switch and the live value with the check the run itself does (:func:`tern.control.write.check_write`), so a write
the run would refuse is refused before any run starts or waits for an approver.

Over HTTP a client must send the bearer token of setting ``mcp.token`` (``Authorization: Bearer <token>``, checked
by the SDK's bearer middleware with :class:`StaticTokenVerifier`; a missing or wrong token is HTTP 401 before any
tool runs). ``tern mcp --http`` refuses to start without a token unless ``--no-auth`` is given on a loopback
address; there the Host and Origin headers must name a loopback address (421/403 otherwise, the SDK's
DNS-rebinding protection, :func:`transport_security`), so a web page cannot reach it by re-pointing a name.

Connections (Temporal, PostgreSQL, Channel Access) are opened at the first tool call that needs them, so the
server starts, and lists its tools, while a service is down; that tool call then fails with the reason. The
modules behind the tools (the Temporal client, activities, ARIEL, archiver) are imported by the first call that
uses them, so a client that spawns ``tern mcp`` gets its tool list without waiting for them.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar, cast

from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase, FuncMetadata
from mcp_types import ToolAnnotations
from pydantic import BaseModel

from starters.common import started_json, with_run_id
from tern.approval.render import exact_number
from tern.models import ControlWriteStep, Plan
from tern.models.mcp import (
    ArchiverReadArgs,
    AskArgs,
    FindChannelsArgs,
    PendingArgs,
    ProposeWriteArgs,
    ReadChannelsArgs,
    RunIdArgs,
    RunPlanArgs,
    SearchLogbookArgs,
)

if TYPE_CHECKING:
    import asyncpg
    from mcp.server.transport_security import TransportSecuritySettings

    from starters.client import TernClient
    from tern.channel_finder.finder import ChannelFinder
    from tern.config import TernSettings
    from tern.control.ca_client import ChannelAccessClient

A = TypeVar("A", bound=BaseModel)
SERVER_NAME = "tern"
INSTRUCTIONS = (
    "Tern runs operator-assistant agents for a particle accelerator as durable runs. Read-only tools answer at "
    "once (search_logbook, find_channels, read_channels, archiver_read). ask, run_plan and propose_write start a "
    "run and return its workflow_id at once; a run that writes to the machine waits for a human to approve it "
    "(tern approve, the Web UI or a chat bot): you cannot approve. Follow a run with run_status, "
    "pending_approvals and run_result; read its audit trail at tern://runs/{workflow_id}/audit."
)
WRITE_STEP_ID = "write"
"""Step id of the one step of a ``propose_write`` run."""

_READ_ONLY = ToolAnnotations(readOnlyHint=True, destructiveHint=False, idempotentHint=True, openWorldHint=False)
_STARTS_RUN = ToolAnnotations(readOnlyHint=False, destructiveHint=False, idempotentHint=False, openWorldHint=False)
_PROPOSES_WRITE = ToolAnnotations(readOnlyHint=False, destructiveHint=True, idempotentHint=False, openWorldHint=False)


def strict_tool(
    name: str, args: type[A], handler: Callable[[A], Awaitable[Any]], description: str, annotations: ToolAnnotations
) -> Tool:
    """An SDK ``Tool`` whose arguments are the model ``args``: its JSON Schema is the ``inputSchema`` (with
    ``additionalProperties: false``) and the SDK validates calls with it, so unknown arguments are refused by name.
    ``handler`` receives the validated ``args`` instance; what it returns (JSON-able) is sent as one JSON text."""
    arg_model = cast(
        type[ArgModelBase], type(f"{args.__name__}Arguments", (args, ArgModelBase), {"__doc__": args.__doc__})
    )

    async def call(**kwargs: Any) -> Any:
        result = await handler(cast(A, arg_model.model_validate(kwargs)))
        return json.dumps(result, indent=2, default=str)  # one text block (the SDK makes one per list item)

    return Tool(
        fn=call,
        name=name,
        description=description,
        parameters=arg_model.model_json_schema(by_alias=True),
        fn_metadata=FuncMetadata(arg_model=arg_model),
        is_async=True,
        annotations=annotations,
    )


T = TypeVar("T")


async def _tool_errors(work: Awaitable[T]) -> T:
    """Await ``work``; Tern's own errors become :class:`ToolError` with their message (the client's ``isError``)."""
    from starters.client import TernUnavailable, TernUserError
    from tern.ariel.query import QueryError
    from tern.control.limits import LimitsDatabaseError
    from tern.db import DatabaseError

    try:
        return await work
    except (TernUserError, TernUnavailable, QueryError, LimitsDatabaseError) as exc:
        raise ToolError(str(exc)) from exc
    except DatabaseError as exc:
        raise ToolError(f"PostgreSQL is not available: {exc}") from exc


class TernMcp:
    """The tools and resources of ``tern mcp`` over one set of settings.

    Args:
        settings: Tern's settings (Temporal address and task queue, database, Channel Access, archiver, approvals).
        user: the requesting user of the runs this server starts (the ``--user`` of ``tern mcp``); under the
            two-person rule this user cannot approve the writes the server proposes.
    """

    def __init__(self, settings: TernSettings, user: str) -> None:
        self.settings = settings
        self.user = user
        self._client: TernClient | None = None
        self._pool: asyncpg.Pool | None = None
        self._ca: ChannelAccessClient | None = None
        self._pva: Any = None
        self._finder: ChannelFinder | None = None
        self._client_lock = asyncio.Lock()
        self._pool_lock = asyncio.Lock()

    # --- connections, opened on first use ---------------------------------------------------------------------
    async def client(self) -> TernClient:
        """The Temporal client (``TernClient.connect``; raises ``TernUnavailable`` naming the address)."""
        from starters.client import TernClient

        async with self._client_lock:
            if self._client is None:
                self._client = await TernClient.connect(self.settings)
            return self._client

    async def pool(self) -> asyncpg.Pool:
        """The PostgreSQL pool (raises ``DatabaseError`` when the database cannot be reached)."""
        from tern.db import create_pool

        async with self._pool_lock:
            if self._pool is None:
                self._pool = await create_pool(self.settings.writer_dsn)
            return self._pool

    def ca(self) -> ChannelAccessClient:
        """The Channel Access client of this process (``settings.ca_environment()``)."""
        from tern.control.ca_client import ChannelAccessClient

        if self._ca is None:
            self._ca = ChannelAccessClient(self.settings.control.ca_max_concurrency, self.settings.ca_environment())
        return self._ca

    def channels(self) -> Any:
        """Reads and pre-checks of either protocol (``pva://NAME``; :class:`tern.control.routing.ChannelRouter`)."""
        from tern.control.limits import LimitsDatabase
        from tern.control.pva import PVAccessClient
        from tern.control.routing import ChannelRouter

        def pva() -> PVAccessClient:
            if self._pva is None:
                self._pva = PVAccessClient(self.settings.pva_config(), self.settings.control.ca_max_concurrency)
            return self._pva

        def limits() -> LimitsDatabase:
            return LimitsDatabase.load(
                self.settings.control.limits_path, allow_unlisted=self.settings.control.allow_unlisted_channels
            )

        return ChannelRouter(self.ca, pva, limits)

    async def close(self) -> None:
        """Close the pool and the Channel Access client (the Temporal client needs no closing)."""
        if self._pool is not None:
            await self._pool.close()
        if self._ca is not None:
            await asyncio.to_thread(self._ca.close)
        if self._pva is not None:
            await asyncio.to_thread(self._pva.close)

    # --- runs ----------------------------------------------------------------------------------------------
    async def ask(self, a: AskArgs) -> dict[str, Any]:
        """Start a run that plans ``a.question`` with the worker's LLM; returns at once (see ``started_json``)."""
        client = await self.client()
        req = client.question_request(
            a.question, user=self.user, approvers=a.approvers, context=a.context, plan_approval=a.plan_approval
        )
        return await self._start(req, a.request_key)

    async def _start(self, req: Any, key: str | None) -> dict[str, Any]:
        """Start ``req`` (signed as this server's service for its user): with a request ``key`` once per key
        (``TernClient.start_once``: Update-with-Start, the answer carries the run's first ``progress``)."""
        client = await self.client()
        signer = client.service_signer(self.user, "mcp")
        if key is None:
            return started_json(self.settings, (await client.start_run(req, signer=signer)).id)
        run_id, first = await client.start_once(req, f"mcp:{self.user}:{key}", signer)
        progress = first.model_dump(mode="json") if first is not None else None
        return started_json(self.settings, run_id) | {"progress": progress}

    async def run_plan(self, a: RunPlanArgs) -> dict[str, Any]:
        """Start a run of ``a.plan`` (channels checked against the limits database first); returns at once."""
        from starters.plan_file import check_plan_channels

        check_plan_channels(a.plan, self.settings)
        return await self._start(self._request(a.query, a.plan, a.approvers), a.request_key)

    def _request(self, query: str, plan: Plan, approvers: list[str]) -> Any:
        from starters.client import run_request

        s = self.settings
        return run_request(
            user=self.user,
            query=query,
            plan=plan,
            approvers=approvers,
            approval_timeout_s=s.approval.timeout_s,
            python_approval_mode=s.approval.python_mode,
        )

    async def propose_write(self, a: ProposeWriteArgs) -> dict[str, Any]:
        """Check the write as the run will (master switch, limits database, live value, verifiability; then the
        approval policy: somebody other than a requester barred by the two-person rule must be able to approve)
        and, when allowed, start a run whose only step is the write; returns at once with the ids and the check.
        A refused write raises ``TernUserError`` naming the violation, and nothing is started."""
        from activities.approval import policy_source
        from starters.client import TernUnavailable, TernUserError
        from starters.plan_file import check_plan_channels
        from tern.approval.policy import ApprovalPolicyError
        from tern.control.write import WriteError, check_write
        from tern.models.activity_io import WriteCheckInput

        step = ControlWriteStep(id=WRITE_STEP_ID, channel=a.channel, value=a.value, reason=a.reason)
        plan = Plan(steps=[step])
        check_plan_channels(plan, self.settings)
        try:
            check = await check_write(
                self.channels(),
                self.settings.control,
                WriteCheckInput(workflow_id="(proposed)", step_id=WRITE_STEP_ID, channel=a.channel, value=a.value),
            )
        except WriteError as exc:  # the channel does not answer
            raise TernUserError(f"write to {a.channel} refused before any approval: {exc}") from exc
        if not check.allowed:
            raise TernUserError(
                f"write of {exact_number(a.value)} to {a.channel} refused before any approval "
                f"({check.violation}): {check.message}"
            )
        try:
            policy, version = policy_source(self.settings).current()
        except ApprovalPolicyError as exc:
            raise TernUnavailable(f"the approval policy does not load, so no write can be approved: {exc}") from exc
        who = policy.resolve(
            "control_write", requester=self.user, requested=list(a.approvers), channel=a.channel, version=version
        )
        if who.refusal:
            raise TernUserError(f"write to {a.channel} refused before any approval: {who.refusal}")
        query = f"Write {exact_number(a.value)} to {a.channel}: {a.reason}"[:4000]
        started = await self._start(self._request(query, plan, a.approvers), a.request_key)
        return started | {"check": check.model_dump(mode="json")}

    async def run_status(self, a: RunIdArgs) -> dict[str, Any]:
        """The run's live status (``tern show --json``: state, steps, the request waiting for a decision)."""
        st = await (await self.client()).waiting(a.workflow_id)
        return with_run_id(st.model_dump(mode="json")) | {"ui_url": self.settings.run_url(st.workflow_id)}

    async def run_result(self, a: RunIdArgs) -> dict[str, Any]:
        """``finished: true`` with the result (``tern result --json``) once the run closed, else ``finished: false``
        with its live status; never waits for the run."""
        client = await self.client()
        if not await client.is_closed(a.workflow_id):
            return {"finished": False, "status": await self.run_status(a)}
        res = await client.result(a.workflow_id)
        return {"finished": True} | with_run_id(res.model_dump(mode="json"))

    async def pending_approvals(self, a: PendingArgs) -> list[dict[str, Any]]:
        """Runs waiting for a human decision (``tern pending --json``: one visibility query), or only the run
        ``a.workflow_id`` and its python steps; a magnet write's predicted effect on the ring also as one text
        block (``predicted_effect_text``), and a plan's several magnet writes as the whole (``plan_effect_text``)."""
        runs = await (await self.client()).pending(a.workflow_id)
        out = []
        for r in runs:
            d = with_run_id(r.model_dump(mode="json"))
            effect = r.pending.write.predicted_effect if r.pending and r.pending.write else None
            if effect is not None:  # the predicted effect on the ring in one short block (issue 23)
                d["predicted_effect_text"] = effect.summary()
            plan = r.pending.write.plan_effect if r.pending and r.pending.write else None
            plan = plan or (r.pending.plan_effect if r.pending else None)
            if plan is not None:  # several magnet writes: the plan as the whole
                d["plan_effect_text"] = plan.summary()
            out.append(d)
        return out

    # --- data ------------------------------------------------------------------------------------------------
    async def search_logbook(self, a: SearchLogbookArgs) -> dict[str, Any]:
        """ARIEL search in this process (the ``logbook_search`` step's call), answered as ``tern ariel search
        --json``."""
        from starters.ariel_cli import search_json
        from tern.ariel.query import SearchFilters
        from tern.ariel.service import search as ariel_search

        filters = SearchFilters(author=a.author, tags=a.tags, since=a.since, until=a.until)
        resp = await ariel_search(
            await self.pool(), self.settings, a.query, mode=a.mode, limit=a.limit, filters=filters
        )
        return search_json(resp)

    async def find_channels(self, a: FindChannelsArgs) -> dict[str, Any]:
        """The channel finder (``tern channels find --json``)."""
        from starters.client import TernUnavailable, TernUserError
        from tern.channel_finder.finder import ChannelFinder
        from tern.control.limits import LimitsDatabaseError

        pool = await self.pool()
        if self._finder is None:
            self._finder = ChannelFinder(self.settings, pool)
        try:
            resp = await self._finder.find(a.query, a.mode, a.limit)
        except LimitsDatabaseError as exc:
            raise TernUnavailable(f"the bundled channel database cannot be built: {exc}") from exc
        except ValueError as exc:
            raise TernUserError(str(exc)) from exc
        return resp.model_dump(mode="json")

    async def read_channels(self, a: ReadChannelsArgs) -> list[dict[str, Any]]:
        """Live Channel Access reads through the client the ``channel_read`` step uses; a channel that does not
        answer comes back with ``error`` set."""
        readings = await self.channels().read_channels(list(a.channels), self.settings.control.ca_timeout_s)
        return [r.model_dump(mode="json") for r in readings]

    async def archiver_read(self, a: ArchiverReadArgs) -> dict[str, Any]:
        """Archived history of ``a.channels``: the resolved range, the binning and one summary per channel (count,
        first/last time, min/max/mean/last value, worst severity), as ``tern archiver get`` prints it."""
        from starters.client import TernUnavailable, TernUserError
        from tern.archiver.binning import BinningError
        from tern.archiver.client import ArchiverClient, ArchiverUnavailable
        from tern.archiver.read import choose_binning
        from tern.archiver.series import Series
        from tern.models.archiver import SeriesSummary
        from tern.models.timerange import TimeRangeError, resolve, zone

        s = self.settings.archiver
        try:
            start, end = resolve(
                range_text=a.range,
                start=a.start,
                end=a.end,
                now=datetime.now(UTC),
                tz=zone(s.facility_timezone),
                max_span=timedelta(hours=s.max_span_h),
            )
            binning = choose_binning(a.binning, (end - start).total_seconds(), s.target_points)
        except (TimeRangeError, BinningError) as exc:
            raise TernUserError(str(exc)) from exc
        async with ArchiverClient(s.base_url, timeout_s=s.timeout_s, attempts=s.attempts) as archiver:
            found = await archiver.get_each(list(a.channels), start, end, binning)
        down = [r for r in found.values() if isinstance(r, ArchiverUnavailable)]
        if down:
            raise TernUnavailable(
                f"no archiver answers at {s.base_url} (set TERN_ARCHIVER__URL to an Archiver Appliance, or start the "
                f"embedded one with `tern up`): {down[0]}"
            )
        return {
            "start": start.isoformat(),
            "end": end.isoformat(),
            "binning": binning.label if binning else "raw",
            "series": [
                (r.summary() if isinstance(r, Series) else SeriesSummary(channel=ch, count=0, error=str(r))).model_dump(
                    mode="json"
                )
                for ch, r in found.items()
            ],
        }

    # --- resources -------------------------------------------------------------------------------------------
    async def _resource_pool(self) -> asyncpg.Pool:
        from tern.db import DatabaseError

        try:
            return await self.pool()
        except DatabaseError as exc:
            raise ResourceError(f"PostgreSQL is not available: {exc}") from exc

    async def audit(self, workflow_id: str) -> str:
        """The audit trail of a run and its python steps (``tern audit --json``), oldest first, as JSON text."""
        from tern.audit.store import events_for_run

        async with (await self._resource_pool()).acquire() as conn:
            rows = await events_for_run(conn, workflow_id)
        if not rows:
            raise ResourceError(f"no audit events for run {workflow_id!r}")
        return json.dumps(rows, indent=2, default=str)

    async def artifacts(self, workflow_id: str) -> str:
        """The artifacts of a run (figures, archived series) without content, each with the URI of its content."""
        from tern.sandbox.artifacts import list_artifacts

        rows = await list_artifacts(await self._resource_pool(), workflow_id)
        for r in rows:
            r["uri"] = f"tern://runs/{workflow_id}/artifacts/{r['id']}"
        return json.dumps(rows, indent=2, default=str)

    async def artifact(self, workflow_id: str, artifact_id: str) -> bytes:
        """One artifact's content (bytes; its media type is in the run's artifacts list)."""
        from tern.sandbox.artifacts import load_artifact

        found = await load_artifact(await self._resource_pool(), artifact_id)
        if found is None or not (found.workflow_id == workflow_id or found.workflow_id.startswith(workflow_id + ".")):
            raise ResourceError(f"run {workflow_id!r} has no artifact {artifact_id!r}")
        return found.content


def _guarded(fn: Callable[[A], Awaitable[Any]]) -> Callable[[A], Awaitable[Any]]:
    async def call(a: A) -> Any:
        return await _tool_errors(fn(a))

    return call


class StaticTokenVerifier:
    """The SDK's ``TokenVerifier`` for one shared secret (setting ``mcp.token``): a bearer token equal to it
    (constant-time comparison, :func:`hmac.compare_digest`) is accepted as the server's user; any other is refused
    (the SDK answers HTTP 401 with ``WWW-Authenticate: Bearer``)."""

    def __init__(self, token: str, user: str) -> None:
        self._token = token.encode()
        self._user = user

    async def verify_token(self, token: str) -> AccessToken | None:
        """The access of ``token``: client id = the server's user, no scopes; None when it is not the token."""
        if hmac.compare_digest(token.encode(), self._token):
            return AccessToken(token=token, client_id=self._user, scopes=[])
        return None


def build_server(settings: TernSettings, user: str, *, auth_url: str | None = None) -> tuple[MCPServer[Any], TernMcp]:
    """The MCP server of ``tern mcp`` and the :class:`TernMcp` behind it (close it when the server stops).

    With ``auth_url`` (the server's own ``http://host:port``, used as the issuer in the SDK's auth settings) and
    setting ``mcp.token`` set, HTTP requests need that bearer token. Raises ``ValueError`` for ``auth_url``
    without ``mcp.token``."""
    t = TernMcp(settings, user)
    tools = [
        strict_tool(
            "ask",
            AskArgs,
            _guarded(t.ask),
            "Start an agent run that plans the question with Tern's LLM and answers it citing its sources (writes "
            "it plans wait for a human approver). Returns at once: workflow_id, run_id and ui_url (Web UI link).",
            _STARTS_RUN,
        ),
        strict_tool(
            "run_plan",
            RunPlanArgs,
            _guarded(t.run_plan),
            "Start an agent run with an explicit plan (steps: logbook_search, channel_find, channel_read, "
            "archiver_read, gather, memory, control_write, python, respond; the plan format of `tern run --plan`). "
            "Returns at once with workflow_id and ui_url.",
            _STARTS_RUN,
        ),
        strict_tool(
            "propose_write",
            ProposeWriteArgs,
            _guarded(t.propose_write),
            "Propose writing a value to a setpoint. Checked at once against the limits database and the live value "
            "(a read-only or unknown channel, or a value outside limits, is refused here and nothing starts); "
            "otherwise starts a run whose only step is the write: a human approves or rejects it (never this "
            "client), then it is written and verified by readback. Returns at once with workflow_id, ui_url and "
            "the check (current value, limits, verification).",
            _PROPOSES_WRITE,
        ),
        strict_tool(
            "run_status",
            RunIdArgs,
            _guarded(t.run_status),
            "A run's live state: steps done, the request waiting for a human decision (pending), approvals so far.",
            _READ_ONLY,
        ),
        strict_tool(
            "run_result",
            RunIdArgs,
            _guarded(t.run_result),
            "A run's result once it finished (finished: true; status, answer, steps, writes with readback "
            "verification, approvals); while it runs, finished: false and its live status. Never waits.",
            _READ_ONLY,
        ),
        strict_tool(
            "pending_approvals",
            PendingArgs,
            _guarded(t.pending_approvals),
            "Runs waiting for a human approval decision (all, or the run named): what is asked, who may decide, "
            "when it expires.",
            _READ_ONLY,
        ),
        strict_tool(
            "search_logbook",
            SearchLogbookArgs,
            _guarded(t.search_logbook),
            "Search the electronic logbook (ARIEL): keyword, semantic, hybrid, or rag (an answer citing entries). "
            "Hits with entry_id, title, time, author, highlights.",
            _READ_ONLY,
        ),
        strict_tool(
            "find_channels",
            FindChannelsArgs,
            _guarded(t.find_channels),
            "Find control-system channels (PVs) by description, name or alias, best first, with scores, units "
            "and whether they are writable.",
            _READ_ONLY,
        ),
        strict_tool(
            "read_channels",
            ReadChannelsArgs,
            _guarded(t.read_channels),
            "Read channels live over Channel Access: value, units, alarm status and severity, timestamp.",
            _READ_ONLY,
        ),
        strict_tool(
            "archiver_read",
            ArchiverReadArgs,
            _guarded(t.archiver_read),
            "Archived history of channels over a time range (EPICS Archiver Appliance): per channel count, "
            "first/last time, min/max/mean/last value, worst alarm severity.",
            _READ_ONLY,
        ),
    ]
    auth: dict[str, Any] = {}
    if auth_url is not None:
        if settings.mcp.token is None:
            raise ValueError("an authenticated MCP server needs setting mcp.token (TERN_MCP__TOKEN)")
        auth = {
            "auth": AuthSettings(issuer_url=auth_url, resource_server_url=None),
            "token_verifier": StaticTokenVerifier(settings.mcp.token.get_secret_value(), user),
        }
    server: MCPServer[Any] = MCPServer(SERVER_NAME, instructions=INSTRUCTIONS, tools=tools, log_level="WARNING", **auth)
    server.resource(
        "tern://runs/{workflow_id}/audit",
        name="run-audit",
        description="A run's audit trail (requests, decisions, writes; its python steps too), oldest first.",
        mime_type="application/json",
    )(t.audit)
    server.resource(
        "tern://runs/{workflow_id}/artifacts",
        name="run-artifacts",
        description="A run's artifacts (figures, archived series): id, step, name, media type, size, content URI.",
        mime_type="application/json",
    )(t.artifacts)
    server.resource(
        "tern://runs/{workflow_id}/artifacts/{artifact_id}",
        name="run-artifact",
        description="One artifact's content (media type in the run's artifacts list).",
        mime_type="application/octet-stream",
    )(t.artifact)
    return server, t


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
"""Bind addresses ``tern mcp --http --no-auth`` accepts, and the names its Host check allows."""


def transport_security(host: str, *, no_auth: bool) -> TransportSecuritySettings | None:
    """The SDK's DNS-rebinding protection (:class:`mcp.server.transport_security.TransportSecuritySettings`) for a
    server bound to ``host``: on a loopback address, a request whose ``Host`` is not ``127.0.0.1``, ``localhost``
    or ``[::1]`` (with a port) answers 421 and one whose ``Origin``, when sent, is not ``http://`` one of those
    answers 403, before any MCP message is read. A web page on another origin whose name an attacker re-points to
    127.0.0.1 (DNS rebinding) so cannot reach the unauthenticated ``--no-auth`` server through a browser. The SDK
    turns this on by itself for these three bind names today; it is set here explicitly so ``--no-auth`` does not
    depend on that default. Raises ``ValueError`` for ``no_auth`` on a non-loopback ``host``. Other hosts (with
    the bearer token required) get None: the SDK's default, no Host check (the token is what a page cannot
    send)."""
    if host not in LOOPBACK_HOSTS:
        if no_auth:
            raise ValueError(f"serving without authentication is allowed on a loopback address only, not {host!r}")
        return None
    from mcp.server.transport_security import TransportSecuritySettings

    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
        allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
    )


async def serve(
    settings: TernSettings, user: str, *, http_port: int | None = None, host: str = "127.0.0.1", no_auth: bool = False
) -> None:
    """Serve over stdio until the client closes it, or with ``http_port`` over streamable HTTP at
    ``http://<host>:<http_port>/mcp`` until interrupted: with the bearer token of ``mcp.token`` required, or
    without authentication when ``no_auth`` (the CLI allows that on loopback only). Raises ``ValueError`` for HTTP
    without a token and without ``no_auth``."""
    auth_url = None
    if http_port is not None and not no_auth:
        auth_url = f"http://{f'[{host}]' if ':' in host else host}:{http_port}"
    server, t = build_server(settings, user, auth_url=auth_url)
    try:
        if http_port is None:
            await server.run_stdio_async()
        else:
            await server.run_streamable_http_async(
                host=host, port=http_port, transport_security=transport_security(host, no_auth=no_auth)
            )
    finally:
        await t.close()
