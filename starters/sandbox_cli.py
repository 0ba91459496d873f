"""`tern sandbox ...`: build the sandbox image, run a file in the sandbox, analyze code, reap orphans.

Mounted in the main CLI with ``app.add_typer(sandbox_app, name="sandbox")``.
Exit status of ``run``: 0 the code ran and returned results; 1 the code failed (error, timeout, limit);
2 bad input (missing file, bad ``--input`` syntax, input file not JSON); 3 the sandbox is unavailable
(no Docker engine, no image, process backend not permitted).
A container started by ``run`` carries the same run/step/deadline labels as a worker's (run id ``cli``, step id
the file name): if this process is killed, the container still ends at its own deadline and any worker's
periodic reaper removes it.
``tern.sandbox`` (and through it the settings and the backends) is imported inside the commands, so
``tern --help`` does not load it (issue 17).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.markup import escape

from starters.common import console
from tern.models.modes import ApprovalMode

if TYPE_CHECKING:
    from tern.models.code_policy import PolicyReport
    from tern.models.execution import ExecutionResult
    from tern.sandbox import ExecutionRequest

app = typer.Typer(help="Sandboxed Python execution: build the image, run code in it, clean up.", no_args_is_help=True)
out = console()
err = console(stderr=True)

EXIT_OK, EXIT_CODE_FAILED, EXIT_BAD_INPUT, EXIT_UNAVAILABLE = 0, 1, 2, 3


def _bad_input(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(EXIT_BAD_INPUT)


def _pairs(values: list[str], option: str) -> list[tuple[str, Path]]:
    pairs = []
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise _bad_input(f"{option} {value!r} must look like NAME=PATH")
        if not name.isidentifier():
            raise _bad_input(f"{option} {value!r}: NAME must be a Python identifier, got {name!r}")
        file = Path(path)
        if not file.is_file():
            raise _bad_input(f"{option} {name}: no such file {path!r}")
        pairs.append((name, file))
    return pairs


def _request(code_file: Path, inputs: list[str], files: list[str]) -> ExecutionRequest:
    from tern.sandbox import ExecutionRequest, InputFile

    if not code_file.is_file():
        raise _bad_input(f"no such file {str(code_file)!r}")
    try:
        code = code_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _bad_input(f"cannot read {str(code_file)!r}: {exc}") from exc
    values: dict[str, Any] = {}
    for name, path in _pairs(inputs, "--input"):
        try:
            values[name] = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise _bad_input(
                f"--input {name}: {str(path)!r} is not valid JSON ({exc}); use --file for raw files"
            ) from exc
    raw = {
        name: InputFile(data=path.read_bytes(), filename=_safe_name(path.name))
        for name, path in _pairs(files, "--file")
    }
    try:
        return ExecutionRequest(code=code, inputs=values, files=raw, workflow_id="cli", step_id=code_file.name[:200])
    except ValueError as exc:
        raise _bad_input(str(exc)) from exc


def _safe_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "._-" else "_" for c in name).lstrip(".") or "file"
    return cleaned[:100]


def _write_figures(result: ExecutionResult, directory: Path | None) -> list[str]:
    if directory is None or not result.figures:
        return []
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, figure in enumerate(result.figures, start=1):
        stem = _safe_name(Path(figure.name).stem) or "figure"
        path = directory / f"{n:02d}-{stem}.png"
        path.write_bytes(figure.png or b"")
        paths.append(str(path))
    return paths


def _print_human(result: ExecutionResult, report: PolicyReport, paths: list[str]) -> None:
    from tern.approval.render import exact_number

    colour = "green" if result.ok else "red"
    out.print(
        f"[bold {colour}]{result.status}[/]  backend={result.backend} isolation={result.isolation} "
        f"time={result.timings.total_s:.2f}s exit={result.exit_code}"
    )
    if result.isolation == "none":
        out.print("[bold yellow]WARNING: process backend - the code ran on this host WITHOUT isolation[/]")
    out.print(f"[bold]policy[/]: {escape(report.summary())}")
    if result.error:
        out.print(f"[bold red]error[/] ({result.error_type}, line {result.error_line}):\n{escape(result.error)}")
    if result.results:
        out.print("[bold]results[/]:")
        out.print_json(data=result.results)
    for write in result.proposed_writes:
        out.print(f"[bold]proposed write[/]: {write.channel} = {exact_number(write.value)}  {escape(write.reason)}")
    for name, text, cut, total in (
        ("stdout", result.stdout, result.stdout_truncated, result.stdout_bytes),
        ("stderr", result.stderr, result.stderr_truncated, result.stderr_bytes),
    ):
        if text:
            note = f" (truncated: {total} bytes written, first {len(text.encode())} kept)" if cut else ""
            out.print(f"[bold]{name}[/]{note}:")
            out.print(escape(text.rstrip("\n")), highlight=False)
    for path in paths:
        out.print(f"[bold]figure[/]: {path}")
    if result.figures and not paths:
        out.print(f"{len(result.figures)} figure(s) produced; pass --out DIR to save them")
    if result.figures_dropped:
        out.print(f"{result.figures_dropped} figure(s) dropped (over the count or size limit)")


@app.command()
def build(
    force: Annotated[bool, typer.Option("--force", help="Rebuild the base and the image.")] = False,
) -> None:
    """Build the sandbox image (debootstrap base, then infra/sandbox/Dockerfile); skipped when up to date."""
    from tern.config import get_settings
    from tern.sandbox import SandboxError
    from tern.sandbox.image import build_image

    try:
        ref = build_image(get_settings(), force=force, progress=lambda line: out.print(escape(line), highlight=False))
    except SandboxError as exc:
        err.print(f"[bold red]sandbox build failed:[/] {escape(str(exc))}")
        raise typer.Exit(EXIT_UNAVAILABLE) from exc
    out.print(f"sandbox image: [bold]{ref}[/]")


@app.command()
def run(
    file: Annotated[Path, typer.Argument(help="Python file to run; it must assign a dict `results`.")],
    inputs: Annotated[
        list[str], typer.Option("--input", "-i", help="NAME=PATH of a JSON file, bound to variable NAME.")
    ] = [],  # noqa: B006 - typer reads the default, never mutates it
    file_input: Annotated[
        list[str], typer.Option("--file", "-f", help="NAME=PATH of a raw file; NAME holds its sandbox path.")
    ] = [],  # noqa: B006
    backend: Annotated[
        Literal["docker", "process"] | None, typer.Option(help="Sandbox backend (default: configured).")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the result as one JSON document.")] = False,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Directory to write figures (PNG) into.")] = None,
) -> None:
    """Run FILE.py in the sandbox and print its results, stdout, stderr and figures."""
    import asyncio

    from tern.config import get_settings
    from tern.sandbox import SandboxError, analyze, execute, get_backend

    request = _request(file, inputs, file_input)
    report = analyze(request.code)
    try:
        result = asyncio.run(execute(request, get_backend(get_settings(), backend)))
    except SandboxError as exc:
        err.print(f"[bold red]sandbox unavailable:[/] {escape(str(exc))}")
        raise typer.Exit(EXIT_UNAVAILABLE) from exc
    paths = _write_figures(result, out_dir)
    if json_output:
        doc = result.model_dump(mode="json", exclude={"figures": {"__all__": {"png"}}})
        doc["figure_paths"] = paths
        doc["policy"] = report.model_dump(mode="json")
        print(json.dumps(doc, indent=2))
    else:
        _print_human(result, report, paths)
    raise typer.Exit(EXIT_OK if result.ok else EXIT_CODE_FAILED)


@app.command("analyze")
def analyze_cmd(
    file: Annotated[Path, typer.Argument(help="Python file to analyze (not run).")],
    mode: Annotated[ApprovalMode, typer.Option(help="Approval mode to decide for.")] = "all_code",
) -> None:
    """Show what the policy finds in FILE.py and whether it needs approval under MODE."""
    from tern.sandbox import analyze

    if not file.is_file():
        raise _bad_input(f"no such file {str(file)!r}")
    report = analyze(file.read_text(encoding="utf-8"))
    out.print(escape(report.summary()), highlight=False)
    out.print(f"needs approval ({mode}): {'yes' if report.needs_approval(mode) else 'no'}")
    raise typer.Exit(EXIT_OK if report.syntax_ok else EXIT_CODE_FAILED)


@app.command()
def reap(
    max_age: Annotated[
        float | None, typer.Option("--max-age", help="Remove containers older than this, seconds.")
    ] = None,
) -> None:
    """Remove sandbox containers past their deadline (their starter died) or older than --max-age seconds."""
    from tern.config import get_settings
    from tern.sandbox import SandboxError, reap_orphans

    try:
        count = reap_orphans(get_settings(), max_age)
    except SandboxError as exc:
        err.print(f"[bold red]sandbox unavailable:[/] {escape(str(exc))}")
        raise typer.Exit(EXIT_UNAVAILABLE) from exc
    out.print(f"removed {count} orphaned sandbox container(s)")
