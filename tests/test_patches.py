"""Patch retirement (docs/how-to/upgrade-workers.md): the registry of patch ids, ``tern patches`` counting the open
runs that recorded each id (``TemporalChangeVersion``) on the real dev server, and the replay rule that decides
when a patch may go: a removed ``patched`` id breaks the histories that recorded it, a removed ``deprecate_patch``
id does not break the histories recorded under it."""

from __future__ import annotations

import ast
import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path

from temporalio.worker import Replayer, Worker

from starters.patches import patch_report
from tests.versioned_workflows import MarkerDeprecated, MarkerPatched, MarkerRemoved, PatchedWaiting
from workflows.patches import PATCHES, PER_STEP_FAMILIES, family

ROOT = Path(__file__).resolve().parent.parent


def _calls_in_sources() -> dict[str, str]:
    """Each patch id the workflow sources pass to ``workflow.patched`` / ``workflow.deprecate_patch`` (constants
    resolved from the modules' own assignments; an f-string ``f"{X}:{step}"`` counts as ``X``), read with ``ast``."""
    consts: dict[str, str] = {}
    calls: list[tuple[str, ast.expr]] = []
    for path in sorted((ROOT / "workflows").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            ):
                for t in node.targets:
                    if isinstance(t, ast.Name) and t.id.endswith("_PATCH"):
                        consts[t.id] = node.value.value
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("patched", "deprecate_patch")
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "workflow"
            ):
                calls.append((node.func.attr, node.args[0]))
    found: dict[str, str] = {}
    for kind, arg in calls:
        if isinstance(arg, ast.JoinedStr):
            arg = arg.values[0].value  # type: ignore[attr-defined]  # the FormattedValue's expression
        name = arg.id if isinstance(arg, ast.Name) else None
        value = consts[name] if name else arg.value  # type: ignore[attr-defined]
        found[value] = "deprecated" if kind == "deprecate_patch" else "patched"
    return found


def test_registry_lists_every_patch_of_the_sources_with_its_state() -> None:
    assert _calls_in_sources() == PATCHES
    assert family("approval-policy-1:write") == "approval-policy-1" and family("other:x") == "other:x"
    assert set(PER_STEP_FAMILIES) <= set(PATCHES)


async def test_patches_counts_open_runs_that_recorded_each_id(temporal_env, tmp_path) -> None:
    from tests.conftest import env_without_services

    client = temporal_env.client
    tq = f"tq-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=tq, workflows=[PatchedWaiting]):
        handles = [await client.start_workflow("PatchedWaiting", id=f"pw{i}-{tq}", task_queue=tq) for i in range(3)]
        query = f'ExecutionStatus = "Running" AND WorkflowId STARTS_WITH "pw" AND TaskQueue = "{tq}"'

        async def recorded() -> None:  # visibility is eventually consistent
            while True:
                if (await client.count_workflows(query + ' AND TemporalChangeVersion = "test-only-1"')).count == 3:
                    return
                await asyncio.sleep(0.2)

        await asyncio.wait_for(recorded(), 30)
        report = await patch_report(client, query)
        counts = {p.patch_id: (p.in_code, p.open_runs) for p in report.patches}
        assert report.open_runs == 3
        assert counts["approval-policy-1"] == ("patched", 3)  # two per-request ids, once per run
        assert counts["test-only-1"] == ("absent", 3)
        assert counts["logbook-publish-1"] == ("deprecated", 0)
        assert {p for p, (_, n) in counts.items() if n} == {"approval-policy-1", "test-only-1"}

        address = client.service_client.config.target_host
        env = env_without_services(tmp_path / "data", TERN_TEMPORAL__ADDRESS=address)
        proc = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "starters.cli", "patches", "--query", query, "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )
        assert proc.returncode == 0, proc.stderr
        assert {p["patch_id"]: (p["in_code"], p["open_runs"]) for p in json.loads(proc.stdout)["patches"]} == counts
        for h in handles:
            await h.signal("proceed")
            await h.result()


async def test_a_removed_patch_breaks_histories_that_recorded_it_a_removed_deprecation_does_not(temporal_env) -> None:
    """Why ``logbook-publish-1`` stays a ``deprecate_patch`` until ``tern patches`` counts no open run with it: runs
    recorded under ``workflow.patched`` (its release of 2026-11-23) carry a non-deprecated marker."""
    client = temporal_env.client
    histories = {}
    for cls in (MarkerPatched, MarkerDeprecated):
        tq = f"tq-{uuid.uuid4().hex[:8]}"
        async with Worker(client, task_queue=tq, workflows=[cls]):
            handle = await client.start_workflow("Marker", id=f"m-{tq}", task_queue=tq)
            assert await handle.result() == "ok"
        histories[cls] = await handle.fetch_history()

    async def replay(code: type, recorded: type) -> Exception | None:
        res = await Replayer(workflows=[code]).replay_workflow(histories[recorded], raise_on_replay_failure=False)
        return res.replay_failure

    assert await replay(MarkerDeprecated, MarkerPatched) is None  # step 2 keeps the old runs
    assert await replay(MarkerRemoved, MarkerDeprecated) is None  # step 3 keeps the runs recorded under step 2
    failure = await replay(MarkerRemoved, MarkerPatched)  # skipping step 2's wait breaks the old runs
    assert failure is not None and "m-1" in str(failure)
