"""The structure of a parallel ``./dev test`` run (docs/development/tests.md, "Parallel workers"): the ``alone``
phase selects exactly the tests named in ``ALONE_TESTS`` (a renamed test must not drop out of it silently), the
parallel phase the rest, and the ``dev`` script's exit status combines the two phases."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ALONE_TESTS

ROOT = Path(__file__).resolve().parent.parent


def _collect_only(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``pytest --collect-only -q ARGS`` (no cache, no xdist) at the repository root, in ``env``."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _collect(alone: str | None, files: list[str], *args: str) -> set[str]:
    """Node ids that ``pytest --collect-only ARGS`` selects from ``files`` with ``TERN_TEST_ALONE=alone``."""
    env = {k: v for k, v in os.environ.items() if k != "TERN_TEST_ALONE" and not k.startswith("PYTEST_XDIST")}
    if alone is not None:
        env["TERN_TEST_ALONE"] = alone
    proc = _collect_only(env, *args, *files)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {line for line in proc.stdout.splitlines() if "::" in line}


@pytest.mark.slow  # four collections of the whole files in subprocesses (~11 s)
def test_alone_phase_selects_exactly_the_named_tests_and_the_other_phase_the_rest() -> None:
    files = sorted(
        {str(p.relative_to(ROOT)) for name in ALONE_TESTS for p in ROOT.glob(f"tests/**/{name.split('::')[0]}")}
    )
    assert len(files) == len({name.split("::")[0] for name in ALONE_TESTS}), files  # each named file exists once
    everything = _collect(None, files)
    only = _collect("only", files)
    skip = _collect("skip", files)
    # Independent of the conftest's matching: the file name and test name of each selected node id.
    assert {f"{Path(n.split('::')[0]).name}::{n.split('::')[1]}" for n in only} == set(ALONE_TESTS)
    assert only | skip == everything and not only & skip and len(everything) > len(ALONE_TESTS)
    # every alone test is slow: `./dev test --fast` runs one phase on its workers, with none of them
    assert not _collect(None, files, "-m", "not slow") & only


def test_dev_fast_runs_one_phase_on_its_workers(tmp_path: Path) -> None:
    """``./dev test --fast`` (``ONE_PHASE=1``) runs no alone phase: one pytest run, on the workers when asked."""
    functions = _dev_functions(tmp_path)
    calls = tmp_path / "calls"
    env = {**_environ(), "CALLS": str(calls), "ALONE_RC": "9", "REST_RC": "0"}
    for workers, expected in (
        ("3", "unset -m pytest -n 3 --dist loadgroup -m not slow -q"),
        ("0", "unset -m pytest -m not slow -q"),
    ):
        calls.unlink(missing_ok=True)
        script = f'{functions}\nVENV={tmp_path}\nparallel_args {workers} -q\nONE_PHASE=1 run_pytest -m "not slow" -q\n'
        proc = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert calls.read_text().splitlines() == [expected], workers


def test_an_unknown_phase_is_a_usage_error_naming_the_variable() -> None:
    env = {**_environ(), "TERN_TEST_ALONE": "first"}
    proc = _collect_only(env, "tests/test_suite_phases.py")
    assert proc.returncode == 4, proc.stdout[-2000:]  # pytest's usage error
    assert "TERN_TEST_ALONE" in proc.stderr and "'first'" in proc.stderr


FAKE_PYTHON = """#!/usr/bin/env bash
echo "${TERN_TEST_ALONE:-unset} $*" >> "$CALLS"
if [ "${TERN_TEST_ALONE:-}" = only ]; then exit "$ALONE_RC"; else exit "$REST_RC"; fi
"""


def _dev_functions(venv: Path) -> str:
    """The ``parallel_args`` and ``run_pytest`` functions of the ``dev`` script, with a stand-in interpreter at
    ``venv/bin/python`` that appends its phase and arguments to ``$CALLS`` and exits with ``$ALONE_RC`` (alone phase)
    or ``$REST_RC``."""
    (venv / "bin").mkdir()
    fake = venv / "bin" / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    source = (ROOT / "dev").read_text()
    parts = []
    for name in ("parallel_args", "run_pytest"):
        start = source.index(f"\n{name}() {{")
        parts.append(source[start : source.index("\n}\n", start) + 3])
    return "\n".join(parts)


def _environ() -> dict[str, str]:
    """This process's environment without ``TERN_TEST_ALONE``: inside a parallel ``./dev test`` it is set to this
    test's own phase, which the stand-in interpreter would record instead of the phase under test."""
    return {k: v for k, v in os.environ.items() if k != "TERN_TEST_ALONE"}


@pytest.mark.parametrize(
    ("alone_rc", "rest_rc", "expected"),
    [(0, 0, 0), (5, 0, 0), (0, 5, 0), (5, 5, 5), (1, 0, 1), (0, 1, 1), (1, 2, 1), (5, 1, 1)],
)
def test_dev_runs_the_alone_phase_then_the_workers_and_combines_their_status(
    tmp_path: Path, alone_rc: int, rest_rc: int, expected: int
) -> None:
    """``run_pytest`` from the ``dev`` script itself (its functions, not the whole script, which would set up the
    environment), with a stand-in interpreter that records its calls and exits with the given status."""
    functions = _dev_functions(tmp_path)
    calls = tmp_path / "calls"
    script = f'{functions}\nVENV={tmp_path}\nparallel_args 3 -q\nrun_pytest -m "not slow" -q\n'
    env = {**_environ(), "CALLS": str(calls), "ALONE_RC": str(alone_rc), "REST_RC": str(rest_rc)}
    proc = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == expected, proc.stderr
    assert calls.read_text().splitlines() == [
        "only -m pytest -m not slow -q",
        "skip -m pytest -n 3 --dist loadgroup -m not slow -q",
    ]


def test_dev_passes_a_run_that_chooses_its_own_workers_on_in_one_phase(tmp_path: Path) -> None:
    functions = _dev_functions(tmp_path)
    calls = tmp_path / "calls"
    for args in ("-n 2 tests/x.py", "-p no:xdist tests/x.py"):
        calls.unlink(missing_ok=True)
        script = f"{functions}\nVENV={tmp_path}\nparallel_args 3 {args}\nrun_pytest {args}\n"
        env = {**_environ(), "CALLS": str(calls), "ALONE_RC": "9", "REST_RC": "0"}
        proc = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert calls.read_text().splitlines() == [f"unset -m pytest {args}"]


def test_dev_runs_the_alone_phase_then_three_workers_by_default_and_serially_when_asked(tmp_path: Path) -> None:
    """CI's ``./dev test`` (no ``TERN_TEST_WORKERS``) runs the alone phase, then 3 workers; ``TERN_TEST_WORKERS=0``
    is one serial pytest run, the alone tests included."""
    functions = _dev_functions(tmp_path)
    calls = tmp_path / "calls"
    default = next(
        line.split("=", 1)[1] for line in (ROOT / "dev").read_text().splitlines() if line.startswith("DEFAULT_WORKERS=")
    )
    assert default == "3"
    env = {**_environ(), "CALLS": str(calls), "ALONE_RC": "0", "REST_RC": "0"}
    for workers, expected in (
        (default, ["only -m pytest -q", "skip -m pytest -n 3 --dist loadgroup -q"]),
        ("0", ["unset -m pytest -q"]),
    ):
        calls.unlink(missing_ok=True)
        script = f"{functions}\nVENV={tmp_path}\nparallel_args {workers} -q\nrun_pytest -q\n"
        proc = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert calls.read_text().splitlines() == expected, workers


@pytest.mark.slow  # a pytest run on three workers in a subprocess
def test_a_files_tests_sharing_a_module_fixture_run_on_one_worker(tmp_path: Path) -> None:
    """The conftest marks every test that uses a module-scoped fixture ``xdist_group("<file>")`` and ``./dev test``
    runs ``--dist loadgroup``: the file's tests must land on one worker (a stack started once per file, as in
    ``test_cli_demo.py``, is only up on that worker). pytest 9.2 silently broke this with pytest-xdist 3.8
    (pytest-xdist issue 1386: the tests were spread over the workers and the stack tests failed); the pin in
    pyproject.toml keeps it, and this test fails on the combination that breaks it."""
    (tmp_path / "conftest.py").write_text("from tests.conftest import pytest_collection_modifyitems  # noqa: F401\n")
    (tmp_path / "test_shared.py").write_text(
        "import pytest\n\n\n@pytest.fixture(scope='module')\ndef shared():\n    return 1\n\n\n"
        "@pytest.mark.parametrize('n', range(12))\ndef test_uses_it(shared, n):\n    assert shared == 1\n"
    )
    (tmp_path / "test_free.py").write_text(
        "import pytest\n\n\n@pytest.mark.parametrize('n', range(12))\ndef test_free(n):\n    assert n >= 0\n"
    )
    env = {k: v for k, v in _environ().items() if not k.startswith("PYTEST_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "-n", "3", "--dist", "loadgroup", "."],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    workers = {
        line.split("]", 1)[0].lstrip("[")
        for line in proc.stdout.splitlines()
        if line.startswith("[gw") and "test_shared.py::" in line and "PASSED" in line
    }
    ran = sum(1 for line in proc.stdout.splitlines() if "test_shared.py::" in line and "PASSED" in line)
    assert ran == 12 and len(workers) == 1, (workers, proc.stdout[-3000:])
