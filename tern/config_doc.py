"""The settings reference, generated from :class:`tern.config.TernSettings` and its sections so the documentation
cannot drift from the code: ``python -m tern.config_doc > docs/settings.md`` (a test checks the file is current).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, get_origin

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from tern import PACKAGE_DIR
from tern.config import TernSettings, env_names, sections

HEADER = """# Tern settings

The settings are grouped in sections (`settings.temporal.address`, `settings.sandbox.timeout_s`). Every setting is
an environment variable named `TERN_<SECTION>__<FIELD>` (`TERN_DATABASE__PG_PORT`, `TERN_SANDBOX__TIMEOUT_S`; a
root setting `TERN_<FIELD>`, as `TERN_DATA_DIR`). Lists and objects are given as JSON
(`TERN_APPROVAL__APPROVERS='["alice", "bob"]'`). In the TOML file named by `TERN_CONFIG` (default `./tern.toml`) a
setting is a key of its section's table (`[database]` then `pg_port = 55433`). Unknown names are refused, and the
flat names of Tern 0.1 (`TERN_PG_PORT`, a top-level `pg_port = 55433`) fail naming the new one. Precedence:
command-line values, then the environment, then the file, then the defaults below.
Generated from `tern/config.py` and `tern/config_sections.py` by `python -m tern.config_doc > docs/settings.md`;
do not edit by hand.
"""

TABLE_HEAD = """| setting | environment | type | default | meaning |
| --- | --- | --- | --- | --- |
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


def _type(info: FieldInfo) -> str:
    """The field's type as a reader writes it: ``float``, ``list[str]``, ``'docker' | 'process'``, ``str | None``
    (the bars escaped for a Markdown table)."""
    text = repr(info.annotation) if get_origin(info.annotation) else getattr(info.annotation, "__name__", "")
    text = text.replace("typing.", "").replace("pydantic.types.", "").replace("pathlib.", "")
    literal = re.fullmatch(r"Literal\[(.*)\]", text)
    if literal:
        text = " | ".join(literal.group(1).split(", "))
    return f"`{text}`".replace("|", "\\|")


def _row(path: str, env: list[str], info: FieldInfo) -> str:
    meaning = " ".join((info.description or "").split()).replace("|", "\\|")
    names = "<br>".join(f"`{name}`" for name in env)
    return f"| `{path}` | {names} | {_type(info)} | {_default(info)} | {meaning} |"


def settings_markdown() -> str:
    """The settings reference as Markdown: the root fields, then one table per section (its docstring as the
    heading's text), each row giving the field's path, environment names, type, default and description."""
    parts = [HEADER, "\n## General\n\n", TABLE_HEAD]
    parts += [
        _row(name, env_names((name,)), info) + "\n"
        for name, info in TernSettings.model_fields.items()
        if name not in sections()
    ]
    for section, model in sections().items():
        doc = " ".join((model.__doc__ or "").split())
        parts += [f"\n## `{section}`\n\n{doc}\n\n", TABLE_HEAD]
        parts += [
            _row(f"{section}.{field}", env_names((section, field)), info) + "\n"
            for field, info in model.model_fields.items()
        ]
    return "".join(parts)


if __name__ == "__main__":
    print(settings_markdown(), end="")
