"""Reading the runner's result document on the host: whatever the code put in it, the answer is a result,
never an exception (an exception would make the activity run the container again)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tern.sandbox.job import Outcome, build_result
from tern.sandbox.models import ExecutionRequest, SandboxLimits


def _result(doc: dict[str, Any]) -> Any:
    stdout = json.dumps({"tern_runner": 1, "status": "ok", **doc}, allow_nan=True).encode()
    return build_result(Outcome(exit_code=0, stdout=stdout), ExecutionRequest(code="x"), SandboxLimits(), "docker")


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        pytest.param(10**400, "an integer of 401 digits", id="10**400"),
        pytest.param(-(10**309), "an integer of 310 digits", id="-10**309"),
        pytest.param(float("inf"), "inf", id="inf"),
        pytest.param(float("-inf"), "-inf", id="-inf"),
        pytest.param(float("nan"), "nan", id="nan"),
    ],
)
def test_a_proposed_value_beyond_the_float_range_is_a_code_error_naming_the_key_and_limit(
    value: float, shown: str
) -> None:
    result = _result(
        {
            "results": {
                "x": 1,
                "proposed_writes": [{"channel": "SR:C01:SP", "value": 1.0}, {"channel": "SR:C02:SP", "value": value}],
            }
        }
    )
    assert result.status == "error" and result.error_type == "InvalidProposedWrite"
    assert result.error == (
        f'results["proposed_writes"][1].value is not a finite float: {shown} '
        "(a write value must be a finite number within ±1.79769e+308)"
    )
    assert result.proposed_writes == []
    assert "proposed_writes" in result.feedback() and "finite float" in result.feedback()


def test_the_largest_float_is_still_a_valid_proposal() -> None:
    result = _result({"results": {"proposed_writes": [{"channel": "SR:C01:SP", "value": 1.7976931348623157e308}]}})
    assert result.status == "ok", result.feedback()
    assert result.proposed_writes[0].value == 1.7976931348623157e308


@pytest.mark.parametrize(
    "doc",
    [
        {"results": {}, "stdout": 123},  # the code wrote its own document to the runner's stdout
        {"results": {}, "figures": [{"name": "f", "png_b64": 5}]},
        {"results": {}, "figures": [{"png_b64": ""}]},
        {"status": "error", "error_line": "not a line"},
    ],
)
def test_a_forged_or_malformed_document_is_an_error_result(doc: dict[str, Any]) -> None:
    result = _result(doc)
    assert result.status == "error" and result.error_type == "InvalidResultDocument"
    assert result.error is not None and result.error.startswith("the sandbox's result document could not be read")


# --- Issue 22: the limits apply to whatever the document claims ---------------------------------------------
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 100


def _forged(doc: dict[str, Any], limits: SandboxLimits) -> Any:
    stdout = json.dumps({"tern_runner": 1, "status": "ok", "results": {}, **doc}).encode()
    return build_result(Outcome(exit_code=0, stdout=stdout), ExecutionRequest(code="x"), limits, "docker")


def _fig(name: str, data: bytes = PNG) -> dict[str, str]:
    return {"name": name, "png_b64": base64.b64encode(data).decode()}


def test_a_forged_document_cannot_bring_more_or_larger_figures_than_the_limits() -> None:
    limits = SandboxLimits(max_figures=2, figure_bytes=1024)
    many = _forged({"figures": [_fig(f"f{i}") for i in range(5)], "figures_dropped": 0}, limits)
    assert many.status == "ok" and [f.name for f in many.figures] == ["f0", "f1"] and many.figures_dropped == 3
    big = _forged({"figures": [_fig("big", PNG + b"\0" * 2000), _fig("small")]}, limits)
    assert [f.name for f in big.figures] == ["small"] and big.figures_dropped == 1
    not_png = _forged({"figures": [_fig("exe", b"MZ" + b"\0" * 100)], "figures_dropped": -7}, limits)
    assert not_png.figures == [] and not_png.figures_dropped == 1


def test_a_forged_document_cannot_bring_results_or_output_beyond_the_limits() -> None:
    limits = SandboxLimits(result_bytes=4096, stdout_bytes=1024, stderr_bytes=1024)
    huge = _forged({"results": {"data": "x" * 10_000}}, limits)
    assert huge.status == "output_limit" and huge.error_type == "ResultTooLarge" and huge.results == {}
    assert "over the limit of 4096 bytes" in (huge.error or "")
    chatty = _forged({"stdout": "y" * 5000, "stdout_bytes": 10, "stdout_truncated": False, "stderr": "é" * 600}, limits)
    assert chatty.status == "ok" and chatty.stdout == "y" * 1024 and chatty.stdout_truncated
    assert chatty.stdout_bytes == 5000 and chatty.truncated
    assert len(chatty.stderr.encode()) <= 1024 and chatty.stderr_truncated
    failing = _forged({"status": "error", "error": "z" * 5000, "error_type": "E" * 1000}, limits)
    assert failing.status == "error" and len(failing.error or "") == 1024 and len(failing.error_type or "") == 200
