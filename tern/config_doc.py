"""The settings reference, generated from :class:`tern.config.TernSettings` so the documentation cannot drift
from the code: ``python -m tern.config_doc > docs/settings.md`` (a test checks the file is current).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from tern import PACKAGE_DIR
from tern.config import TernSettings

HEADER = """# Tern settings

Every setting is an environment variable `TERN_<NAME>` (lists and objects as JSON, e.g.
`TERN_APPROVERS='["alice", "bob"]'`) or a key of the TOML file named by `TERN_CONFIG` (default `./tern.toml`).
Precedence: command-line values, then the environment, then the file, then the defaults below. Generated from
`tern/config.py` by `python -m tern.config_doc > docs/settings.md`; do not edit by hand.

| setting | default | meaning |
| --- | --- | --- |
"""


def _default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        try:
            value: Any = info.default_factory()  # type: ignore[call-arg]
        except TypeError:
            return "(computed)"
        if isinstance(value, list | dict) and not value:
            return f"`{json.dumps(value)}`"
        return "(computed)"
    if info.default is PydanticUndefined:
        return "(required)"
    if info.default is None:
        return "unset"
    value = info.default
    if hasattr(value, "get_secret_value"):
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, Path) and value.is_relative_to(PACKAGE_DIR):  # the same text on every machine
        return f"bundled `tern/{value.relative_to(PACKAGE_DIR)}`"
    return f"`{value}`"


def settings_markdown() -> str:
    """The settings table as Markdown: name, default and description of every ``TernSettings`` field."""
    rows = []
    for name, info in TernSettings.model_fields.items():
        meaning = " ".join((info.description or "").split()).replace("|", "\\|")
        rows.append(f"| `TERN_{name.upper()}` | {_default(info)} | {meaning} |")
    return HEADER + "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(settings_markdown(), end="")
