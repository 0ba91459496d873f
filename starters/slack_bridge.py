"""The Slack side of the chat approval bridge (slack-bolt in HTTP mode or Socket Mode, slack_sdk's async Web API
client).

A card is a ``chat.postMessage`` with Block Kit blocks: the request as ``mrkdwn`` sections and an ``actions`` block
with Approve (``tern_approve``) and Reject (``tern_reject``) buttons whose ``value`` is the request id. Approve
decides at once; Reject opens a modal (``views.open``, callback ``tern_reject_reason``) asking for the reason, whose
submission decides. The slash command ``/tern freeze <reason>`` / ``/tern thaw <reason>`` changes the facility write
freeze as the presser's mapped user (answered in the channel). The card is edited with ``chat.update`` (the buttons
removed) when the request ends; answers to a person go in the card's thread. Every request from Slack is verified by
bolt with the signing secret (``X-Slack-Signature``, ``v0:timestamp:body``, 5-minute window: Slack's "Verifying
requests from Slack"); a request that fails is answered 401 and never reaches a handler. ``slack_api_url`` points
the Web API client at a stand-in (slack_sdk ``base_url``), e.g. in tests. Platform message ids are the card's
``ts``; an attempt's id (the audit key) is ``<card ts>/<action ts or view id>``.

Socket Mode (selected by an app-level token ``xapp-...``, setting ``chat.slack_app_token``) runs the same bolt app
and handlers behind bolt's ``AsyncSocketModeHandler`` (slack_sdk's aiohttp client): the bridge opens a WebSocket to
the URL that ``apps.connections.open`` returns (called with the app token), Slack sends each interaction as an
envelope ``{"type": "interactive", "envelope_id": ..., "payload": {...}}`` and the bridge acks it with
``{"envelope_id": ...}`` (Slack's "Using Socket Mode"). No HTTP endpoint is served and nothing is signed: the
connection is authenticated by the app token over TLS, so the signing secret is not needed in this mode.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from slack_bolt.adapter.fastapi.async_handler import AsyncSlackRequestHandler
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from tern.chat.bridge import ApprovalBridge
from tern.chat.commands import Command, CommandError, parse_command
from tern.config import TernSettings

MAX_SECTION_CHARS = 2900  # Block Kit: a section's text is at most 3000 characters


def mrkdwn(markdown: str) -> str:
    """The card's Markdown in Slack's ``mrkdwn``: ``**bold**`` -> ``*bold*``, ``## Heading`` -> ``*Heading*``."""
    lines = [f"*{ln.lstrip('#').strip()}*" if ln.startswith("#") else ln for ln in markdown.splitlines()]
    return "\n".join(lines).replace("**", "*")


def _blocks(markdown: str, *, buttons: bool, request_id: str = "") -> list[dict[str, Any]]:
    markdown = mrkdwn(markdown)
    chunks = [markdown[i : i + MAX_SECTION_CHARS] for i in range(0, len(markdown), MAX_SECTION_CHARS)][:40]
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": c}} for c in chunks]
    if buttons:
        blocks.append(
            {
                "type": "actions",
                "block_id": "tern_decision",
                "elements": [
                    {
                        "type": "button",
                        "action_id": "tern_approve",
                        "style": "primary",
                        "text": {"type": "plain_text", "text": "Approve"},
                        "value": request_id,
                    },
                    {
                        "type": "button",
                        "action_id": "tern_reject",
                        "style": "danger",
                        "text": {"type": "plain_text", "text": "Reject"},
                        "value": request_id,
                    },
                ],
            }
        )
    return blocks


def _request_id(markdown: str) -> str:
    marker = "Request id `"
    start = markdown.find(marker)
    return markdown[start + len(marker) : markdown.find("`", start + len(marker))] if start >= 0 else ""


class SlackPlatform:
    """:class:`tern.chat.bridge.ChatPlatform` on one Slack channel.

    Args:
        client: the Web API client (bot token; ``base_url`` for a stand-in).
        channel: the channel id cards are posted in.
    """

    name = "slack"

    def __init__(self, client: AsyncWebClient, channel: str) -> None:
        self.client = client
        self.channel = channel

    async def post_card(self, markdown: str) -> tuple[str, str]:
        """``chat.postMessage`` with the card's blocks and buttons; returns ``(channel, ts)``."""
        resp = await self.client.chat_postMessage(
            channel=self.channel,
            text=markdown[:3000],
            blocks=_blocks(markdown, buttons=True, request_id=_request_id(markdown)),
        )
        return str(resp["channel"]), str(resp["ts"])

    async def edit_card(self, room_id: str, message_id: str, markdown: str) -> None:
        """``chat.update``: the new text, buttons removed once the card shows an outcome."""
        ended = "How to decide" not in markdown
        await self.client.chat_update(
            channel=room_id,
            ts=message_id,
            text=markdown[:3000],
            blocks=_blocks(markdown, buttons=not ended, request_id=_request_id(markdown)),
        )

    async def reply(self, room_id: str, message_id: str, markdown: str) -> None:
        """Answer in the card's thread (``message_id`` is ``<card ts>/<attempt>``)."""
        await self.client.chat_postMessage(channel=room_id, thread_ts=message_id.split("/")[0], text=markdown)

    async def thread(self, room_id: str, root_id: str, markdown: str) -> str:
        """Post in the thread of ``root_id``; returns the message's ``ts``."""
        resp = await self.client.chat_postMessage(
            channel=room_id, thread_ts=root_id.split("/")[0], text=mrkdwn(markdown)
        )
        return str(resp["ts"])

    async def attach_image(self, room_id: str, message_id: str, name: str, png: bytes, caption: str) -> None:
        """``files_upload_v2`` (files.getUploadURLExternal, the upload, files.completeUploadExternal) into the
        card's thread, ``caption`` as its first comment."""
        await self.client.files_upload_v2(
            channel=room_id,
            thread_ts=message_id.split("/")[0],
            file=png,
            filename=name,
            title=name,
            initial_comment=caption,
        )


def bolt_app(bridge: ApprovalBridge, client: AsyncWebClient, *, signing_secret: str | None) -> AsyncApp:
    """The bolt app with the bridge's handlers (Approve and Reject buttons, the reject-reason modal, the ``/tern``
    slash command for ``freeze`` and ``thaw``).

    Args:
        bridge: the bridge that takes the decisions.
        client: the Web API client (bot token; ``base_url`` for a stand-in).
        signing_secret: the app's signing secret (HTTP mode: bolt verifies every request with it); ``None`` for
            Socket Mode, where bolt's request verification is off (envelopes arrive unsigned on the WebSocket).

    Raises ``ValueError`` for an empty signing secret (anyone could sign with it).
    """
    if signing_secret == "":
        raise ValueError("an empty Slack signing secret would accept forged requests")
    bolt = AsyncApp(
        client=client,
        signing_secret=signing_secret or "",
        request_verification_enabled=signing_secret is not None,
    )

    @bolt.action("tern_approve")
    async def approve(ack: Any, body: dict[str, Any]) -> None:
        await ack()
        msg = body["message"]["ts"]
        await bridge.on_command(
            body["user"]["id"],
            body["channel"]["id"],
            f"{msg}/{body['actions'][0]['action_ts']}",
            msg,
            Command("approve", ""),
        )

    @bolt.action("tern_reject")
    async def reject(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        meta = f"{body['channel']['id']}|{body['message']['ts']}"
        await client.views_open(
            trigger_id=body["trigger_id"],
            view={
                "type": "modal",
                "callback_id": "tern_reject_reason",
                "private_metadata": meta,
                "title": {"type": "plain_text", "text": "Reject request"},
                "submit": {"type": "plain_text", "text": "Reject"},
                "blocks": [
                    {
                        "type": "input",
                        "block_id": "reason",
                        "label": {"type": "plain_text", "text": "Why? (recorded in the audit)"},
                        "element": {"type": "plain_text_input", "action_id": "text", "multiline": True},
                    }
                ],
            },
        )

    @bolt.view("tern_reject_reason")
    async def reject_reason(ack: Any, body: dict[str, Any], view: dict[str, Any]) -> None:
        reason = (view["state"]["values"]["reason"]["text"].get("value") or "").strip()
        if not reason:
            await ack(response_action="errors", errors={"reason": "a rejection needs a reason"})
            return
        await ack()
        channel, msg = view["private_metadata"].split("|", 1)
        await bridge.on_command(body["user"]["id"], channel, f"{msg}/{view['id']}", msg, Command("reject", reason))

    @bolt.command("/tern")
    async def tern_command(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        """``/tern freeze <reason>`` / ``/tern thaw <reason>``: the facility write freeze, answered in the channel
        (everyone there should see that writes are frozen or thawed)."""
        await ack()
        try:
            command = parse_command(body.get("text") or "")
        except CommandError as exc:
            command, answer = None, f"not taken: {exc}"
        if command is not None:
            if command.verb in ("freeze", "thaw"):
                answer = await bridge.freeze_command(body["user_id"], command)
            else:
                answer = "not taken: `/tern` takes `freeze <reason>` or `thaw <reason>`; decide a request on its card"
        await client.chat_postMessage(channel=body["channel_id"], text=mrkdwn(f"<@{body['user_id']}>: {answer}"))

    return bolt


def slack_app(settings: TernSettings, bridge: ApprovalBridge, client: AsyncWebClient) -> FastAPI:
    """HTTP mode: the bolt app (:func:`bolt_app`) behind FastAPI's ``POST /slack/events``.

    Raises ``ValueError`` when ``chat.slack_signing_secret`` is missing or empty."""
    if not settings.chat.slack_signing_secret:
        raise ValueError("the Slack bridge in HTTP mode needs TERN_CHAT__SLACK_SIGNING_SECRET")
    bolt = bolt_app(bridge, client, signing_secret=settings.chat.slack_signing_secret.get_secret_value())
    handler = AsyncSlackRequestHandler(bolt)
    api = FastAPI(title="Tern Slack bridge")

    @api.post("/slack/events")
    async def events(req: Request) -> Response:
        return await handler.handle(req)

    return api


def socket_mode_handler(
    settings: TernSettings, bridge: ApprovalBridge, client: AsyncWebClient
) -> AsyncSocketModeHandler:
    """Socket Mode: the bolt app (:func:`bolt_app`) behind bolt's ``AsyncSocketModeHandler``.

    The handler's ``connect_async()`` asks ``apps.connections.open`` (with the app token, through ``client``, so
    ``chat.slack_api_url`` applies) for the WebSocket URL and connects; bolt acks every envelope. Raises
    ``ValueError`` when ``chat.slack_app_token`` is missing or is not an app-level token (``xapp-``)."""
    token = settings.chat.slack_app_token.get_secret_value() if settings.chat.slack_app_token else ""
    if not token.startswith("xapp-"):
        raise ValueError("Slack Socket Mode needs an app-level token (xapp-...) in TERN_CHAT__SLACK_APP_TOKEN")
    return AsyncSocketModeHandler(bolt_app(bridge, client, signing_secret=None), app_token=token, web_client=client)
