"""Proven identity end to end: real Temporal dev server, the real worker (approval.identity = proven, a policy
naming alice and bob with SSH keys), real PostgreSQL and Channel Access IOC, and the real ``tern`` CLI signing with
ssh-keygen. The scenario of issue 22's "done when": alice cannot start a write as another user nor approve her
own; an unsigned decision naming bob and a raw Update naming bob are refused and audited; bob's signed approval
writes once."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest
from temporalio.client import WorkflowUpdateFailedError

from tern.control.channel_access import read_value
from tern.identity.prove import Signer
from tern.models import AgentRunRequest, AgentRunResult, Decision, Plan
from tests.agent_helpers import audit_rows, running_worker, wait_for_state
from tests.identity.keys import public
from tests.test_cli_approve_no_worker import cli_env, tern_cmd
from workflows.agent_run import AgentRunWorkflow

CHANNEL = "SR:MAG:QF:05:CURRENT:SP"


def policy_file(tmp_path: Path, keys: dict[str, Path]) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(
        'identity = "proven"\n'
        '[[rules]]\nkinds = ["control_write", "python", "plan", "memory", "logbook"]\napprovers = ["alice", "bob"]\n'
        + "".join(f'[principals.{n}]\nssh_keys = ["{public(keys[n])}"]\n' for n in ("alice", "bob"))
    )
    return path


async def tern(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, tern_cmd(*args), env=env, capture_output=True, text=True, timeout=180
    )


async def test_proven_identity_on_real_runs(temporal_env, settings, tmp_path: Path, keys: dict[str, Path]) -> None:
    policy = policy_file(tmp_path, keys)
    worker_settings = settings.model_copy(
        update={"approval": settings.approval.model_copy(update={"identity": "proven", "policy_path": policy})}
    )
    before = read_value(CHANNEL)
    plan = tmp_path / "plan.json"
    target = round(before + 0.5, 4)
    plan.write_text(json.dumps({"steps": [{"id": "w", "kind": "control_write", "channel": CHANNEL, "value": target}]}))
    # a CLI configured as declared, without the policy file: it sends names unsigned
    env = {**cli_env(temporal_env, settings, tmp_path), "HOME": str(tmp_path)}  # no ~/.ssh/id_ed25519
    proven_env = {**env, "TERN_APPROVAL__IDENTITY": "proven", "TERN_APPROVAL__POLICY_PATH": str(policy)}
    async with running_worker(temporal_env.client, worker_settings):
        # alice's key, rf-bot's name: refused before anything starts
        as_bot = await tern(
            proven_env, "run", "q", "--plan", str(plan), "--user", "rf-bot", "--key", str(keys["alice"])
        )
        assert as_bot.returncode == 2 and "is alice's in the approval policy" in as_bot.stderr, as_bot.stderr
        no_key = await tern(proven_env, "run", "q", "--plan", str(plan))
        assert no_key.returncode == 2 and "sign with --key PATH" in no_key.stderr, no_key.stderr
        started = await tern(proven_env, "run", "q", "--plan", str(plan), "--key", str(keys["alice"]), "--json")
        assert started.returncode == 0, started.stderr
        run_id = json.loads(started.stdout)["workflow_id"]
        handle = temporal_env.client.get_workflow_handle(run_id, result_type=AgentRunResult)
        st = await wait_for_state(handle, "awaiting_approval")
        assert st.user == "alice" and st.pending is not None and st.pending.identity == "proven"
        own = await tern(proven_env, "approve", run_id, "--key", str(keys["alice"]))
        assert own.returncode == 2 and "two-person rule" in own.stderr, own.stderr
        # the declared CLI sends bob's name unsigned: the worker refuses it
        unsigned = await tern(env, "approve", run_id, "--as", "bob")
        assert unsigned.returncode == 2 and "a proof of identity is required" in unsigned.stderr, unsigned.stderr
        with pytest.raises(WorkflowUpdateFailedError) as raw:
            await handle.execute_update(
                AgentRunWorkflow.decide, Decision(request_id=st.pending.request_id, approver="bob", approved=True)
            )
        assert "a proof of identity is required" in str(raw.value.cause)
        shown = await tern(proven_env, "show", run_id)
        assert "digest " in shown.stdout and "--key PATH" in shown.stdout, shown.stdout
        bob = await tern(proven_env, "approve", run_id, "--key", str(keys["bob"]), "--json")
        assert bob.returncode == 0, bob.stderr
        assert json.loads(bob.stdout)["approver"] == "bob"
        result = await handle.result()
    assert result.status == "completed" and len(result.writes) == 1
    assert read_value(CHANNEL) == pytest.approx(target)
    rows = await audit_rows(settings.dsn, run_id)
    kinds = [r["event_kind"] for r in rows]
    assert kinds[0] == "run_started" and kinds.count("decision_refused") == 3 and kinds.count("write") == 1
    decision = next(json.loads(r["details"]) for r in rows if r["event_kind"] == "decision")
    assert decision["proof"]["principal"] == "bob" and decision["proof"]["key"].startswith("SHA256:")
    refused = [r for r in rows if r["event_kind"] == "decision_refused"]
    assert {r["actor"] for r in refused} == {"alice", "bob"}


async def test_a_service_vouches_only_for_the_users_the_policy_names(
    temporal_env, settings, tmp_path: Path, keys: dict[str, Path]
) -> None:
    """The Matrix bridge's path (client_decider, plan starts) signing as service principal matrix-bridge, which
    the policy lets act for bob and carol from Matrix only: bob's decision counts as bob's; alice's is refused
    (she is outside its users) and so is a start for her; the same key speaking for Slack is refused."""
    from starters.chat_client import client_decider, plan_starter
    from starters.client import TernClient
    from tern.chat.bridge import DecisionRefused

    policy = tmp_path / "policy.toml"
    policy.write_text(
        'identity = "proven"\n[[rules]]\nkinds = ["control_write"]\napprovers = ["alice", "bob", "carol"]\n'
        + "".join(f'[principals.{n}]\nssh_keys = ["{public(keys[n])}"]\n' for n in ("alice", "bob", "carol"))
        + f'[principals.matrix-bridge]\nkind = "service"\nssh_keys = ["{public(keys["matrix-bridge"])}"]\n'
        'users = ["bob", "carol"]\nsurfaces = ["matrix"]\n'
    )
    approval = settings.approval.model_copy(
        update={
            "identity": "proven",
            "policy_path": policy,
            "service_name": "matrix-bridge",
            "service_key_path": keys["matrix-bridge"],
        }
    )
    service = settings.model_copy(update={"approval": approval})
    before = read_value(CHANNEL)
    async with running_worker(temporal_env.client, service):
        client = TernClient(temporal_env.client, service)
        refused_start = await plan_starter(client, "matrix")("alice", "demo")
        assert "start refused" in ((await client.result(refused_start)).error or "")
        bob_start = await plan_starter(client, "matrix")("carol", "demo")
        assert await client.status(bob_start)  # carol's run started (the bundled demo plan)
        await temporal_env.client.get_workflow_handle(bob_start).terminate("not needed")
        # a write run started by carol (signed with her own key) waits for a second person
        req_run = await client.start_run(
            AgentRunRequest(
                user="carol",
                query="q",
                plan=Plan.model_validate(
                    {
                        "steps": [
                            {"id": "w", "kind": "control_write", "channel": CHANNEL, "value": round(before + 0.25, 4)}
                        ]
                    }
                ),
            ),
            signer=Signer(name="carol", key=keys["carol"]),
        )
        st = await wait_for_state(req_run, "awaiting_approval")
        assert st.pending is not None
        matrix = client_decider(client, surface="matrix")
        with pytest.raises(DecisionRefused, match="may not act for 'alice'"):
            await matrix(req_run.id, st.pending.request_id, "alice", True, "")
        with pytest.raises(DecisionRefused, match="may not speak for surface 'slack'"):
            await client_decider(client, surface="slack")(req_run.id, st.pending.request_id, "bob", True, "")
        said = await matrix(req_run.id, st.pending.request_id, "bob", True, "from the room")
        assert "approved" in said and "bob" in said
        result = await client.result(req_run.id)
    assert result.status == "completed" and result.approvals[-1].approver == "bob"
    rows = await audit_rows(settings.dsn, req_run.id)
    decision = next(json.loads(r["details"]) for r in rows if r["event_kind"] == "decision")
    assert decision["proof"]["signer"] == "matrix-bridge" and decision["proof"]["signer_kind"] == "service"
