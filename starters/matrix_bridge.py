"""The Matrix side of the chat approval bridge (matrix-nio, asyncio).

Why matrix-nio rather than mautrix: the bridge is an ordinary bot account (no appservice registration on the
homeserver), and nio is a plain asyncio client with typed events for messages and reactions; mautrix is built
around appservice bridges and brings their framework with it.

Protocol details (Matrix client-server spec v1.x, "Rich replies", "Event replacements", "Reactions"): a card is
an ``m.room.message`` (``m.text`` with an ``org.matrix.custom.html`` ``formatted_body``); a decision is a message
whose ``m.relates_to.m.in_reply_to.event_id`` is the card's event id; a reaction is an ``m.reaction`` event
(``m.relates_to``: ``rel_type m.annotation``, ``event_id``, ``key``); a card is edited by a new message with
``m.new_content`` and ``m.relates_to: {rel_type: m.replace, event_id}``.

Events that arrived while no bridge ran are not replayed (the first sync only positions the bridge): a person
whose reply got no answer replies again; the pending request itself is never lost (outbox and reconciliation).
"""

from __future__ import annotations

import asyncio
import io
import logging
from typing import Any

from nio import (
    AsyncClient,
    LoginResponse,
    ReactionEvent,
    RoomMessageText,
    RoomSendResponse,
    SyncResponse,
    UploadResponse,
)

from tern.chat.bridge import ApprovalBridge
from tern.chat.cards import card_html

log = logging.getLogger(__name__)
SYNC_TIMEOUT_MS = 10_000
# Synapse returns at most this many timeline events per room and sync (default 10, then ``limited: true`` and the
# rest only by back-pagination): a burst of cards and replies between two syncs must not hide a reply.
SYNC_FILTER = {"room": {"timeline": {"limit": 1000}}}


class MatrixError(RuntimeError):
    """A Matrix request failed; the message names it and the server's answer."""


class MatrixPlatform:
    """:class:`tern.chat.bridge.ChatPlatform` on one Matrix room, as one bot account.

    Args:
        homeserver: base URL (``http://127.0.0.1:8008``).
        user_id, password: the bot account.
        room_id: the control room (``!abc:localhost``) where cards are posted and replies read.
    """

    name = "matrix"

    def __init__(self, homeserver: str, user_id: str, password: str, room_id: str) -> None:
        self.client = AsyncClient(homeserver, user_id)
        self.password = password
        self.room_id = room_id
        self.bridge: ApprovalBridge | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def login(self) -> None:
        """Log in and join the room. Raises :class:`MatrixError`."""
        resp = await self.client.login(self.password, device_name="tern-bridge")
        if not isinstance(resp, LoginResponse):
            raise MatrixError(f"login as {self.client.user} failed: {resp}")
        await self.client.join(self.room_id)

    async def _send(self, room_id: str, content: dict[str, Any]) -> str:
        resp = await self.client.room_send(room_id, "m.room.message", content)
        if not isinstance(resp, RoomSendResponse):
            raise MatrixError(f"sending to {room_id} failed: {resp}")
        return str(resp.event_id)

    @staticmethod
    def _content(markdown: str) -> dict[str, Any]:
        return {
            "msgtype": "m.text",
            "body": markdown,
            "format": "org.matrix.custom.html",
            "formatted_body": card_html(markdown),
        }

    async def post_card(self, markdown: str) -> tuple[str, str]:
        """Post a card in the room; returns ``(room id, event id)``."""
        return self.room_id, await self._send(self.room_id, self._content(markdown))

    async def edit_card(self, room_id: str, message_id: str, markdown: str) -> None:
        """Replace the card's text (``m.replace``)."""
        new = self._content(markdown)
        await self._send(
            room_id,
            {
                **{k: (f"* {v}" if k in ("body", "formatted_body") else v) for k, v in new.items()},
                "m.new_content": new,
                "m.relates_to": {"rel_type": "m.replace", "event_id": message_id},
            },
        )

    async def reply(self, room_id: str, message_id: str, markdown: str) -> None:
        """Answer ``message_id`` with a rich reply."""
        await self._send(
            room_id, {**self._content(markdown), "m.relates_to": {"m.in_reply_to": {"event_id": message_id}}}
        )

    async def thread(self, room_id: str, root_id: str, markdown: str) -> str:
        """Post in the thread rooted at ``root_id`` (``m.thread``, with the reply fallback for older clients);
        returns the event id."""
        return await self._send(
            room_id,
            {
                **self._content(markdown),
                "m.relates_to": {
                    "rel_type": "m.thread",
                    "event_id": root_id,
                    "is_falling_back": True,
                    "m.in_reply_to": {"event_id": root_id},
                },
            },
        )

    async def attach_image(self, room_id: str, message_id: str, name: str, png: bytes, caption: str) -> None:
        """Upload ``png`` to the homeserver's media repository and post it as an ``m.image`` in the card's thread
        (Matrix spec "m.image", "Content repository: upload"). Raises :class:`MatrixError`."""
        resp, _ = await self.client.upload(io.BytesIO(png), content_type="image/png", filename=name, filesize=len(png))
        if not isinstance(resp, UploadResponse):
            raise MatrixError(f"uploading {name} failed: {resp}")
        await self._send(
            room_id,
            {
                "msgtype": "m.image",
                "body": name,
                "filename": name,
                "url": resp.content_uri,
                "info": {"mimetype": "image/png", "size": len(png)},
                "m.relates_to": {
                    "rel_type": "m.thread",
                    "event_id": message_id,
                    "is_falling_back": True,
                    "m.in_reply_to": {"event_id": message_id},
                },
            },
        )
        await self.thread(room_id, message_id, caption)

    def _mention(self, event: RoomMessageText) -> str | None:
        """The text after the bot's mention, or None when the message is not addressed to the bot: it starts
        with the bot's user id, ``@<localpart>`` or ``<localpart>:``, or lists the bot in ``m.mentions``."""
        user_id = str(self.client.user_id)
        local = user_id[1:].split(":", 1)[0]
        body = event.body.strip()
        mentions = (event.source.get("content", {}).get("m.mentions") or {}).get("user_ids") or []
        for prefix in (user_id, f"@{local}", f"{local}:"):
            if body.lower().startswith(prefix.lower()):
                return body[len(prefix) :].lstrip(" :,")
        return body if user_id in mentions else None

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("handling a Matrix event failed", exc_info=task.exception())

    async def _on_message(self, room: Any, event: RoomMessageText) -> None:
        if event.sender == self.client.user_id or room.room_id != self.room_id or self.bridge is None:
            return
        relates = event.source.get("content", {}).get("m.relates_to") or {}
        reply_to = (relates.get("m.in_reply_to") or {}).get("event_id")
        if relates.get("rel_type") in ("m.replace", "m.thread"):
            return
        if reply_to:
            self._spawn(self.bridge.on_reply(event.sender, room.room_id, event.event_id, reply_to, event.body))
            return
        text = self._mention(event)
        if text is not None:
            self._spawn(self.bridge.on_mention(event.sender, room.room_id, event.event_id, text))

    async def _on_reaction(self, room: Any, event: ReactionEvent) -> None:
        if event.sender == self.client.user_id or room.room_id != self.room_id or self.bridge is None:
            return
        self._spawn(self.bridge.on_reaction(event.sender, room.room_id, event.event_id, event.reacts_to, event.key))

    async def listen(self, stop: asyncio.Event) -> None:
        """Sync until ``stop``: the first sync positions the bridge (older events are not replayed), then every
        reply and reaction in the room goes to the bridge."""
        first = await self.client.sync(timeout=0, full_state=True)
        if not isinstance(first, SyncResponse):
            raise MatrixError(f"first sync failed: {first}")
        self.client.add_event_callback(self._on_message, RoomMessageText)
        self.client.add_event_callback(self._on_reaction, ReactionEvent)
        log.info("%s listening in %s", self.client.user_id, self.room_id)
        while not stop.is_set():
            resp = await self.client.sync(timeout=SYNC_TIMEOUT_MS, sync_filter=SYNC_FILTER)
            if not isinstance(resp, SyncResponse):
                log.warning("sync failed, retrying: %s", resp)
                await asyncio.sleep(1)

    async def close(self) -> None:
        """Wait for events being handled, then close the HTTP session."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.client.close()
