"""Generate the CLI reference page (docs/reference/cli.md) from the typer app, so it cannot drift from the code.

Run ``python docs/gen_cli.py > docs/reference/cli.md`` from the repository root; ``tests/test_docs_site.py`` checks
that the committed page equals this script's output. The page is built from typer's own click command
(``typer.main.get_command``) and click's help formatter, one section per command and sub-command, in the order the
app declares them. The help text is rendered at a fixed width of 100 columns and without colour (``TERMINAL_WIDTH``,
``NO_COLOR``), so the output does not depend on the terminal that runs the script. Typer 0.29 carries its own copy
of click (``typer._click``), so commands are walked by their click interface (``list_commands``, ``get_command``,
``context_class``), not by ``isinstance`` checks against the separately installed click.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

WIDTH = 100
HEADER = """# CLI reference

Generated from the typer app (`starters/cli.py`) by `python docs/gen_cli.py > docs/reference/cli.md`; a test keeps
it current. [Commands at a glance](commands.md) says what each command is for, its exit status and the ids it takes.
"""


def _walk(cmd: Any, path: list[str]) -> Iterator[tuple[list[str], Any]]:
    """Yield ``(words, command)`` for ``cmd`` and, depth first, every sub-command it declares.

    Args:
        cmd: a click command or group (typer's converted app; a group has ``list_commands``).
        path: the words that invoke ``cmd``, starting with ``tern``.
    """
    yield path, cmd
    if hasattr(cmd, "list_commands"):
        ctx = cmd.context_class(cmd)
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from _walk(sub, [*path, name])


def _help(cmd: Any, path: list[str]) -> str:
    """The plain-text ``--help`` of ``cmd`` as click prints it, invoked as ``path`` (ANSI escapes removed)."""
    ctx = cmd.context_class(cmd, info_name=" ".join(path), terminal_width=WIDTH, max_content_width=WIDTH)
    return re.sub(r"\x1b\[[0-9;]*m", "", cmd.get_help(ctx)).rstrip()


def render() -> str:
    """The whole Markdown page: a header, then one ``##`` section per command with its help in a text block."""
    os.environ["TERMINAL_WIDTH"] = str(WIDTH)
    os.environ["NO_COLOR"] = "1"
    os.environ["_TYPER_STANDARD_TRACEBACK"] = "1"
    root = Path(__file__).resolve().parent.parent
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    import typer.core

    typer.core.HAS_RICH = False  # click's plain help formatter, not rich's boxes written to the console
    from typer.main import get_command

    from starters.cli import app

    parts = [HEADER]
    for path, cmd in _walk(get_command(app), ["tern"]):
        parts.append(f"## `{' '.join(path)}`\n\n```text\n{_help(cmd, path)}\n```\n")
    return "\n".join(parts)


if __name__ == "__main__":
    sys.stdout.write(render())
    sys.stdout.flush()  # starters.cli ends the interpreter with os._exit at exit (sdk-python issue 300)
