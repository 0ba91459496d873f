"""benchmarks/load.py refuses bad arguments with exit 2 and the reason, before starting anything."""

from __future__ import annotations

import pytest

from benchmarks.load import _args


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["--runs", "0"], "--runs must be 1..1000"),
        (["--write-share", "1.5"], "--write-share must be within 0..1"),
        (["--write-share", "0.8", "--python-share", "0.5"], "must not exceed 1"),
        (["--runs", "500", "--write-share", "0.5"], "at most 100 write runs"),
        (["--kill-worker", "-1"], "--kill-worker must be 0..50"),
        (["--kill-target", "second"], "--kill-target second needs --second-worker"),
        (["--kill-in-sandbox", "51"], "--kill-in-sandbox must be 0..50"),
        (["--restart-docker", "2", "--python-share", "0"], "--restart-docker needs python runs"),
        (["--python-seconds", "61"], "--python-seconds must be 0..60"),
        (["--stagger", "-1"], "--stagger must be 0..600"),
    ],
)
def test_bad_arguments_exit_2_naming_them(argv: list[str], reason: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _args(argv)
    assert exc.value.code == 2
    assert reason in capsys.readouterr().err


def test_defaults_are_valid() -> None:
    a = _args([])
    assert a.runs == 200 and a.kill_worker == 0
