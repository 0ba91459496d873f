"""benchmarks/soak.py refuses bad arguments with exit 2 and the reason, before starting anything, and fits its
memory slopes by least squares (issue 13's soak); benchmarks/floors.py validates its throughput arguments."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.floors import main as floors_main
from benchmarks.soak import _args, lifetime_slopes, slope_mb_per_hour


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["--minutes", "0.5"], "--minutes must be 1..240"),
        (["--minutes", "300"], "--minutes must be 1..240"),
        (["--rate", "0"], "--rate must be 0.01..2"),
        (["--rate", "5"], "--rate must be 0.01..2"),
        (["--redeploy-every", "0.1"], "--redeploy-every must be 0 (none) or 0.5..60"),
        (["--sample-every", "0"], "--sample-every must be 1..60"),
        (["--write-share", "0.8", "--python-share", "0.5"], "must not exceed 1"),
        (["--max-in-flight", "0"], "--max-in-flight must be 1..1000"),
        (["--minutes", "240", "--rate", "2"], "at most 999 write runs"),
    ],
)
def test_bad_arguments_exit_2_naming_them(argv: list[str], reason: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _args(argv)
    assert exc.value.code == 2
    assert reason in capsys.readouterr().err


def test_defaults_are_the_issue_s_soak() -> None:
    a = _args([])
    assert (a.minutes, a.redeploy_every, a.sample_every) == (30, 5, 10)
    assert 2 <= 1 / a.rate <= 3  # one run every 2-3 s
    assert _args(["--redeploy-every", "0"]).redeploy_every == 0  # no redeploys is allowed


def test_slope_is_least_squares_in_mb_per_hour() -> None:
    # 1 MB more every 10 s is 360 MB/hour; noise around a line does not change a least-squares slope much
    line = [(t, 100.0 + t / 10) for t in range(0, 600, 10)]
    assert slope_mb_per_hour(line) == pytest.approx(360.0)
    flat = [(t, 200.0 + (1.0 if (t // 10) % 2 else -1.0)) for t in range(0, 1800, 10)]
    assert abs(slope_mb_per_hour(flat) or 0.0) < 2.0
    # an outlier pulls least squares, not a two-point (first/last) estimate: the fit is over every sample
    spike = [(0.0, 100.0), (10.0, 100.0), (20.0, 100.0), (30.0, 130.0)]
    assert slope_mb_per_hour(spike) == pytest.approx(0.9 * 3600, rel=1e-6)
    assert slope_mb_per_hour([(0.0, 1.0), (10.0, 2.0)]) is None  # too few samples to call it a trend
    assert slope_mb_per_hour([(5.0, 1.0), (5.0, 2.0), (5.0, 3.0)]) is None  # no time span


def test_worker_slopes_are_per_lifetime_so_a_redeploy_is_not_a_leak() -> None:
    # two worker lifetimes, each flat at its own level: a single fit over both would see a slope; per life, none
    samples: list[dict[str, Any]] = [
        {"t_s": float(t), "worker_pid": 11, "worker_rss_mb": 300.0} for t in range(0, 300, 10)
    ]
    samples.append({"t_s": 300.0, "worker_pid": None, "worker_rss_mb": None})  # redeploy in progress
    samples += [{"t_s": float(t), "worker_pid": 12, "worker_rss_mb": 150.0} for t in range(310, 600, 10)]
    out = lifetime_slopes(samples)
    assert [life["pid"] for life in out["lifetimes"]] == [11, 12]
    assert [life["slope_mb_per_h"] for life in out["lifetimes"]] == [0.0, 0.0]
    assert out["weighted_slope_mb_per_h"] == 0.0
    # a leak inside each life shows, weighted by the lifetimes' spans (290 s and 280 s)
    leaking = [s | {"worker_rss_mb": s["worker_rss_mb"] + s["t_s"] / 10} for s in samples if s["worker_pid"]]
    assert lifetime_slopes(leaking)["weighted_slope_mb_per_h"] == pytest.approx(360.0)
    # a fresh worker's one-time rise (imports, caches) is left out with warmup_s; a later trend is not
    rising = [s | {"worker_rss_mb": 500.0 if s["t_s"] % 310 >= 60 else 100.0} for s in samples if s["worker_pid"]]
    assert (lifetime_slopes(rising)["weighted_slope_mb_per_h"] or 0) > 1000
    assert lifetime_slopes(rising, warmup_s=60)["weighted_slope_mb_per_h"] == 0.0
    assert lifetime_slopes(leaking, warmup_s=60)["weighted_slope_mb_per_h"] == pytest.approx(360.0)


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["--throughput", "2000"], "--throughput must be 0..1000"),
        (["--throughput", "10", "--throughput-rounds", "0"], "--throughput-rounds 1..10"),
        (["--repeat", "0"], "nothing to measure"),
    ],
)
def test_floors_refuse_bad_throughput_arguments(
    argv: list[str], reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        floors_main(argv)
    assert exc.value.code == 2
    assert reason in capsys.readouterr().err


def test_server_memory_refuses_bad_arguments_and_fits_per_1000_workflows(capsys: pytest.CaptureFixture[str]) -> None:
    """benchmarks/server_memory.py: exit 2 naming the argument, before starting a server; slope in MB per 1,000."""
    from benchmarks.server_memory import _slope
    from benchmarks.server_memory import main as server_memory_main

    for argv, reason in (
        (["--workflows", "10"], "--workflows 10 is outside 100-100000"),
        (["--batch", "0"], "--batch 0 is outside 1-1000"),
        (["--k", "21"], "--k 21 is outside 0-20"),
    ):
        with pytest.raises(SystemExit) as exc:
            server_memory_main(argv)
        assert exc.value.code == 2
        assert reason in capsys.readouterr().err
    assert _slope([(0, 100.0), (1000, 150.0), (2000, 200.0)]) == pytest.approx(50.0)
    assert _slope([(0, 100.0), (1000, 150.0)]) is None
