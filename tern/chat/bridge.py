"""The platform-neutral bridge loop: post a card for every waiting request, turn replies and reactions into
decisions sent under the mapped approver name, and edit the card when the request ends, whoever ended it.

The bridge authenticates (the platform tells who wrote; :class:`tern.chat.identity.IdentityMap` maps them) and
never authorises: the decision goes to the workflow's ``decide`` Update, whose validator and the worker's
approval policy accept or refuse it as for any other front end. Every attempt from chat is audited as
``chat_decision`` with the platform identity (keyed by the platform's message id, so a redelivered message is
recorded once); a refusal is also audited by the workflow as ``decision_refused`` when it reached it.

A magnet write's card (or a plan's, predicted as the whole) gets the PNG of its predicted orbit change at every BPM
(:mod:`tern.ring.plot`) in its thread, on platforms that can attach images (:class:`ImagePlatform`); the picture is
stored as an artifact of the run first (``tern artifact ID``), as the sandbox's figures are.

Temporal stays outside ``tern/``: the caller passes a :data:`Decider` (``starters/bridge.py`` wraps
``TernClient.decide``) and optionally a reconciliation source of pending requests (Temporal visibility).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

import asyncpg

from tern.approval.render import exact_number
from tern.chat import store
from tern.chat.cards import card_markdown, outcome_markdown
from tern.chat.commands import Command, CommandError, parse_command, parse_reaction, reaction_allowed
from tern.chat.identity import IdentityMap
from tern.db import Conn
from tern.models import ApprovalRequest
from tern.models.ring import PredictedEffect

log = logging.getLogger(__name__)


class DecisionRefused(Exception):
    """The decision was not taken (stale card, not an approver, run not waiting...); the message says why."""


Decider = Callable[[str, str, str, bool, str], Awaitable[str]]
"""``decide(run_id, request_id, approver, approved, comment)`` -> a line describing the audited decision.
Raises :class:`DecisionRefused` with the reason when nothing was decided."""

Known = Callable[[str], Awaitable[bool]]
"""``known(request id)``: whether the outbox already holds that request."""

PendingSource = Callable[[Known], Awaitable[list[tuple[str, ApprovalRequest]]]]
"""``pending(known)`` returns ``(workflow id, pending request)`` of every run waiting now whose request ``known``
says the outbox lacks (reconciliation at start: the request ids come from one list call, only the missing ones
are fetched whole)."""


class RunRefused(Exception):
    """A run asked for from chat was not started (unknown plan, bad input, Temporal unreachable)."""


class RunStarter(Protocol):
    """``start(user, plan name, key)`` -> the run id; raises :class:`RunRefused` with the reason. ``key`` names the
    chat message that asked (``<platform>:<room>:<message id>``): the same message delivered again starts no second
    run (``TernClient.start_once``); None starts a new run each call."""

    def __call__(self, user: str, name: str, key: str | None = None, /) -> Awaitable[str]: ...


QuestionStarter = RunStarter
"""``ask(user, question, key)`` -> the run id of an agent run planned from the question; as :class:`RunStarter`."""

FreezeChanger = Callable[[str, str, str], Awaitable[str]]
"""``change(action, user, reason)`` with ``action`` ``freeze`` or ``thaw``: freeze or thaw every control write of
the facility as the mapped ``user`` (proven by the bridge's service key where identity is proven; the worker's
approval policy decides who may thaw, and the freeze workflow audits the change with the proven principal);
returns a line describing the new state. Raises :class:`DecisionRefused` with the reason when nothing changed."""

RunProgress = Callable[[str], AsyncIterator[tuple[str, bool]]]
"""``progress(run id)`` yields ``(markdown, final)`` until the run ends: the run's progress now (step started or
done, waiting for approval), each replacing the one before, then ``final`` True with the outcome and answer."""


class ChatPlatform(Protocol):
    """What a bridge needs from a chat platform (Matrix: ``starters/matrix_bridge.py``)."""

    name: str

    async def post_card(self, markdown: str) -> tuple[str, str]:
        """Post a card; returns ``(room id, message id)``."""
        ...

    async def edit_card(self, room_id: str, message_id: str, markdown: str) -> None:
        """Replace the text of a posted card."""
        ...

    async def reply(self, room_id: str, message_id: str, markdown: str) -> None:
        """Answer the message ``message_id`` (a person's reply or reaction) in ``room_id``."""
        ...

    async def thread(self, room_id: str, root_id: str, markdown: str) -> str:
        """Post in the thread under message ``root_id`` (a run's progress); returns the new message's id (its
        progress is then edited in with :meth:`edit_card`)."""
        ...


class ImagePlatform(Protocol):
    """A chat platform that can also attach an image to a posted card (Matrix, Slack)."""

    async def attach_image(self, room_id: str, message_id: str, name: str, png: bytes, caption: str) -> None:
        """Post ``png`` (file name ``name``, ``caption`` as its text) in the thread of card ``message_id``."""
        ...


def plotted_effect(request: ApprovalRequest) -> tuple[PredictedEffect, str] | None:
    """The effect a card plots and its caption: a write's own predicted effect, else a plan approval's effect of
    the whole; None when the request has no per-BPM orbit change to show."""
    w = request.write
    if w is not None and w.predicted_effect is not None:
        return w.predicted_effect, f"predicted orbit change: {w.channel} -> {exact_number(w.value)}"
    if request.plan_effect is not None:
        n = len(request.plan_effect.writes)
        return request.plan_effect.combined, f"predicted orbit change: the plan as a whole ({n} writes)"
    return None


class ApprovalBridge:
    """One bridge instance on one platform.

    Args:
        platform: the chat adapter.
        pool: asyncpg pool on Tern's database (outbox, cards, audit).
        identities: the identity map.
        decide: sends a decision (see :data:`Decider`).
        pending: optional reconciliation source, read once at :meth:`start`.
        poll_interval_s: how often to look for new requests and ended ones, seconds.
        owner: this instance's name in card claims (random by default).
        start_run, progress: how ``run <plan name>`` addressed to the bot starts a run and follows it (both
            needed for that command; without them it is answered as not available).
        freeze: how ``freeze <reason>`` / ``thaw <reason>`` addressed to the bot change the facility write freeze
            (:data:`FreezeChanger`; without it those commands are answered as not available).
    """

    def __init__(
        self,
        platform: ChatPlatform,
        pool: asyncpg.Pool,
        identities: IdentityMap,
        decide: Decider,
        *,
        pending: PendingSource | None = None,
        poll_interval_s: float = 1.0,
        owner: str | None = None,
        start_run: RunStarter | None = None,
        progress: RunProgress | None = None,
        ask: QuestionStarter | None = None,
        freeze: FreezeChanger | None = None,
    ) -> None:
        self.start_run = start_run
        self.freeze = freeze
        self.ask = ask
        self.progress = progress
        self._followers: set[asyncio.Task[None]] = set()
        self.platform = platform
        self.pool = pool
        self.identities = identities
        self.decide = decide
        self.pending = pending
        self.poll_interval_s = poll_interval_s
        self.owner = owner or f"bridge-{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()

    async def reconcile(self) -> int:
        """Put every request the reconciliation source reports into the outbox (a bridge that was down, or runs
        started before ``notify_approvers`` existed); returns how many were new."""
        if self.pending is None:
            return 0
        new = 0
        async with self.pool.acquire() as conn:

            async def known(request_id: str) -> bool:
                return await store.request_by_id(conn, request_id) is not None

            for workflow_id, request in await self.pending(known):
                new += await store.add_request(conn, workflow_id, request)
        return new

    async def step(self) -> None:
        """One pass: post cards for waiting requests this instance wins the claim of, then their orbit-change
        plots (every card first: fifty waiting requests are all on screen before the first picture is drawn),
        update ended cards."""
        name = self.platform.name
        posted: list[tuple[str, ApprovalRequest, str, str]] = []
        async with self.pool.acquire() as conn:
            for card in await store.cards_to_post(conn, name):
                rid = card.request.request_id
                if not await store.claim(conn, name, rid, self.owner):
                    continue
                room_id, message_id = await self.platform.post_card(
                    card_markdown(card.request, workflow_id=card.workflow_id)
                )
                await store.card_posted(conn, name, rid, room_id, message_id)
                log.info("card for request %s of %s posted as %s", rid, card.workflow_id, message_id)
                posted.append((card.workflow_id, card.request, room_id, message_id))
            for workflow_id, request, room_id, message_id in posted:
                await self._attach_plot(conn, workflow_id, request, room_id, message_id)
            for card in await store.open_cards(conn, name):
                end = await store.ending(conn, card)
                if end is None:
                    continue
                is_write = end.decision == "approved" and card.request.kind == "control_write"
                final = not is_write or end.write_done
                readback = _write_text(end) if is_write else ""
                outcome = outcome_markdown(end.decision, by=end.by, comment=end.comment, readback=readback)
                if await store.set_outcome(conn, name, card.request.request_id, outcome, final=final):
                    assert card.room_id is not None and card.message_id is not None
                    text = card_markdown(card.request, workflow_id=card.workflow_id, outcome=outcome)
                    await self.platform.edit_card(card.room_id, card.message_id, text)

    async def _attach_plot(
        self, conn: Conn, workflow_id: str, request: ApprovalRequest, room_id: str, message_id: str
    ) -> str | None:
        """Store the request's orbit-change PNG as an artifact of the run and attach it under the card; returns the
        artifact id (None when there is nothing to plot or the platform takes no images). A plot that cannot be
        drawn, stored or posted is logged and the card stands without it (its text carries the same numbers)."""
        attach = getattr(self.platform, "attach_image", None)
        plotted = plotted_effect(request)
        if attach is None or plotted is None:
            return None
        from tern.ring.plot import FILE_NAME, orbit_change_png  # matplotlib: imported only when a card needs it
        from tern.sandbox.artifacts import store_artifact

        effect, caption = plotted
        try:
            png = await asyncio.to_thread(orbit_change_png, effect, caption)
            if png is None:
                return None
            ref = await store_artifact(
                conn, png, workflow_id=workflow_id, step_id=request.step_id, name=FILE_NAME, media_type="image/png"
            )
            await attach(room_id, message_id, FILE_NAME, png, f"{caption} (artifact {ref})")
        except Exception:  # the card is posted; its picture is an addition, never a reason to stop
            log.warning(
                "orbit-change plot for request %s of %s not attached", request.request_id, workflow_id, exc_info=True
            )
            return None
        log.info("orbit-change plot %s attached to request %s of %s", ref, request.request_id, workflow_id)
        return ref

    async def run(self, stop: asyncio.Event) -> None:
        """Reconcile (in the background: runs whose worker does not answer may take a while), and :meth:`step`
        at every outbox notification or ``poll_interval_s`` until ``stop``. A failed reconciliation is logged and
        the bridge goes on (the outbox still brings every new request)."""

        async def reconcile() -> None:
            try:
                if await self.reconcile():
                    self._wake.set()
            except Exception as exc:
                log.warning("reconciliation at start failed: %s", exc)

        reconciling = asyncio.ensure_future(reconcile())
        listener = await self.pool.acquire()
        await listener.add_listener(store.NOTIFY_CHANNEL, self._notified)
        try:
            while not stop.is_set():
                try:
                    await self.step()
                except Exception as exc:  # database or platform down: the next pass retries (claims stay valid)
                    log.warning("bridge pass failed, retrying: %s", exc)
                self._wake.clear()
                wait = asyncio.ensure_future(self._wake.wait())
                stopped = asyncio.ensure_future(stop.wait())
                await asyncio.wait({wait, stopped}, timeout=self.poll_interval_s, return_when=asyncio.FIRST_COMPLETED)
                wait.cancel()
                stopped.cancel()
        finally:
            reconciling.cancel()
            await listener.remove_listener(store.NOTIFY_CHANNEL, self._notified)
            await self.pool.release(listener)

    def _notified(self, *_: object) -> None:
        self._wake.set()

    async def on_reply(self, sender: str, room_id: str, event_id: str, reply_to: str, text: str) -> None:
        """A message ``event_id`` from ``sender`` in ``room_id`` answering message ``reply_to``; ignored unless
        that is a card posted in the same room."""
        async with self.pool.acquire() as conn:
            card = await store.card_by_message(conn, self.platform.name, reply_to, room_id=room_id)
        if card is None:
            return
        try:
            command = parse_command(text)
        except CommandError as exc:
            await self._answer(card, sender, room_id, event_id, None, f"not taken: {exc}")
            return
        if command.verb == "run":
            await self.platform.reply(room_id, event_id, "`run` is addressed to the bot, not to an approval card")
            return
        await self._decide(card, sender, room_id, event_id, command)

    async def on_command(
        self, sender: str, room_id: str, event_id: str, card_message_id: str, command: Command
    ) -> None:
        """A decision already parsed by the platform (a Slack button or modal) on the card ``card_message_id``;
        ``event_id`` is unique per attempt (the audit key). Ignored unless that message is a card posted in
        ``room_id``."""
        async with self.pool.acquire() as conn:
            card = await store.card_by_message(conn, self.platform.name, card_message_id, room_id=room_id)
        if card is None:
            return
        await self._decide(card, sender, room_id, event_id, command)

    async def on_mention(self, sender: str, room_id: str, event_id: str, text: str) -> None:
        """A message addressed to the bot (mention stripped): ``freeze <reason>`` / ``thaw <reason>`` change the
        facility write freeze (:meth:`freeze_command`), ``run <plan name>`` starts a run of a bundled plan,
        any other text is a question that starts an agent run planned by the LLM (when the bridge has ``ask``:
        the planner is configured), both for the mapped user, followed in a thread under ``event_id``."""
        command: Command | None = None
        try:
            command = parse_command(text)
        except CommandError as exc:
            if self.ask is None or not text.strip() or text.split()[0].lower() == "run":
                await self.platform.reply(room_id, event_id, f"not taken: {exc}")
                return
        if command is not None and command.verb in ("freeze", "thaw"):
            await self.platform.reply(room_id, event_id, await self.freeze_command(sender, command))
            return
        if command is not None and command.verb != "run":
            await self.platform.reply(
                room_id,
                event_id,
                "not taken: to decide a request, reply to its card; to the bot: a question or `run <plan name>`",
            )
            return
        user = self.identities.lookup(self.platform.name, sender)
        if user is None:
            await self.platform.reply(room_id, event_id, f"not taken: {sender} is not mapped to a Tern user")
            return
        start = self.start_run if command is not None else self.ask
        if start is None or self.progress is None:
            await self.platform.reply(room_id, event_id, "not taken: this bridge does not start runs")
            return
        key = f"{self.platform.name}:{room_id}:{event_id}"
        try:
            workflow_id = await start(user, command.text if command is not None else text.strip(), key)
        except RunRefused as exc:
            await self.platform.reply(room_id, event_id, f"not started: {exc}")
            return
        what = f"of plan `{command.text}`" if command is not None else "planned from the question"
        started = f"Started run `{workflow_id}` {what} for {user}."
        message_id = await self.platform.thread(room_id, event_id, started)
        task = asyncio.ensure_future(self._follow(room_id, event_id, workflow_id, message_id, started))
        self._followers.add(task)
        task.add_done_callback(self._followers.discard)

    async def freeze_command(self, sender: str, command: Command) -> str:
        """``freeze <reason>`` / ``thaw <reason>`` from the platform identity ``sender`` (a message to the bot, or a
        Slack ``/tern`` command): sent as the sender's mapped user. Returns the answer for the person: the new state,
        or why nothing changed (unmapped sender, refused by the worker's policy or proof check, already frozen, not
        frozen). The change itself is audited by the freeze workflow with the proven principal and the surface."""
        user = self.identities.lookup(self.platform.name, sender)
        if user is None:
            why = f" ({self.identities.error})" if self.identities.error else ""
            return f"not taken: {sender} is not mapped to a Tern user{why}"
        if self.freeze is None or command.verb not in ("freeze", "thaw"):
            return f"not taken: this bridge does not {command.verb}"
        try:
            text = await self.freeze(command.verb, user, command.text)
        except DecisionRefused as exc:
            log.warning("%s from %s (%s) refused: %s", command.verb, sender, user, exc)
            return f"not taken: {exc}"
        log.info("%s from %s (%s): %s", command.verb, sender, user, text)
        return text

    async def _follow(self, room_id: str, root_id: str, workflow_id: str, message_id: str, started: str) -> None:
        """Edit the run's progress into its ``Started run`` message ``message_id``; post the outcome as a new
        message in the thread (an edit notifies nobody, the answer should)."""
        assert self.progress is not None
        try:
            async for text, final in self.progress(workflow_id):
                if final:
                    await self.platform.thread(room_id, root_id, text)
                else:
                    await self.platform.edit_card(room_id, message_id, f"{started}\n\n{text}")
        except Exception as exc:  # the run goes on; only its chat progress stops
            log.warning("following run %s failed: %s", workflow_id, exc)
            await self.platform.thread(room_id, root_id, f"Stopped following run `{workflow_id}`: {exc}")

    async def on_reaction(self, sender: str, room_id: str, event_id: str, reacted_to: str, key: str) -> None:
        """A reaction ``key`` from ``sender`` in ``room_id`` on message ``reacted_to``; decides only low-risk
        requests, and only on a card posted in the same room."""
        command = parse_reaction(key)
        if command is None:
            return
        async with self.pool.acquire() as conn:
            card = await store.card_by_message(conn, self.platform.name, reacted_to, room_id=room_id)
        if card is None:
            return
        if not reaction_allowed(card.request):
            await self._answer(
                card,
                sender,
                room_id,
                event_id,
                command,
                f"not taken: a {card.request.kind} request needs a reply to the card (`approve [comment]` or "
                "`reject <reason>`); reactions decide only low-risk code",
            )
            return
        await self._decide(card, sender, room_id, event_id, command)

    async def _decide(self, card: store.Card, sender: str, room_id: str, event_id: str, command: Command) -> None:
        approver = self.identities.lookup(self.platform.name, sender)
        if approver is None:
            why = f" ({self.identities.error})" if self.identities.error else ""
            await self._answer(
                card,
                sender,
                room_id,
                event_id,
                command,
                f"not taken: {sender} is not mapped to a Tern approver{why}; ask the facility to add you to the "
                "approvers map",
            )
            return
        try:
            result = await self.decide(
                card.workflow_id, card.request.request_id, approver, command.approved, command.text
            )
        except DecisionRefused as exc:
            await self._answer(card, sender, room_id, event_id, command, f"not taken: {exc}", approver=approver)
            return
        await self._answer(card, sender, room_id, event_id, command, result, approver=approver, accepted=True)
        self._wake.set()

    async def _answer(
        self,
        card: store.Card,
        sender: str,
        room_id: str,
        event_id: str,
        command: Command | None,
        text: str,
        *,
        approver: str | None = None,
        accepted: bool = False,
    ) -> None:
        """Audit the attempt (``chat_decision``, keyed by the platform message id) and answer the person."""
        async with self.pool.acquire() as conn:
            await store.audit_attempt(
                conn,
                platform=self.platform.name,
                message_id=event_id,
                identity=sender,
                text=text,
                workflow_id=card.workflow_id,
                request=card.request,
                approver=approver,
                approved=None if command is None else command.approved,
                comment=None if command is None else command.text,
                accepted=accepted,
            )
        await self.platform.reply(room_id, event_id, text)


def _write_text(end: store.Ending) -> str:
    if not end.write_done and end.held:
        return f"**Write held**: facility {end.held}; the approval stands, the write runs at the thaw"
    if not end.write_done:
        return "Writing…"
    if end.verified:
        readback, target = (("none" if v is None else exact_number(v)) for v in (end.readback, end.write_value))
        return f"**Written and verified**: readback {readback} (target {target})"
    return f"**Write not verified**: readback {end.readback}; {end.write_comment}"
