"""The in-sandbox runner's JSON conversion (pure functions; the runner itself runs in the other tests)."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest

from tern.sandbox.runner import NotSerialisable, to_json


def test_numpy_and_standard_values_become_plain_json() -> None:
    value = {
        "f": np.float64(1.5),
        "i": np.int64(3),
        "b": np.bool_(True),
        "a": np.arange(3),
        "m": np.eye(2),
        "t": (1, 2),
        "s": {3, 1},
        "d": dt.datetime(2026, 1, 2, 3, 4, 5),
        1: "int key",
        np.int64(7): "numpy key",
        "nan": float("nan"),
    }
    out = to_json(value)
    assert out["f"] == 1.5 and out["i"] == 3 and out["b"] is True
    assert out["a"] == [0, 1, 2] and out["m"] == [[1.0, 0.0], [0.0, 1.0]]
    assert out["t"] == [1, 2] and out["s"] == [1, 3]
    assert out["d"] == "2026-01-02T03:04:05"
    assert out["1"] == "int key" and out["7"] == "numpy key"
    assert type(out["i"]) is int and type(out["b"]) is bool
    json.dumps(out, allow_nan=True)


def test_unserialisable_values_name_their_path() -> None:
    with pytest.raises(
        NotSerialisable,
        match=r"results\['outer'\]\[1\] is a builtins.builtin_function_or_method, not JSON-serialisable",
    ):
        to_json({"outer": [1, print]})
    deep: list[object] = []
    cursor = deep
    for _ in range(100):
        cursor.append([])
        cursor = cursor[0]  # type: ignore[assignment]
    with pytest.raises(NotSerialisable, match="nested deeper"):
        to_json({"deep": deep})


def test_request_names_must_not_clash() -> None:
    from pydantic import ValidationError

    from tern.sandbox import ExecutionRequest, InputFile

    with pytest.raises(ValidationError, match="both a JSON input and a file input"):
        ExecutionRequest(code="x", inputs={"a": 1}, files={"a": InputFile(data=b"")})
    with pytest.raises(ValidationError, match="share a file name"):
        ExecutionRequest(
            code="x", files={"a": InputFile(data=b"", filename="f"), "b": InputFile(data=b"", filename="f")}
        )
    with pytest.raises(ValidationError):
        ExecutionRequest(code="x", inputs={"not-an-identifier": 1})
