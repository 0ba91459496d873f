"""How long ``tern --help`` takes, as a ratio to starting the interpreter alone (issue 28: 0.66 s median measured,
0.53 s of it imports; target under 0.3 s).

Each of ``--runs`` rounds times, as fresh processes and interleaved so that machine load hits both alike:

- ``python -c pass``: the interpreter's own start (the baseline);
- ``python -m starters.cli --help``: the ``tern`` entry point's module printing the help of every command;
- with ``--compare DIR``, the same command from another checkout (e.g. a worktree of an earlier commit).

Reports the median of each in seconds, the difference (what Tern's imports and typer cost) and the ratio, and which
heavy modules the help loaded (``-X importtime``: none of ``tern.config``, the models, pydantic, temporalio should
be). Run: ``.venv/bin/python -m benchmarks.cli_startup [--runs 10] [--compare DIR] [--json results.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("tern.config", "tern.models.run", "tern.models.plan", "pydantic", "pydantic_settings", "temporalio")


def _env(root: Path = ROOT) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("TERN_")}
    return env | {"PYTHONPATH": str(root)}


def _time(cmd: list[str], root: Path = ROOT) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=_env(root), cwd=root, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def heavy_imports() -> list[str]:
    """The modules of :data:`HEAVY` (or their submodules) that ``tern --help`` imports (``-X importtime``)."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "starters.cli", "--help"],
        env=_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    return sorted(m for m in loaded if any(m == h or m.startswith(h + ".") for h in HEAVY))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="rounds (each: one baseline, one help), >= 1")
    parser.add_argument("--compare", type=Path, help="another checkout whose `tern --help` is timed alongside")
    parser.add_argument("--json", type=Path, help="write the figures to this file as JSON")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be >= 1")
    if args.compare is not None and not (args.compare / "starters" / "cli.py").is_file():
        parser.error(f"--compare {args.compare}: no starters/cli.py there")
    base, helps, other = [], [], []
    for i in range(args.runs):
        base.append(_time([sys.executable, "-c", "pass"]))
        helps.append(_time([sys.executable, "-m", "starters.cli", "--help"]))
        if args.compare is not None:
            other.append(_time([sys.executable, "-m", "starters.cli", "--help"], args.compare))
        print(f"run {i + 1}/{args.runs}: pass {base[-1]:.3f} s, tern --help {helps[-1]:.3f} s", file=sys.stderr)
    out = {
        "runs": args.runs,
        "python_pass_median_s": round(statistics.median(base), 4),
        "tern_help_median_s": round(statistics.median(helps), 4),
        "tern_help_minus_pass_s": round(statistics.median(helps) - statistics.median(base), 4),
        "ratio_help_to_pass": round(statistics.median(helps) / statistics.median(base), 2),
        "heavy_imports": heavy_imports(),
        **(
            {
                "compare": str(args.compare),
                "compare_help_median_s": round(statistics.median(other), 4),
                "ratio_compare_to_pass": round(statistics.median(other) / statistics.median(base), 2),
            }
            if other
            else {}
        ),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "raw": {
            "python_pass_s": [round(x, 4) for x in base],
            "tern_help_s": [round(x, 4) for x in helps],
            "compare_help_s": [round(x, 4) for x in other],
        },
    }
    print(json.dumps({k: v for k, v in out.items() if k != "raw"}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
