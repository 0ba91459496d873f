"""Bad input to ``tern trigger add`` and ``tern sim trip``, as a user types it: exit 2 with the reason, before
anything is contacted (Temporal, PostgreSQL and the IOC point at free ports where nothing listens: a command that
tried to connect would exit 1). The cases that need the services to know (an unknown channel, a name in use, an
unknown trigger on remove) are in tests/test_trigger_channel.py and tests/test_trigger_schedule.py."""

from __future__ import annotations

import pytest

from tests.conftest import env_without_services
from tests.trigger_helpers import READ_PLAN, tern, write_plan

CHANNEL = "SR:RF:CAVITY:01:POWER:REV"


@pytest.fixture(scope="module")
def no_stack(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = env_without_services(tmp_path_factory.mktemp("nostack"), COLUMNS="200")
    return {k: v for k, v in env.items() if not k.startswith("TERN_LLM_")}


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(write_plan(tmp_path_factory.mktemp("plan") / "read.json", READ_PLAN))


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["t1", "--cron", "61 * * * *"], "cron expression '61 * * * *' does not parse"),
        (["t1", "--cron", "every day"], "has 2 fields; it needs 5"),
        (["t1", "--every", "ten minutes"], "interval 'ten minutes' does not parse"),
        (["t1", "--every", "0s"], "outside 1s .. 366d"),
        (["Bad_Name", "--every", "10m"], "trigger name 'Bad_Name'"),
        (["t1", "--every", "10m", "--channel", CHANNEL, "--above", "40"], "exactly one of --cron, --every"),
        (["t1"], "exactly one of --cron, --every, --channel, --webhook"),
        (["t1", "--channel", CHANNEL], "exactly one of --above, --below"),
        (["t1", "--channel", CHANNEL, "--above", "40", "--below", "2"], "exactly one of --above, --below"),
        (["t1", "--channel", CHANNEL, "--on-change", "--hysteresis", "1"], "--hysteresis goes with --above"),
        (["t1", "--channel", CHANNEL, "--above", "40", "--hysteresis", "-1"], "--hysteresis"),
        (["t1", "--webhook", "--above", "40"], "go with --channel"),
        (["t1", "--webhook"], "--webhook needs --key-id KEY"),  # issue 22: no trigger any key may fire
        (["t1", "--webhook", "--key-id", "ops-bot"], "--key-id 'ops-bot' is not a key of TERN_CHAT__WEBHOOK_SECRETS"),
        (["t1", "--webhook", "--key-id", "tern-notify"], "the outbound notification key id"),
        (["t1", "--every", "10m", "--key-id", "ops-bot"], "--key-id goes with --webhook"),
    ],
)
def test_bad_trigger_specs_exit_2_with_the_reason(no_stack, plan, args: list[str], reason: str) -> None:
    res = tern(no_stack, "trigger", "add", *args, "--plan", plan)
    assert res.returncode == 2 and reason in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


def test_unknown_plan_file_exits_2(no_stack, tmp_path) -> None:
    res = tern(no_stack, "trigger", "add", "t1", "--every", "10m", "--plan", str(tmp_path / "missing.yaml"))
    assert res.returncode == 2 and "missing.yaml" in res.stderr, res.stderr


def test_a_plan_naming_an_unknown_channel_exits_2(no_stack, tmp_path) -> None:
    bad = write_plan(tmp_path / "bad.json", {"steps": [{"id": "r", "kind": "channel_read", "channels": ["NO:SUCH"]}]})
    res = tern(no_stack, "trigger", "add", "t1", "--every", "10m", "--plan", str(bad))
    assert res.returncode == 2 and "NO:SUCH" in res.stderr, res.stderr


def test_a_question_without_an_llm_exits_2_naming_the_settings(no_stack) -> None:
    res = tern(no_stack, "trigger", "add", "t1", "--every", "10m", "--question", "What happened?")
    assert res.returncode == 2 and "TERN_LLM__PROVIDER" in res.stderr, res.stderr


def test_question_and_plan_together_exit_2(no_stack, plan) -> None:
    res = tern(no_stack, "trigger", "add", "t1", "--every", "10m", "--question", "Why?", "--plan", plan)
    assert res.returncode == 2 and "exactly one of --question and --plan" in res.stderr, res.stderr


@pytest.mark.parametrize(("target", "reason"), [("cavity0", "cavity1 .. cavity9"), ("cavity7", "not in the limits")])
def test_sim_trip_of_an_unknown_target_exits_2(no_stack, target: str, reason: str) -> None:
    res = tern(no_stack, "sim", "trip", target)
    assert res.returncode == 2 and reason in res.stderr, res.stderr


def test_an_unreachable_simulator_exits_1(no_stack) -> None:
    res = tern(no_stack, "sim", "trip", "cavity1", timeout=60)
    assert res.returncode == 1 and "is `tern up` running?" in res.stderr, res.stderr
