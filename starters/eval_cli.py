"""``tern eval plans``: how well the configured LLM (or several models) plans a labelled question set.

Each question goes through the planner's own code (``tern.planning.make_plan``: prompt, schema, validation
against the capability registry and the channel database, retries) and the plan is scored as it stands
(``tern.eval.scoring``). Nothing is executed: no step runs, so no write can happen whatever a model proposes.
``--from-history RUN`` turns recorded runs (their question and the plan a person approved) into regression
questions. ``--execute`` runs each validated plan on the stack as an agent run whose every approval is rejected
(``starters.eval_execute``: read-only steps run, writes stop at the approval) and scores its answer's grounding.
Only these two options contact Temporal.

Exit status: 0 when the evaluation ran (and every model reached ``--min-score``), 1 when a model scored below
``--min-score`` or Temporal/the history is unavailable, 2 for bad input or configuration.
"""

from __future__ import annotations

import asyncio
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from starters.common import console, fail, load_settings, print_json

if TYPE_CHECKING:
    from tern.config import TernSettings
    from tern.eval import Question

app = typer.Typer(help="Evaluate the planner's LLM on a labelled question set.", no_args_is_help=True)
err = console(stderr=True)
out = console()


class SchemaMode(StrEnum):
    on = "on"
    off = "off"
    both = "both"


async def _history_questions(settings: TernSettings, runs: list[str]) -> list[Question]:
    from starters.client import TernClient
    from tern.eval.history import NoApprovedPlan, question_from_run
    from tern.planning import REGISTRY

    client = await TernClient.connect(settings)
    qs = []
    for run in runs:
        result = await client.result(run)
        try:
            qs.append(question_from_run(result, REGISTRY))
        except NoApprovedPlan as exc:
            fail(str(exc))
    return qs


async def _evaluate(
    settings: TernSettings,
    questions: list[Question],
    models: list[str],
    modes: list[bool],
    concurrency: int,
    quiet: bool,
    execute_timeout_s: float | None = None,
) -> list[Any]:
    from tern.control.limits import LimitsDatabase
    from tern.eval import run_questions
    from tern.llm.chat import make_chat_provider
    from tern.planning import REGISTRY

    limits = LimitsDatabase.load(settings.control.limits_path, allow_unlisted=settings.control.allow_unlisted_channels)
    runner = None
    if execute_timeout_s is not None:
        from starters.client import TernClient

        runner = await TernClient.connect(settings)
    results = []
    for model in models:
        for structured in modes:
            llm_settings = settings.llm.model_copy(update={"planner_model": model, "json_schema": structured})
            client = make_chat_provider(settings.model_copy(update={"llm": llm_settings}), "planner")
            assert client is not None  # provider 'none' is refused before
            label = f"{model} ({'schema' if structured else 'prompt'})"
            done = 0

            def progress(r: Any, label: str = label) -> None:
                nonlocal done
                done += 1
                if not quiet:
                    mark = "ok" if r.passed else "FAIL"
                    err.print(f"[{label}] {done}/{len(questions)} {r.id}: {mark}", markup=False, highlight=False)

            try:
                results.append(
                    await run_questions(
                        client,
                        questions,
                        REGISTRY,
                        limits,
                        label=label,
                        provider=settings.llm.provider,
                        structured=structured,
                        max_attempts=settings.llm.plan_max_attempts,
                        concurrency=concurrency,
                        progress=progress,
                    )
                )
            finally:
                await client.aclose()
            if runner is not None and execute_timeout_s is not None:
                from starters.eval_execute import execute_results

                def said(line: str) -> None:
                    if not quiet:
                        err.print(line, markup=False, highlight=False)

                await execute_results(
                    runner,
                    questions,
                    results[-1],
                    concurrency=concurrency,
                    timeout_s=execute_timeout_s,
                    progress=said,
                )
    return results


@app.command("plans")
def plans(
    questions: Annotated[
        list[Path] | None, typer.Option("--questions", "-q", help="Question file (repeat); default: the bundled set.")
    ] = None,
    model: Annotated[
        list[str] | None, typer.Option("--model", "-m", help="Planner model (repeat); default: the configured one.")
    ] = None,
    schema: Annotated[
        SchemaMode, typer.Option(help="Ask for schema-constrained plans (on), instructions only (off), or both.")
    ] = SchemaMode.both,
    category: Annotated[list[str] | None, typer.Option("--category", help="Only these categories (repeat).")] = None,
    from_history: Annotated[
        list[str] | None,
        typer.Option("--from-history", help="A recorded run's Workflow ID (repeat): its question and approved plan."),
    ] = None,
    save_questions: Annotated[
        Path | None, typer.Option(help="Write the questions evaluated (e.g. from --from-history) to this YAML file.")
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(
            help="Write a Markdown report here, and its plots beside it (score vs latency .svg, vs tokens -tokens.svg)."
        ),
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=50, help="Questions planned at once per model.")] = 4,
    min_score: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="Exit 1 when a model scores below this (0-1).")
    ] = None,
    execute: Annotated[
        bool,
        typer.Option(
            help="Also run each plan on the stack, rejecting every approval, and score the answer's grounding."
        ),
    ] = False,
    run_timeout: Annotated[float, typer.Option(min=5, max=3600, help="--execute: seconds a run may take.")] = 300.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full results as JSON.")] = False,
) -> None:
    """Plan every question with each model and score the plans (docs: how-to/evaluate-models)."""
    from tern.eval import QuestionFileError, load_questions
    from tern.eval.report import failures_table, plot_svg, report_json, report_markdown, summary_table

    settings = load_settings()
    if settings.llm.provider == "none":
        fail("no LLM is configured (set TERN_LLM__PROVIDER, TERN_LLM__URL, TERN_LLM__MODEL)")
    try:
        qs = [] if (from_history and not questions) else load_questions(list(questions or []))
    except QuestionFileError as exc:
        fail(str(exc))
    if from_history:
        from starters.common import run_async

        qs += run_async(_history_questions(settings, list(from_history)))
    if category:
        qs = [q for q in qs if q.category in set(category)]
    if not qs:
        fail("no questions to evaluate (check --questions and --category)")
    if save_questions is not None:
        import yaml

        doc = {"version": 1, "questions": [q.model_dump(mode="json", exclude_defaults=True) for q in qs]}
        save_questions.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    models = list(model or [settings.llm.model_for("planner")])
    modes = {"on": [True], "off": [False], "both": [True, False]}[schema.value]
    from starters.client import TernUnavailable, TernUserError
    from tern.control.limits import LimitsDatabaseError

    try:
        results = asyncio.run(
            _evaluate(
                settings,
                qs,
                models,
                modes,
                concurrency,
                quiet=as_json,
                execute_timeout_s=run_timeout if execute else None,
            )
        )
    except TernUserError as exc:
        fail(str(exc))
    except TernUnavailable as exc:
        fail(str(exc), code=1)
    except LimitsDatabaseError as exc:
        fail(f"cannot score plans without the channel database: {exc}")
    for m in results:
        if all(r.error and r.checks and r.checks[0].reason.startswith("LLM error") for r in m.results):
            fail(f"{m.label}: the LLM endpoint failed on every question: {m.results[0].error}", code=1)
    files = [str(p) for p in (questions or [])] or ([] if from_history else ["bundled:sim.yaml"])
    if report is not None:
        svg = report.with_suffix(".svg")
        svg_tokens = report.with_name(report.stem + "-tokens.svg")
        svg.write_text(plot_svg(results), encoding="utf-8")
        svg_tokens.write_text(plot_svg(results, x="tokens"), encoding="utf-8")
        report.write_text(report_markdown(results, plot_files=[svg.name, svg_tokens.name]), encoding="utf-8")
    if as_json:
        print_json(report_json(results, questions=len(qs), files=files))
    else:
        out.print(summary_table(results))
        for m in results:
            if any(not r.passed for r in m.results):
                out.print(failures_table(m))
    if min_score is not None:
        low = [m.label for m in results if m.summary()["score"] < min_score]
        if low:
            err.print(f"below --min-score {min_score}: {', '.join(low)}", markup=False, highlight=False)
            raise typer.Exit(1)
