"""docs/settings.md is generated from TernSettings and must be current (``python -m tern.config_doc``)."""

from __future__ import annotations

from pathlib import Path

from tern.config_doc import settings_markdown

DOC = Path(__file__).resolve().parent.parent / "docs" / "settings.md"


def test_settings_reference_is_current() -> None:
    assert DOC.read_text() == settings_markdown(), (
        "docs/settings.md is out of date: run `python -m tern.config_doc > docs/settings.md`"
    )


def test_every_setting_is_described() -> None:
    undocumented = [
        line.split("|")[1].strip()
        for line in settings_markdown().splitlines()
        if line.startswith("| `TERN_") and line.rstrip().endswith("|  |")
    ]
    assert not undocumented, f"settings without a description: {undocumented}"
