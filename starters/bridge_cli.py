"""`tern bridge matrix`: the chat approval bridge process (one per platform; several instances may run).

It logs in as the bot of the Matrix credentials file (``TERN_CHAT__MATRIX_CREDENTIALS_PATH``, default
``TERN_DATA_DIR/matrix/credentials.json`` written by ``tern up --with matrix``), maps people through the
identity map (``TERN_CHAT__IDENTITY_MAP_PATH``; the embedded operator account ``@operator:localhost`` is mapped
to approver ``operator``), and sends decisions through :meth:`starters.client.TernClient.decide` with the
card's request id, so a stale card is refused and the workflow's validator decides as for the CLI.
Mounted in the main CLI with ``app.add_typer(bridge_app, name="bridge")``; heavy imports inside the command.
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from starters.common import fail, hard_exit, load_settings

if TYPE_CHECKING:
    import asyncio

    from tern.config import TernSettings

app = typer.Typer(help="Chat approval bridges: post approval cards and take decisions from chat.", no_args_is_help=True)


def credentials_path(settings: TernSettings) -> Path:
    """Where the Matrix credentials file is for ``settings``."""
    from tern.embedded.matrix import matrix_dir

    return settings.chat.matrix_credentials_path or matrix_dir(settings.data_dir) / "credentials.json"


async def run_matrix_bridge(settings: TernSettings, stop: asyncio.Event, *, owner: str | None = None) -> None:
    """Run the Matrix bridge for ``settings`` until ``stop`` is set. Raises ``MatrixError`` (credentials,
    login), ``TernUnavailable`` (Temporal) or ``DatabaseError`` (PostgreSQL) when it cannot start."""
    import asyncio

    from starters.chat_client import (
        client_decider,
        freeze_changer,
        pending_requests,
        plan_starter,
        question_starter,
        run_progress,
    )
    from starters.client import TernClient
    from starters.matrix_bridge import MatrixPlatform
    from tern.chat.bridge import ApprovalBridge
    from tern.chat.identity import IdentityMap
    from tern.db import create_pool
    from tern.embedded.matrix import read_credentials

    creds = read_credentials(credentials_path(settings))
    client = await TernClient.connect(settings)
    pool = await create_pool(settings.writer_dsn, max_size=5)
    identities = IdentityMap(settings.chat.identity_map_path, {"matrix": {creds.operator.user_id: "operator"}})

    decide = client_decider(client, surface="matrix")

    platform = MatrixPlatform(creds.homeserver, creds.bot.user_id, creds.bot.password, creds.room_id)
    await platform.login()
    bridge = ApprovalBridge(
        platform,
        pool,
        identities,
        decide,
        pending=pending_requests(client),
        poll_interval_s=settings.chat.poll_interval_s,
        owner=owner,
        start_run=plan_starter(client, "matrix"),
        progress=run_progress(client),
        ask=question_starter(client, "matrix") if settings.llm.provider != "none" else None,
        freeze=freeze_changer(client, surface="matrix"),
    )
    platform.bridge = bridge
    try:
        await asyncio.gather(bridge.run(stop), platform.listen(stop))
    finally:
        await platform.close()
        await pool.close()


@app.command()
def matrix(
    owner: Annotated[str | None, typer.Option("--owner", help="This instance's name in card claims.")] = None,
) -> None:
    """Post approval cards in the Matrix control room and take decisions from replies (runs until stopped)."""
    import asyncio

    settings = load_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("nio").setLevel(logging.WARNING)  # nio logs every room event at INFO

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_matrix_bridge(settings, stop, owner=owner)

    try:
        asyncio.run(main())
    except Exception as exc:
        fail(f"matrix bridge: {exc}", 1)
    hard_exit(0)


async def run_slack_bridge(settings: TernSettings, stop: asyncio.Event, *, owner: str | None = None) -> None:
    """Run the Slack bridge until ``stop``: Socket Mode when ``chat.slack_app_token`` is set (a WebSocket to the
    URL of ``apps.connections.open``), else HTTP mode on ``chat.slack_port``. Raises ``ValueError`` when the Slack
    settings are incomplete, ``slack_sdk.errors.SlackApiError`` when Slack refuses the app token (Socket Mode,
    checked before the first card), ``TernUnavailable``/``DatabaseError`` when Temporal or PostgreSQL cannot be
    reached."""
    import asyncio

    from slack_sdk.web.async_client import AsyncWebClient

    from starters.chat_client import client_decider, freeze_changer, pending_requests
    from starters.client import TernClient
    from starters.slack_bridge import SlackPlatform, slack_app, socket_mode_handler
    from tern.chat.bridge import ApprovalBridge
    from tern.chat.identity import IdentityMap
    from tern.db import create_pool

    chat = settings.chat
    socket_mode = chat.slack_app_token is not None
    if not (chat.slack_bot_token and chat.slack_channel and (socket_mode or chat.slack_signing_secret)):
        raise ValueError(
            "the Slack bridge needs TERN_CHAT__SLACK_BOT_TOKEN, TERN_CHAT__SLACK_CHANNEL and either "
            "TERN_CHAT__SLACK_APP_TOKEN "
            "(Socket Mode) or TERN_CHAT__SLACK_SIGNING_SECRET (HTTP mode)"
        )
    web = AsyncWebClient(
        token=chat.slack_bot_token.get_secret_value(), base_url=chat.slack_api_url or AsyncWebClient.BASE_URL
    )
    client = await TernClient.connect(settings)
    pool = await create_pool(settings.writer_dsn, max_size=5)
    bridge = ApprovalBridge(
        SlackPlatform(web, chat.slack_channel),
        pool,
        IdentityMap(chat.identity_map_path),
        client_decider(client, surface="slack"),
        pending=pending_requests(client),
        poll_interval_s=chat.poll_interval_s,
        owner=owner,
        freeze=freeze_changer(client, surface="slack"),
    )

    async def socket() -> None:
        handler = socket_mode_handler(settings, bridge, web)
        try:
            # Ask for the first WebSocket URL before taking any request: a refused app token fails the bridge at
            # start, where the client's own connect() would log and retry for ever.
            handler.client.wss_uri = await handler.client.issue_new_wss_url()
            connecting = asyncio.ensure_future(handler.connect_async())  # retries until connected or closed
            await asyncio.gather(bridge.run(stop), stop.wait())
        finally:
            await handler.close_async()
        if not connecting.done():
            connecting.cancel()

    async def serve() -> None:
        import uvicorn

        server = uvicorn.Server(
            uvicorn.Config(
                slack_app(settings, bridge, web), host="127.0.0.1", port=chat.slack_port, log_level="warning"
            )
        )
        task = asyncio.ensure_future(server.serve())
        await asyncio.gather(bridge.run(stop), stop.wait())
        server.should_exit = True
        await task

    try:
        await (socket() if socket_mode else serve())
    finally:
        await pool.close()


@app.command()
def slack(
    owner: Annotated[str | None, typer.Option("--owner", help="This instance's name in card claims.")] = None,
) -> None:
    """Post approval cards in a Slack channel with Approve/Reject buttons (runs until stopped). Socket Mode when
    TERN_CHAT__SLACK_APP_TOKEN (xapp-...) is set, else HTTP mode (POST /slack/events on TERN_CHAT__SLACK_PORT)."""
    import asyncio

    settings = load_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_slack_bridge(settings, stop, owner=owner)

    try:
        asyncio.run(main())
    except Exception as exc:
        fail(f"slack bridge: {exc}", 1)
    hard_exit(0)


@app.command()
def webhook(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8766,
) -> None:
    """Serve Tern's webhook API: signed webhook decisions (POST /approvals/{request_id}/decision), webhook triggers
    (POST /triggers/{name}) and GET /health, nothing else.

    The app is ``starters.approvals_api.create_app``; it serves no ARIEL route (logbook entries, RAG search and its
    LLM spend stay on ``tern ariel serve``, which is not meant to face bots). The default port, 8766 (as in
    infra/compose and infra/k8s), leaves ``tern ariel serve``'s 8765 free on the same host."""
    import uvicorn

    from starters.approvals_api import create_app

    uvicorn.run(create_app(load_settings()), host=host, port=port)
