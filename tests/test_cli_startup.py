"""``tern --help`` loads none of the heavy modules (issue 28: it took 0.66 s, 0.53 s of it imports, tern.models
alone 265 ms): the real entry point's module in a subprocess, its imports read from ``-X importtime`` (no timing
is asserted; the time is measured by ``benchmarks/cli_startup.py``)."""

from __future__ import annotations

from benchmarks.cli_startup import HEAVY, heavy_imports


def test_help_imports_no_models_settings_pydantic_or_temporal() -> None:
    assert "tern.models.run" in HEAVY and "temporalio" in HEAVY and "tern.config" in HEAVY
    assert heavy_imports() == []


def test_the_lazy_models_package_still_gives_every_name() -> None:
    """``from tern.models import X`` loads X's submodule on first use; an unknown name is an AttributeError."""
    import importlib

    import pytest

    models = importlib.import_module("tern.models")
    from tern.models.run import AgentRunResult

    assert models.AgentRunResult is AgentRunResult
    for name in models.__all__:
        assert getattr(models, name) is getattr(importlib.import_module(f"tern.models.{models._SUBMODULE[name]}"), name)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        models.Nope  # noqa: B018
