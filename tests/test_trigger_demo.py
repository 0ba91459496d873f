"""The issue-12 demo on the embedded stack, as a user types it: `tern up` (its `triggers` component is the trigger
monitor), `tern trigger add rf-trip --channel SR:RF:CAVITY:01:POWER:REV --above 40 --question "..."`, then
`tern sim trip cavity1`: one run starts, the worker's LLM (the scripted OpenAI-compatible server of
tests/llm_script.py) plans it, it reads the channel and answers; its audit records the trigger."""

from __future__ import annotations

import asyncio
import json
import os
import time

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from tern.config import TernSettings
from tern.embedded.net import free_port
from tern.embedded.stack import EmbeddedStack
from tern.models import AgentRunResult
from tests.agent_helpers import audit_rows
from tests.llm_script import plan_json, scripted_llm
from tests.trigger_helpers import ROOT, runs_with_prefix, tern

QUESTION = "Cavity 1 reflected power crossed 40 kW: what happened and what should we do?"
CHANNEL = "SR:RF:CAVITY:01:POWER:REV"


async def test_sim_trip_fires_the_demo_question_trigger_on_the_embedded_stack(tmp_path, monkeypatch) -> None:
    async with scripted_llm() as llm:
        llm.default["planner"] = plan_json(
            {"id": "read", "kind": "channel_read", "channels": [CHANNEL]}, {"id": "answer", "kind": "respond"}
        )
        llm.default["answer"] = "Cavity 1 tripped: reflected power read as reported. Check the tuner."
        llm_env = {"TERN_LLM__PROVIDER": "openai", "TERN_LLM__URL": f"{llm.base}/v1", "TERN_LLM__MODEL": "scripted"}
        for k, v in llm_env.items():
            monkeypatch.setenv(k, v)  # the stack's worker inherits them
        settings = TernSettings(
            data_dir=tmp_path / "tern",
            database={"pg_port": free_port()},
            control={"ca_server_port": free_port()},
            archiver={"port": free_port(), "backfill_days": 0.01},
            temporal={"address": f"127.0.0.1:{free_port()}", "ui_port": free_port(), "task_queue": "tq-demo"},
            ariel={"api_port": free_port()},
            worker={"http_port": free_port()},
        )
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("TERN_", "TEMPORAL_"))},
            **llm_env,
            "PYTHONPATH": str(ROOT),
            "TERN_DATA_DIR": str(settings.data_dir),
            "TERN_DATABASE__PG_PORT": str(settings.database.pg_port),
            "TERN_CONTROL__CA_SERVER_PORT": str(settings.control.ca_server_port),
            "TERN_TEMPORAL__ADDRESS": settings.temporal.address,
            "TERN_TEMPORAL__TASK_QUEUE": "tq-demo",
        }
        stack = EmbeddedStack(settings)
        try:
            st = await asyncio.to_thread(stack.up)
            states = {c.name: c.state for c in st.components}
            assert states["triggers"] == "running", (states, stack._tail("triggers"))
            added = await asyncio.to_thread(
                tern, env, "trigger", "add", "rf-trip", "--channel", CHANNEL, "--above", "40", "--question", QUESTION
            )
            assert added.returncode == 0, added.stderr
            await asyncio.sleep(3 * settings.triggers.poll_s)  # the monitor picks it up and sees the first value
            tripped = await asyncio.to_thread(tern, env, "sim", "trip", "cavity1")
            assert tripped.returncode == 0, tripped.stderr
            client = await Client.connect(settings.temporal.address, data_converter=pydantic_data_converter)
            deadline = time.monotonic() + 60
            while not (found := await runs_with_prefix(client, "trigger-rf-trip-")):
                assert time.monotonic() < deadline, stack._tail("triggers", 40)
                await asyncio.sleep(0.5)
            assert len(found) == 1 and found[0].startswith("trigger-rf-trip-SR_RF_CAVITY_01_POWER_REV-"), found
            handle = client.get_workflow_handle(found[0], result_type=AgentRunResult)
            result = await asyncio.wait_for(handle.result(), timeout=120)
            assert result.status == "completed", (result.error, stack._tail("worker", 40))
            assert result.query == QUESTION and result.plan and result.plan[0].cause == "question"
            read = next(s for s in result.steps if s.step_id == "read")
            assert read.readings and read.readings[0].value is not None
            rows = [r for r in await audit_rows(settings.dsn, found[0]) if r["event_kind"] == "run_triggered"]
            assert len(rows) == 1 and rows[0]["value"] == pytest.approx(45.0)
            listed = await asyncio.to_thread(tern, env, "trigger", "list", "--json")
            assert [t["name"] for t in json.loads(listed.stdout)] == ["rf-trip"], listed.stderr
            assert len(await runs_with_prefix(client, "trigger-rf-trip-")) == 1  # the decay did not fire again
        finally:
            await asyncio.to_thread(stack.down)
    assert all(c.state == "stopped" for c in stack.status().components)
