"""The chat bridge core without a chat platform: commands, identity map, cards, and the PostgreSQL outbox and
card claims on a real database (issue 9)."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from tern.audit.store import record_event
from tern.chat import store
from tern.chat.cards import card_markdown, outcome_markdown
from tern.chat.commands import CommandError, ConditionalApproval, parse_command, parse_reaction, reaction_allowed
from tern.chat.identity import IdentityMap
from tern.db import create_pool
from tern.models import ApprovalRequest, AuditEvent, LimitsCheck
from tern.models.approval import CodeReview


def _request(rid: str = "r-1", *, kind: str = "control_write", risk: str = "low") -> ApprovalRequest:
    now = datetime.now(UTC)
    return ApprovalRequest(
        request_id=rid,
        kind=kind,
        step_id="write",
        summary="set the quad current",
        requested_by="physicist",
        approvers=["operator"],
        requested_at=now,
        expires_at=now + timedelta(hours=1),
        write=LimitsCheck(channel="SR:MAG:QF:01:CURRENT:SP", value=12.5, allowed=True, current_value=12.0, units="A")
        if kind == "control_write"
        else None,
        code=CodeReview(code="print(1)", risk=risk) if kind == "python" else None,
        allow_self_approval=kind != "control_write",
    )


@pytest.mark.parametrize(
    ("text", "verb", "rest"),
    [
        ("approve", "approve", ""),
        ("Approve: looks right", "approve", "looks right"),
        (
            "> <@tern:localhost> Approval needed\n> quoted card\n\nreject  beam is unstable",
            "reject",
            "beam is unstable",
        ),
        ("run demo", "run", "demo"),
    ],
)
def test_commands_parse(text: str, verb: str, rest: str) -> None:
    cmd = parse_command(text)
    assert (cmd.verb, cmd.text) == (verb, rest)


@pytest.mark.parametrize(
    ("text", "why"),
    [("reject", "needs a reason"), ("hello", "not a command"), ("run ../etc", "bundled plan"), ("", "not a command")],
)
def test_malformed_commands_are_refused_with_what_to_type(text: str, why: str) -> None:
    with pytest.raises(CommandError, match=why):
        parse_command(text)
    with pytest.raises(CommandError, match="comment too long"):
        parse_command("approve " + "x" * 5000)


def test_reactions_decide_only_low_risk_code() -> None:
    assert parse_reaction("\u2705").approved and not parse_reaction("\u274c").approved  # type: ignore[union-attr]
    assert parse_reaction("\U0001f44d") is None
    assert reaction_allowed(_request(kind="python", risk="low"))
    assert not reaction_allowed(_request(kind="python", risk="high"))
    assert not reaction_allowed(_request())


def test_identity_map_is_reloaded_when_the_file_changes_and_fails_closed(tmp_path: Path) -> None:
    path = tmp_path / "ids.toml"
    path.write_text('[matrix]\n"@alice:facility.org" = "alice"\n')
    ids = IdentityMap(path, {"matrix": {"@operator:localhost": "operator"}})
    assert ids.lookup("matrix", "@alice:facility.org") == "alice"
    assert ids.lookup("matrix", "@operator:localhost") == "operator"
    assert ids.lookup("slack", "@alice:facility.org") is None
    path.write_text('[matrix]\n"@bob:facility.org" = "bob"\n[slack]\nU024BE7LH = "alice"\n')
    os.utime(path, (time.time() + 5, time.time() + 5))
    assert ids.lookup("matrix", "@alice:facility.org") is None
    assert ids.lookup("slack", "U024BE7LH") == "alice"
    path.write_text("[matrix\n")  # broken: nobody is mapped, and the error says why
    assert ids.lookup("slack", "U024BE7LH") is None and ids.lookup("matrix", "@operator:localhost") is None
    assert ids.error is not None and "ids.toml" in ids.error


def test_card_shows_the_write_in_full_and_how_to_decide() -> None:
    text = card_markdown(_request(), workflow_id="run-1")
    for part in ("SR:MAG:QF:01:CURRENT:SP", "12 A", "12.5 A", "operator", "r-1", "reject <reason>", "two-person rule"):
        assert part in text, part
    assert "reaction" not in text
    assert "reaction" in card_markdown(_request(kind="python"), workflow_id="run-1")
    ended = card_markdown(_request(), workflow_id="run-1", outcome=outcome_markdown("approved", by="operator"))
    assert ended.startswith("**✅ Approved** by **operator**") and "How to decide" not in ended


async def test_one_claim_per_request_among_concurrent_bridges(pg_dsn: str) -> None:
    """Ten bridge instances claim the same card at once: exactly one wins. A claim never posted is taken over
    after its lease; a posted card is never claimed again; an ended request is no longer offered."""
    pool = await create_pool(pg_dsn, max_size=12)
    try:
        async with pool.acquire() as conn:
            assert await store.add_request(conn, "run-1", _request("r-claim"))
            assert not await store.add_request(conn, "run-1", _request("r-claim"))  # idempotent
            assert [c.request.request_id for c in await store.cards_to_post(conn, "matrix")] == ["r-claim"]

        async def claim(i: int) -> bool:
            async with pool.acquire() as c:
                return await store.claim(c, "matrix", "r-claim", f"b{i}")

        wins = await asyncio.gather(*(claim(i) for i in range(10)))
        assert sum(wins) == 1
        async with pool.acquire() as conn:
            assert await store.cards_to_post(conn, "matrix") == []
            assert not await store.claim(conn, "matrix", "r-claim", "late")
            assert await store.claim(conn, "matrix", "r-claim", "taker", lease_s=0)  # lease over, never posted
            await store.card_posted(conn, "matrix", "r-claim", "!room", "$ev")
            assert not await store.claim(conn, "matrix", "r-claim", "again", lease_s=0)
            card = await store.card_by_message(conn, "matrix", "$ev", room_id="!room")
            assert card is not None and card.workflow_id == "run-1"
            # issue 22: the same message id named from another room is not that card
            assert await store.card_by_message(conn, "matrix", "$ev", room_id="!other") is None
            assert await store.add_request(conn, "run-2", _request("r-ended"))
            await record_event(
                conn,
                AuditEvent(
                    event_kind="approval_timed_out",
                    workflow_id="run-2",
                    request_id="r-ended",
                    event_key="decision:r-ended",
                ),
            )
            assert await store.cards_to_post(conn, "matrix") == []
            assert await store.ending(conn, (await store.open_cards(conn, "matrix"))[0]) is None
    finally:
        await pool.close()


async def test_outbox_notifies_listeners(pg_dsn: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    got: asyncio.Queue[str] = asyncio.Queue()
    await conn.add_listener(store.NOTIFY_CHANNEL, lambda *args: got.put_nowait(args[-1]))
    pool = await create_pool(pg_dsn)
    try:
        async with pool.acquire() as c:
            await store.add_request(c, "run-3", _request("r-notify"))
        assert await asyncio.wait_for(got.get(), 5) == "r-notify"
    finally:
        await pool.close()
        await conn.close()


def test_webhook_signatures() -> None:
    """HMAC-SHA256 (v2) over timestamp, method, path and body: the right secret passes; a changed body, another
    key's secret, an old timestamp, a missing header, an unknown key, another path or method (a decision for
    request A posted to B) or a v1 signature (no path) is refused with the reason."""
    import hashlib
    import hmac

    from tern.chat.signing import SignatureError, signature_digest, signed_headers, target_of, verify

    secrets = {"ops": "a" * 16, "other": "b" * 16}
    body = b'{"approved": true}'
    now = 1_800_000_000.0
    path = "/approvals/r-a/decision"
    h = signed_headers("ops", "a" * 16, body, target=path, now=now)
    ok = verify(secrets, h, body, method="POST", target=path, now=now + 299)
    assert (ok.key_id, ok.timestamp, ok.digest) == ("ops", int(now), signature_digest(h["X-Tern-Signature"]))
    expected = hmac.new(b"a" * 16, f"v2:{int(now)}:POST:{path}:".encode() + body, hashlib.sha256).hexdigest()
    assert h["X-Tern-Signature"] == f"v2={expected}"  # the documented message, byte for byte
    v1 = hmac.new(b"a" * 16, f"v1:{int(now)}:".encode() + body, hashlib.sha256).hexdigest()
    bad = [
        (h, body + b" ", path, "POST", now, "does not match"),
        (signed_headers("ops", "b" * 16, body, target=path, now=now), body, path, "POST", now, "does not match"),
        (h, body, "/approvals/r-b/decision", "POST", now, "does not match"),  # captured for A, posted to B
        (h, body, "/triggers/ticket", "POST", now, "does not match"),
        (h, body, path + "?x=1", "POST", now, "does not match"),
        (h, body, path, "PUT", now, "does not match"),
        ({**h, "X-Tern-Signature": f"v1={v1}"}, body, path, "POST", now, "'v1' is not accepted"),
        (h, body, path, "POST", now + 301, "outside the 300 s window"),
        (h, body, path, "POST", now - 301, "outside the 300 s window"),
        ({k: v for k, v in h.items() if k != "X-Tern-Signature"}, body, path, "POST", now, "unsigned"),
        ({**h, "X-Tern-Key-Id": "eve"}, body, path, "POST", now, "unknown key id"),
        ({**h, "X-Tern-Timestamp": "soon"}, body, path, "POST", now, "Unix seconds"),
    ]
    for headers, b, target, method, at, reason in bad:
        with pytest.raises(SignatureError, match=reason):
            verify(secrets, headers, b, method=method, target=target, now=at)
    assert target_of("https://bot.example:8443/hooks/tern?room=7") == "/hooks/tern?room=7"
    assert target_of("http://127.0.0.1:9") == "/"
    with pytest.raises(ValueError, match="target"):
        signed_headers("ops", "a" * 16, body, target="/x\r\nInjected: 1")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("yes, but only after the beam dump", "is not an approval"),
        ("yes", "is not an approval"),
        ("Approved", "is not an approval"),
        ("ok go", "is not an approval"),
        ("lgtm", "is not an approval"),
        ("approve?", "is not an approval"),
        ("approve, but only after the beam dump", "'but' sets a condition"),
        ("approve once the injector is off", "'once' sets a condition"),
        ("approve if the orbit is stable", "'if' sets a condition"),
        ("approve when RF is back", "'when' sets a condition"),
        ("Approve: don\u2019t ramp yet", '"don\'t" sets a condition'),
        ("approve, is this the right magnet?", "'?' sets a condition"),
        ("approve not before 14:00", "'not' sets a condition"),
    ],
)
def test_a_conditional_or_loose_reply_is_not_an_approval(text: str, why: str) -> None:
    """Issue 22: "yes, but only after the beam dump" counted as an approval. Only the exact word `approve`
    without a condition approves; the refusal says what to type."""
    with pytest.raises(ConditionalApproval, match=why) as info:
        parse_command(text)
    assert "nothing is decided" in str(info.value) and "`approve" in str(info.value)


@pytest.mark.parametrize(
    "text", ["approve", "approve.", "Approve: looks right", "approve go ahead", "APPROVE as analysed"]
)
def test_a_plain_approval_still_approves(text: str) -> None:
    assert parse_command(text).approved


class _Room:
    """The platform side of a bridge in a test: records what the bridge posts (no chat server needed here; the
    Matrix and Slack tests run the real ones)."""

    name = "matrix"

    def __init__(self) -> None:
        self.replies: list[tuple[str, str, str]] = []

    async def post_card(self, markdown: str) -> tuple[str, str]:
        return "!rf", f"$card-{len(self.replies)}"

    async def edit_card(self, room_id: str, message_id: str, markdown: str) -> None:
        return None

    async def reply(self, room_id: str, message_id: str, markdown: str) -> None:
        self.replies.append((room_id, message_id, markdown))

    async def thread(self, room_id: str, root_id: str, markdown: str) -> str:
        return "thread-message"


async def test_a_reply_in_another_room_does_not_decide_the_card(pg_dsn: str) -> None:
    """Issue 22: a card's message id named from another room (a Matrix reply can name any event id; Slack
    timestamps are unique per channel only) decided the card. Only the card's own room decides it."""
    from tern.chat.bridge import ApprovalBridge

    decided: list[tuple[str, str, str, bool, str]] = []

    async def decide(run_id: str, request_id: str, approver: str, approved: bool, comment: str) -> str:
        decided.append((run_id, request_id, approver, approved, comment))
        return "approved by operator"

    room = _Room()
    pool = await create_pool(pg_dsn, max_size=4)
    try:
        bridge = ApprovalBridge(
            room, pool, IdentityMap(None, {"matrix": {"@op:hs": "operator", "@other:hs": "operator"}}), decide
        )
        async with pool.acquire() as conn:
            await store.add_request(conn, "run-1", _request("r-room"))
            assert await store.claim(conn, "matrix", "r-room", "b1")
            await store.card_posted(conn, "matrix", "r-room", "!rf", "$card")
        await bridge.on_reply("@other:hs", "!magnets", "$e1", "$card", "approve")
        await bridge.on_reaction("@other:hs", "!magnets", "$e2", "$card", "\u2705")
        await bridge.on_command("@other:hs", "!magnets", "$e3", "$card", parse_command("approve"))
        assert decided == [] and room.replies == []  # not a card of that room: nothing decided, nothing said
        await bridge.on_reply("@op:hs", "!rf", "$e4", "$card", "approve")
        assert decided == [("run-1", "r-room", "operator", True, "")]
    finally:
        await pool.close()


class _ImageRoom(_Room):
    """A platform that also takes images (as Matrix and Slack do): records what the bridge attaches."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[tuple[str, str, str, bytes, str]] = []

    async def attach_image(self, room_id: str, message_id: str, name: str, png: bytes, caption: str) -> None:
        self.images.append((room_id, message_id, name, png, caption))


async def test_a_magnet_write_card_gets_the_png_of_its_predicted_orbit_change(pg_dsn: str) -> None:
    """Issue 23: the card of a corrector write carries a PNG of the predicted orbit change at every BPM, stored as
    an artifact of the run; the plotted numbers are the prediction's and match pyAT computed here independently (a
    fresh lattice, the corrector kicked by hand at the mapping's 20 urad per A). A write without a prediction gets
    no picture."""
    import io

    import at  # pyAT: a dependency of Tern, never skipped
    import machine_data
    from PIL import Image

    from tern.chat.bridge import ApprovalBridge
    from tern.ring.effect import predict_effect
    from tern.ring.model import RingModel
    from tern.ring.plot import plotted_data
    from tern.sandbox.artifacts import load_artifact

    channel, amps = "SR:MAG:HCM:05:CURRENT:SP", 8.0
    effect = predict_effect(RingModel(), {channel: amps}, orbit_profile=True)
    with_effect = _request("r-plot")
    assert with_effect.write is not None
    with_effect.write = with_effect.write.model_copy(
        update={"channel": channel, "value": amps, "predicted_effect": effect}
    )
    room = _ImageRoom()

    async def decide(*_: object) -> str:
        return "not used"

    pool = await create_pool(pg_dsn, max_size=4)
    try:
        bridge = ApprovalBridge(room, pool, IdentityMap(None, {"matrix": {}}), decide)
        async with pool.acquire() as conn:
            await store.add_request(conn, "run-plot", with_effect)
            await store.add_request(conn, "run-plot", _request("r-plain"))  # no predicted effect: no picture
        await bridge.step()
        assert len(room.images) == 1, room.images
        room_id, message_id, name, png, caption = room.images[0]
        assert (room_id, message_id, name) == ("!rf", "$card-0", "orbit-change.png") and channel in caption
        with Image.open(io.BytesIO(png)) as img:
            assert img.format == "PNG" and img.size[0] >= 600 and img.size[1] >= 300
            img.verify()
        data = plotted_data(png)
        assert effect.orbit_change_mm is not None
        assert list(zip(data["x_mm"], data["y_mm"], strict=True)) == effect.orbit_change_mm  # the prediction's
        ring = at.load_lattice(os.path.join(os.path.dirname(machine_data.__file__), "australian_synchrotron.m"))
        ring.disable_6d()
        mons = ring.get_uint32_index(at.Monitor)
        _, o0 = ring.find_orbit4(refpts=mons)
        [c for c in ring if isinstance(c, at.Corrector)][4].KickAngle[0] = amps * 2.0e-5
        _, o1 = ring.find_orbit4(refpts=mons)
        assert len(data["x_mm"]) == len(mons) == 98
        assert max(abs(v) for v in data["x_mm"]) > 0.3  # large enough for the comparison to mean something
        for k in range(len(mons)):
            assert data["x_mm"][k] == pytest.approx((o1[k, 0] - o0[k, 0]) * 1e3, abs=1e-4)
            assert data["y_mm"][k] == pytest.approx((o1[k, 2] - o0[k, 2]) * 1e3, abs=1e-4)
        ref = caption.rsplit("artifact ", 1)[1].rstrip(")")
        art = await load_artifact(pool, ref)
        assert art is not None and art.content == png and art.workflow_id == "run-plot" and art.step_id == "write"
        # the run-list memo (PendingSummary) leaves the 98-point profile in the request
        from tern.models.progress import PendingSummary

        memo = PendingSummary.of(with_effect).model_dump_json()
        assert "orbit_change_mm" not in memo and '"dq_x"' in memo
    finally:
        await pool.close()


class _OrderedImageRoom(_ImageRoom):
    """Records the order of cards and pictures."""

    def __init__(self) -> None:
        super().__init__()
        self.order: list[str] = []

    async def post_card(self, markdown: str) -> tuple[str, str]:
        self.order.append("card")
        return "!rf", f"$card-{len(self.order)}"

    async def attach_image(self, room_id: str, message_id: str, name: str, png: bytes, caption: str) -> None:
        self.order.append("image")
        await super().attach_image(room_id, message_id, name, png, caption)


@pytest.mark.load  # fifty orbit plots rendered (matplotlib, ~13 s of CPU)
async def test_fifty_waiting_magnet_writes_get_every_card_first_then_fifty_distinct_plots(pg_dsn: str) -> None:
    """50 runs in flight: fifty magnet-write requests from fifty runs waiting at once are all posted before the
    first picture, then each card gets its own picture of its own prediction, stored once per run."""
    from tern.chat.bridge import ApprovalBridge
    from tern.ring.effect import predict_effect
    from tern.ring.model import RingModel
    from tern.ring.plot import plotted_data

    model = RingModel()
    effects = [
        predict_effect(model, {"SR:MAG:HCM:07:CURRENT:SP": 0.2 * (k + 1)}, orbit_profile=True) for k in range(50)
    ]
    room = _OrderedImageRoom()

    async def decide(*_: object) -> str:
        return "not used"

    pool = await create_pool(pg_dsn, max_size=4)
    try:
        bridge = ApprovalBridge(room, pool, IdentityMap(None, {"matrix": {}}), decide)
        async with pool.acquire() as conn:
            for k, effect in enumerate(effects):
                req = _request(f"r-fifty-{k}")
                assert req.write is not None
                req.write = req.write.model_copy(
                    update={"channel": "SR:MAG:HCM:07:CURRENT:SP", "value": 0.2 * (k + 1), "predicted_effect": effect}
                )
                await store.add_request(conn, f"run-fifty-{k}", req)
        await bridge.step()
        assert room.order == ["card"] * 50 + ["image"] * 50
        by_card = {message_id: png for _, message_id, _, png, _ in room.images}
        assert len(by_card) == 50 and len(set(by_card.values())) == 50
        async with pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT run_id, content FROM artifacts WHERE run_id LIKE 'run-fifty-%' AND name = 'orbit-change.png'"
            )
        assert len(rows) == 50
        for row in rows:
            k = int(row["run_id"].rsplit("-", 1)[1])
            data = plotted_data(bytes(row["content"]))
            assert list(zip(data["x_mm"], data["y_mm"], strict=True)) == effects[k].orbit_change_mm
    finally:
        await pool.close()
