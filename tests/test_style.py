"""The tree stays linted and formatted (ruff, configured in pyproject.toml): a change that is not is a failure
here, not a review comment. Fix with ``ruff check --fix . && ruff format .``."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _ruff() -> str:
    found = Path(sys.executable).parent / "ruff"
    if found.exists():
        return str(found)
    path = shutil.which("ruff")
    if path is None:
        pytest.fail("ruff is not installed (it is in the dev extra: ./dev setup)")
    return path


@pytest.mark.parametrize("args", [["check", "."], ["format", "--check", "."]], ids=["lint", "format"])
def test_ruff(args: list[str]) -> None:
    proc = subprocess.run([_ruff(), *args], cwd=ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
