"""Reading the runner's result document on the host: whatever the code put in it, the answer is a result,
never an exception (an exception would make the activity run the container again)."""

from __future__ import annotations

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
