"""Bad input to the ``tern`` CLI, as a user types it (issue 16, defect 4): every case exits 2 with ONE line
naming the field and its limit, no Python traceback, and starts nothing.

The CLI runs as a subprocess (``python -m starters.cli``) with Temporal and PostgreSQL pointed at free loopback
ports where nothing listens: a command that tried to connect (to start a run) would answer "cannot reach"
with exit 1, so exit 2 also proves the input was refused before anything was contacted.
"""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tern.models.limits import (
    MAX_APPROVAL_TIMEOUT_S,
    MAX_COMMENT_CHARS,
    MAX_PLAN_BYTES,
    MAX_PLAN_DEPTH,
    MAX_PLAN_NODES,
    MAX_QUERY_CHARS,
    MAX_RUN_ID_CHARS,
    MAX_SEARCH_QUERY_CHARS,
    MAX_USER_CHARS,
)
from tests.conftest import env_without_services

ROOT = Path(__file__).resolve().parent.parent
WRITE = '{"steps":[{"kind":"control_write","channel":"SR:RF:CAVITY:01:VOLTAGE:SP","value":%s}]}'
OK_PLAN = '{"steps":[{"kind":"respond"}]}'


@pytest.fixture(scope="module")
def no_stack(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for the CLI with no Temporal, PostgreSQL or IOC listening on the configured ports."""
    return env_without_services(tmp_path_factory.mktemp("nostack"), TERN_APPROVAL__APPROVERS="[]", COLUMNS="100")


def tern(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "starters.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def _plan_files(d: Path) -> dict[str, bytes]:
    deep = "[" * 100_000 + "]" * 100_000
    bomb = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    bomb += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    files = {
        "latin1.json": b'{"steps":[{"kind":"respond","instructions":"caf\xe9"}]}',
        "latin1.yaml": b"steps:\n  - kind: respond\n    instructions: caf\xe9\n",
        "deep.json": deep.encode(),
        "deep.yaml": f"steps: {deep}\n".encode(),
        "digits400.json": (WRITE % ("9" * 400)).encode(),
        "digits400.yaml": (
            f"steps:\n  - kind: control_write\n    channel: SR:RF:CAVITY:01:VOLTAGE:SP\n    value: {'9' * 400}\n"
        ).encode(),
        "digits5000.json": (WRITE % ("9" * 5000)).encode(),
        "big.json": b'{"steps":[{"kind":"respond","instructions":"' + b"x" * MAX_PLAN_BYTES + b'"}]}',
        "bomb.yaml": ("\n".join(bomb) + "\nsteps: [*a7]\n").encode(),
        "self.yaml": b"steps: &s [*s]\n",
        "longvalue.json": (WRITE % ('"' + "x" * 100_000 + '"')).encode(),
        "broken.yaml": b'steps: [\n  {kind: "x"\n',
        "ok.json": OK_PLAN.encode(),
    }
    for name, data in files.items():
        (d / name).write_bytes(data)
    return files


# (case id, CLI arguments with {d} for the plan folder, words the one line must contain)
RUN_CASES = [
    ("invalid-utf8-json", ["q", "--plan", "{d}/latin1.json"], ["plan file", "not UTF-8", "0xe9"]),
    ("invalid-utf8-yaml", ["q", "--plan", "{d}/latin1.yaml"], ["plan file", "not UTF-8", "0xe9"]),
    ("deep-json", ["q", "--plan", "{d}/deep.json"], ["plan file", f"deeper than {MAX_PLAN_DEPTH} levels"]),
    ("deep-yaml", ["q", "--plan", "{d}/deep.yaml"], ["plan file", f"deeper than {MAX_PLAN_DEPTH} levels"]),
    ("self-referring-yaml", ["q", "--plan", "{d}/self.yaml"], ["plan file", f"deeper than {MAX_PLAN_DEPTH}"]),
    ("yaml-alias-bomb", ["q", "--plan", "{d}/bomb.yaml"], ["plan file", f"more than {MAX_PLAN_NODES} values"]),
    ("400-digits-json", ["q", "--plan", "{d}/digits400.json"], ["steps.0.value", "beyond the float range"]),
    ("400-digits-yaml", ["q", "--plan", "{d}/digits400.yaml"], ["steps.0.value", "beyond the float range"]),
    ("5000-digits-json", ["q", "--plan", "{d}/digits5000.json"], ["plan file", "4300 digits"]),
    ("plan-over-size", ["q", "--plan", "{d}/big.json"], ["plan file", f"larger than {MAX_PLAN_BYTES} bytes"]),
    ("100k-string-value", ["q", "--plan", "{d}/longvalue.json"], ["steps.0.value", "must be a number"]),
    ("broken-yaml", ["q", "--plan", "{d}/broken.yaml"], ["plan file", "not valid YAML"]),
    ("plan-is-a-folder", ["q", "--plan", "{d}"], ["cannot read plan file"]),
    ("query-5000", ["x" * 5000, "--plan", "{d}/ok.json"], ["the query", f"at most {MAX_QUERY_CHARS} characters"]),
    ("query-100k", ["x" * 100_000, "--plan", "{d}/ok.json"], ["the query", f"at most {MAX_QUERY_CHARS}"]),
    ("query-blank", ["   ", "--plan", "{d}/ok.json"], ["the query is empty"]),
    ("timeout-nan", ["q", "--plan", "{d}/ok.json", "--approval-timeout", "nan"], ["--approval-timeout", "finite"]),
    ("timeout-inf", ["q", "--plan", "{d}/ok.json", "--approval-timeout", "inf"], ["--approval-timeout", "finite"]),
    (
        "timeout-1e12",
        ["q", "--plan", "{d}/ok.json", "--approval-timeout", "1e12"],
        ["--approval-timeout", f"less than or equal to {MAX_APPROVAL_TIMEOUT_S:.0f}"],
    ),
    (
        "timeout-zero",
        ["q", "--plan", "{d}/ok.json", "--approval-timeout", "0"],
        ["--approval-timeout", "greater than 0"],
    ),
    (
        "user-201",
        ["q", "--plan", "{d}/ok.json", "--user", "u" * (MAX_USER_CHARS + 1)],
        ["--user", f"at most {MAX_USER_CHARS} characters"],
    ),
    ("user-empty", ["q", "--plan", "{d}/ok.json", "--user", ""], ["--user", "at least 1 character"]),
    ("user-blank", ["q", "--plan", "{d}/ok.json", "--user", "  "], ["--user", "blank"]),
    ("approver-empty", ["q", "--plan", "{d}/ok.json", "--approver", ""], ["--approver", "at least 1 character"]),
    ("approver-blank", ["q", "--plan", "{d}/ok.json", "--approver", "ops", "--approver", " "], ["--approver", "blank"]),
    (
        "approver-201",
        ["q", "--plan", "{d}/ok.json", "--approver", "a" * (MAX_USER_CHARS + 1)],
        ["--approver", f"at most {MAX_USER_CHARS}"],
    ),
]


@pytest.fixture(scope="module")
def plan_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("plans")
    _plan_files(d)
    return d


def assert_one_line_refusal(proc: subprocess.CompletedProcess[str], words: list[str]) -> None:
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]  # rich's progress ends with a blank
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    assert len(lines[0]) < 600, lines[0][:600]
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert proc.stdout == ""


@pytest.mark.parametrize(("args", "words"), [c[1:] for c in RUN_CASES], ids=[c[0] for c in RUN_CASES])
def test_run_refuses_bad_input_in_one_line_before_connecting(no_stack, plan_dir, args, words) -> None:
    proc = tern(no_stack, "run", *[a.replace("{d}", str(plan_dir)) for a in args])
    assert_one_line_refusal(proc, words)


def test_a_good_run_gets_as_far_as_connecting(no_stack, plan_dir) -> None:
    """The control for the cases above: valid input passes every check and fails only at Temporal (exit 1)."""
    proc = tern(
        no_stack,
        "run",
        "q",
        "--plan",
        str(plan_dir / "ok.json"),
        "--approver",
        "ops",
        "--approval-timeout",
        str(MAX_APPROVAL_TIMEOUT_S),
    )
    assert proc.returncode == 1, proc.stderr
    assert "cannot reach Temporal" in proc.stderr


# other commands: (case id, CLI arguments, words the one line must contain)
OTHER_CASES = [
    ("approve-empty-run-id", ["approve", ""], ["RUN_ID is empty"]),
    ("show-empty-run-id", ["show", " "], ["RUN_ID is empty"]),
    ("audit-empty-run-id", ["audit", ""], ["RUN_ID is empty"]),
    ("export-history-empty-run-id", ["export-history", "", "--out", "h.json"], ["RUN_ID is empty"]),
    ("result-long-run-id", ["result", "r" * (MAX_RUN_ID_CHARS + 1)], ["RUN_ID", f"limit is {MAX_RUN_ID_CHARS}"]),
    ("approve-as-blank", ["approve", "run-1", "--as", " "], ["--as", "blank"]),
    ("approve-as-201", ["approve", "run-1", "--as", "a" * (MAX_USER_CHARS + 1)], ["--as", f"at most {MAX_USER_CHARS}"]),
    (
        "reject-comment-100k",
        ["reject", "run-1", "--comment", "x" * 100_000],
        ["--comment", f"limit is {MAX_COMMENT_CHARS}"],
    ),
    ("ariel-search-100k", ["ariel", "search", "x" * 100_000], ["query", f"limit is {MAX_SEARCH_QUERY_CHARS}"]),
    ("ariel-watch-every-nan", ["ariel", "watch", "{d}/ok.json", "-a", "generic", "--every", "nanh"], ["--every"]),
    ("ariel-watch-every-inf", ["ariel", "watch", "{d}/ok.json", "-a", "generic", "--every", "1e400h"], ["--every"]),
    (
        "ariel-watch-every-30s",
        ["ariel", "watch", "{d}/ok.json", "-a", "generic", "--every", "30s"],
        ["--every", "between 60 s"],
    ),
]


@pytest.mark.parametrize(("args", "words"), [c[1:] for c in OTHER_CASES], ids=[c[0] for c in OTHER_CASES])
def test_other_commands_refuse_bad_input_in_one_line_before_connecting(no_stack, plan_dir, args, words) -> None:
    proc = tern(no_stack, *[a.replace("{d}", str(plan_dir)) for a in args])
    assert_one_line_refusal(proc, words)


USAGE_CASES = [
    ["bogus"],
    ["run"],
    ["up", "--with", "x"],
    ["approve"],
    ["ariel", "bogus"],
    ["ariel", "search"],
    ["pending", "--nope"],
    ["run", "q", "--plan"],
]


@pytest.mark.parametrize("args", USAGE_CASES, ids=[" ".join(a) for a in USAGE_CASES])
def test_usage_errors_print_usage_and_exit_2(no_stack, args) -> None:
    """Whatever typer version is installed: typer 0.29 vendors click as ``typer._click``, which made an
    ``isinstance(exc, click.ClickException)`` test miss and usage errors end in a traceback with exit 1."""
    proc = tern(no_stack, *args)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]
    assert "Error" in proc.stderr and ("Usage: " in proc.stderr or "requires an argument" in proc.stderr), proc.stderr


def test_installed_typer_is_the_declared_range() -> None:
    """The usage-error tests ran against the installed typer; pyproject's range must be the range tested."""
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    declared = next(Requirement(d) for d in deps if Requirement(d).name == "typer")
    assert declared.specifier.contains(version("typer")), (str(declared), version("typer"))
    assert any(s.operator == "<" for s in declared.specifier), f"{declared}: give typer an upper bound"


async def test_ariel_ingest_of_invalid_utf8_exits_2(pg_dsn, tmp_path, no_stack) -> None:
    import asyncio

    bad = tmp_path / "latin1.json"
    bad.write_bytes(b'[{"id": "1", "title": "caf\xe9", "text": "x", "timestamp": "2024-01-01T00:00:00Z"}]')
    env = {**no_stack, "TERN_DATABASE__URL": pg_dsn}
    proc = await asyncio.to_thread(
        tern, env, "ariel", "ingest", str(bad), "--adapter", "generic", "--direct", "--no-enhance"
    )
    assert_one_line_refusal(proc, [str(bad), "not UTF-8"])


def test_docs_list_every_limit() -> None:
    """tern/models/limits.py and the "Input limits" table of the docs (docs/reference/limits.md) are kept in step."""
    import tern.models.limits as limits

    table = (ROOT / "docs" / "reference" / "limits.md").read_text()
    names = [n for n in vars(limits) if n.startswith(("MAX_", "MIN_"))]
    assert names and all(f"`{n}`" in table for n in names), [n for n in names if f"`{n}`" not in table]
