"""``tern ask`` refuses bad input before contacting anything (exit 2, one line naming the setting or limit); with
input and an LLM configured it goes on to Temporal (exit 1 here: nothing listens)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tern.models.limits import MAX_QUERY_CHARS
from tests.conftest import env_without_services

ROOT = Path(__file__).resolve().parent.parent


def tern(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "starters.cli", *args], env=env, capture_output=True, text=True, timeout=120, cwd=ROOT
    )


@pytest.fixture(scope="module")
def no_stack(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = env_without_services(tmp_path_factory.mktemp("ask"), COLUMNS="200")
    return {k: v for k, v in env.items() if not k.startswith("TERN_LLM_")}


def test_without_a_provider_exits_2_naming_the_settings(no_stack) -> None:
    res = tern(no_stack, "ask", "What is RF cavity 1 doing?")
    assert res.returncode == 2, res.stderr
    assert "TERN_LLM__PROVIDER" in res.stderr and "TERN_LLM__URL" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize(
    ("question", "expected"),
    [("   ", "the question is empty"), ("x" * (MAX_QUERY_CHARS + 1), f"the limit is {MAX_QUERY_CHARS}")],
)
def test_empty_or_over_long_question_exits_2(no_stack, question, expected) -> None:
    env = {**no_stack, "TERN_LLM__PROVIDER": "openai", "TERN_LLM__URL": "http://127.0.0.1:9/v1"}
    res = tern(env, "ask", question)
    assert res.returncode == 2 and expected in res.stderr, res.stderr


def test_good_input_goes_on_to_temporal(no_stack) -> None:
    env = {**no_stack, "TERN_LLM__PROVIDER": "anthropic", "TERN_LLM__API_KEY": "sk-ant-never-printed"}
    res = tern(env, "ask", "What is RF cavity 1 doing?", "--plan-approval", "--approver", "bob")
    assert res.returncode == 1 and "cannot reach" in res.stderr.lower(), res.stderr
    assert "sk-ant-never-printed" not in res.stdout + res.stderr


def test_demo_ask_without_a_provider_exits_2_before_starting_the_stack(no_stack) -> None:
    res = tern(no_stack, "demo", "--ask")
    assert res.returncode == 2 and "TERN_LLM__PROVIDER" in res.stderr, res.stderr
    assert not list(Path(no_stack["TERN_DATA_DIR"]).iterdir())  # no stack was started in the data directory
