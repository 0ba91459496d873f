"""Payload sizes of a 20-step run (issue 26 finding 5): the answer composer's input (``ComposeInput``), one
python step's outcome and the run's result (``AgentRunResult``), serialized by the pydantic data converter as the
worker does, before (every step result whole) and after :mod:`tern.agent.payload`.

The run is synthetic and deterministic: 2 logbook searches (10 hits), 6 channel reads of 500 channels (the
read step's maximum), 4 python steps of 3 attempts with ``--code-chars`` characters of code each (default 20,000;
the limit is 200,000), 1 archiver read, 4 control writes, 2 memory steps and the answer. Sizes, not timings.

    python -m benchmarks.payload_size [--code-chars N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from temporalio.contrib.pydantic import pydantic_data_converter

from tern.agent.payload import for_composer, for_result
from tern.models import AgentRunResult, ChannelReading, StepResult
from tern.models.activity_io import ComposeInput
from tern.models.archiver import ArchiverReadOutput, SeriesSummary
from tern.models.control import WriteRecord
from tern.models.execution import ExecutionResult
from tern.models.logbook import LogbookHit
from tern.models.memory import Memory
from tern.models.python_step import PythonAttempt, PythonStepOutcome

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
MAX_PAYLOAD = 2 * 1024 * 1024  # Temporal's default blob size limit per payload


def code_text(chars: int, seed: int) -> str:
    """Python-looking code of exactly ``chars`` characters (deterministic)."""
    line = f"x_{seed} = sum(v * {seed} for v in readings['values'])  # analysis line\n"
    return (line * (chars // len(line) + 1))[:chars]


def run_steps(code_chars: int = 20_000) -> list[StepResult]:
    """The 20 step results of the synthetic run (see the module docstring)."""
    steps: list[StepResult] = []
    for n in range(2):
        hits = [
            LogbookHit(entry_id=f"E{n}{i:02d}", title=f"RF trip {i}", author="op", timestamp=T0, snippet="x" * 200)
            for i in range(10)
        ]
        steps.append(StepResult(step_id=f"search{n}", kind="logbook_search", status="completed", hits=hits))
    for n in range(6):
        readings = [
            ChannelReading(
                channel=f"SR:BPM:{n:02d}:{i:03d}:X",
                value=0.001 * i,
                units="mm",
                timestamp=T0,
                severity=0,
                status=0,
                lower_ctrl_limit=-10.0,
                upper_ctrl_limit=10.0,
                precision=4,
            )
            for i in range(500)
        ]
        steps.append(StepResult(step_id=f"read{n}", kind="channel_read", status="completed", readings=readings))
    for n in range(4):
        codes = [code_text(code_chars, 10 * n + a) for a in range(3)]
        attempts = [
            PythonAttempt(attempt=a + 1, code=c, outcome="error" if a < 2 else "ok", feedback="Traceback ...\n" * 40)
            for a, c in enumerate(codes)
        ]
        execution = ExecutionResult(status="ok", results={"mean": 1.0}, backend="docker", isolation="container")
        outcome = PythonStepOutcome(status="completed", code=codes[-1], execution=execution, attempts=attempts)
        steps.append(StepResult(step_id=f"calc{n}", kind="python", status="completed", python=outcome))
    archived = ArchiverReadOutput(
        start=T0 - timedelta(hours=1), end=T0, artifact_id="art-1", samples=3600,
        series=[SeriesSummary(channel="SR:DCCT:CURRENT", count=3600, min=299.0, max=301.0, mean=300.0,
                              last_value=300.1)],
    )  # fmt: skip
    steps.append(StepResult(step_id="history", kind="archiver_read", status="completed", archived=archived))
    for n in range(4):
        w = WriteRecord(channel=f"SR:MAG:QF:{n:02d}:CURRENT:SP", previous_value=1.0, value=1.1, readback=1.1,
                        verified=True, verification="readback", written_at=T0)  # fmt: skip
        steps.append(StepResult(step_id=f"write{n}", kind="control_write", status="completed", write=w))
    for n in range(2):
        m = [Memory(id=n, user="alice", text="prefer 4 decimals", created_at=T0)]
        steps.append(StepResult(step_id=f"memory{n}", kind="memory", status="completed", memories=m))
    steps.append(StepResult(step_id="respond", kind="respond", status="completed", answer="a" * 2_000))
    assert len(steps) == 20
    return steps


def size(value: object) -> int:
    """Bytes of ``value`` as the worker's data converter writes it (one payload: data plus metadata)."""
    (payload,) = pydantic_data_converter.payload_converter.to_payloads([value])
    return payload.ByteSize()


def measure(code_chars: int = 20_000) -> dict[str, dict[str, int]]:
    """``{"compose_input"|"python_outcome"|"run_result": {"before": bytes, "after": bytes}}``."""
    steps = run_steps(code_chars)

    def compose_input(s: list[StepResult]) -> ComposeInput:
        return ComposeInput(workflow_id="tern-run-bench", user="alice", query="why did RF trip?", steps=s)

    def result(s: list[StepResult]) -> AgentRunResult:
        return AgentRunResult(workflow_id="tern-run-bench", status="completed", query="q", user="alice", steps=s)

    py = next(s for s in steps if s.python is not None)
    py_after = for_composer(py)
    assert py.python is not None and py_after.python is not None
    return {
        "compose_input": {
            "before": size(compose_input(steps)),
            "after": size(compose_input([for_composer(s) for s in steps])),
        },
        "python_outcome": {"before": size(py.python), "after": size(py_after.python)},
        "run_result": {"before": size(result(steps)), "after": size(result([for_result(s) for s in steps]))},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code-chars", type=int, default=20_000, help="characters of code per python attempt")
    parser.add_argument("--json", type=Path, help="write the figures to this file as JSON")
    args = parser.parse_args(argv)
    if not 1 <= args.code_chars <= 200_000:
        parser.error("--code-chars must be 1 to 200000 (the python step's code limit)")
    figures = measure(args.code_chars)
    print(f"{'payload':<16} {'before':>12} {'after':>12} {'ratio':>7}")
    for name, f in figures.items():
        flag = " (over the 2 MB payload limit)" if f["before"] > MAX_PAYLOAD else ""
        print(f"{name:<16} {f['before']:>12,} {f['after']:>12,} {f['after'] / f['before']:>7.3f}{flag}")
    if args.json:
        args.json.write_text(json.dumps({"code_chars": args.code_chars, "bytes": figures}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
