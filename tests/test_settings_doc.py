"""docs/settings.md is generated from TernSettings and must be current (``python -m tern.config_doc``)."""

from __future__ import annotations

from pathlib import Path

from tern.config import retired_names
from tern.config_doc import settings_markdown

DOC = Path(__file__).resolve().parent.parent / "docs" / "settings.md"


def test_settings_reference_is_current() -> None:
    assert DOC.read_text() == settings_markdown(), (
        "docs/settings.md is out of date: run `python -m tern.config_doc > docs/settings.md`"
    )


def test_every_setting_is_described() -> None:
    rows = [line for line in settings_markdown().splitlines() if line.startswith("| `")]
    assert len(rows) == 1 + len(retired_names())  # data_dir, then every field of every section
    undocumented = [line.split("|")[1].strip() for line in rows if line.rstrip().endswith("|  |")]
    assert not undocumented, f"settings without a description: {undocumented}"
