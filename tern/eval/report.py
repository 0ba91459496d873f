"""Reports of an evaluation: the JSON document, a Markdown report with an SVG plot of score against p50 planning
latency, and rich tables for a terminal."""

from __future__ import annotations

from html import escape
from typing import Any

from rich.table import Table

from tern.eval.scoring import ModelResult


def report_json(results: list[ModelResult], *, questions: int, files: list[str]) -> dict[str, Any]:
    """The ``--json`` document: ``{"questions", "files", "models": [{"summary", "results"}]}``."""
    return {
        "questions": questions,
        "files": files,
        "models": [{"summary": m.summary(), "results": [r.model_dump() for r in m.results]} for m in results],
    }


def summary_table(results: list[ModelResult]) -> Table:
    """One row per model: score, passed, score per category, mean attempts, p50 latency, tokens per question."""
    cats = sorted({c for m in results for c in m.summary()["by_category"]})
    t = Table(title="Planner evaluation")
    for col in ("model", "structured", "score", "passed", *cats, "attempts", "p50 s", "tokens/q"):
        t.add_column(col)
    for m in results:
        s = m.summary()
        t.add_row(
            m.label,
            "yes" if m.structured else "no",
            f"{s['score']:.0%}",
            f"{s['passed']}/{s['questions']}",
            *(f"{s['by_category'][c]:.0%}" if c in s["by_category"] else "-" for c in cats),
            f"{s['mean_attempts']:.2f}",
            f"{s['p50_latency_s']:.3f}",
            f"{s['tokens_per_question']:.0f}",
        )
    return t


def failures_table(m: ModelResult) -> Table:
    """The failed questions of one model, each with the checks that failed and why."""
    t = Table(title=f"{m.label}: failed questions")
    for col in ("question", "category", "attempts", "why"):
        t.add_column(col)
    for r in m.results:
        if not r.passed:
            t.add_row(r.id, r.category, str(r.attempts), r.explain())
    return t


PLOT_AXES = {
    "latency": ("p50_latency_s", "p50 planning latency (s)"),
    "tokens": ("tokens_per_question", "tokens per question (the cost)"),
}


def plot_svg(results: list[ModelResult], width: int = 640, height: int = 360, *, x: str = "latency") -> str:
    """An SVG scatter plot: score (y, 0-100 %) against ``x`` (``"latency"``: p50 planning latency in seconds;
    ``"tokens"``: mean tokens per question, the cost), one labelled point per model. Plain SVG text: no plotting
    library is needed to read the report. Raises ``KeyError`` for another ``x``."""
    key, title = PLOT_AXES[x]
    pad = 50
    pts = [(m.label, m.summary()) for m in results]
    xmax = max([s[key] for _, s in pts] + [1e-3]) * 1.15
    w, h = width - pad - 180, height - 2 * pad  # room on the right for the last point's label

    def xy(lat: float, score: float) -> tuple[float, float]:
        return pad + w * lat / xmax, pad + h * (1 - score)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
        'font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<line x1="{pad}" y1="{pad + h}" x2="{pad + w}" y2="{pad + h}" stroke="black"/>',
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{pad + h}" stroke="black"/>',
        f'<text x="{pad + w / 2}" y="{height - 12}" text-anchor="middle">{title}</text>',
        f'<text x="14" y="{pad + h / 2}" transform="rotate(-90 14 {pad + h / 2})" text-anchor="middle">score</text>',
    ]
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        _, y = xy(0, frac)
        out.append(f'<text x="{pad - 6}" y="{y + 4:.1f}" text-anchor="end">{frac:.0%}</text>')
        px, _ = xy(xmax * frac, 0)
        out.append(f'<text x="{px:.1f}" y="{pad + h + 16}" text-anchor="middle">{xmax * frac:.3g}</text>')
    for label, s in pts:
        px, py = xy(s[key], s["score"])
        out.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="5" fill="#1f77b4"/>')
        out.append(f'<text x="{px + 8:.1f}" y="{py - 6:.1f}">{escape(label)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def report_markdown(results: list[ModelResult], *, plot_files: list[str] | None = None) -> str:
    """The Markdown report: the summary table (model, provider, structured output, score, score by category, p50
    latency, tokens per question), the plots (linked as ``plot_files``: score against latency, then against
    tokens), and each model's failed questions with their reasons."""
    cats = sorted({c for m in results for c in m.summary()["by_category"]})
    head = ["model", "provider", "structured", "score", *cats, "attempts", "p50 latency (s)", "tokens/question"]
    lines = ["# Planner evaluation", "", "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for m in results:
        s = m.summary()
        row = [
            m.label,
            m.provider,
            "yes" if m.structured else "no",
            f"{s['score']:.0%} ({s['passed']}/{s['questions']})",
            *(f"{s['by_category'][c]:.0%}" if c in s["by_category"] else "-" for c in cats),
            f"{s['mean_attempts']:.2f}",
            f"{s['p50_latency_s']:.3f}",
            f"{s['tokens_per_question']:.0f}",
        ]
        lines.append("| " + " | ".join(row) + " |")
    for f, what in zip(plot_files or [], ("p50 planning latency", "tokens per question"), strict=False):
        lines += ["", f"![score against {what}]({f})"]
    for m in results:
        failed = [r for r in m.results if not r.passed]
        lines += ["", f"## {m.label}: {len(failed)} failed"]
        if failed:
            lines += ["", "| question | category | why |", "| --- | --- | --- |"]
            for r in failed:
                lines.append(f"| {r.id} | {r.category} | {r.explain().replace('|', '/')} |")
    return "\n".join(lines) + "\n"
