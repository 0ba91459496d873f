"""Tern sandbox runner: runs one piece of analysis code and prints one JSON result document.

Runs inside the sandbox (baked into the image at /opt/tern/runner.py; the process backend runs this same
file). Standard library only; numpy, pandas and matplotlib are used only if the analysis code imported them.
Python 3.11 (Debian bookworm's python3).

Usage: python3 -I runner.py [--job DIR] [--work DIR]

The job directory (read-only, default /inputs) holds ``NAME.json`` per JSON input, ``files/`` with file
inputs and ``.tern/code.py`` + ``.tern/meta.json`` (limits). The work directory (default /work, a tmpfs)
is the current directory of the code. Everything the code writes to file descriptors 1 and 2 goes through
pipes whose readers keep the first N bytes and count the rest. The only thing written to the real stdout
is the result document: one JSON object (keys: tern_runner, status, results, stdout, stderr, stdout_bytes,
stderr_bytes, figures, figures_dropped, error, error_type, error_line, code_s).
"""

from __future__ import annotations

import argparse
import base64
import builtins
import json
import linecache
import os
import sys
import threading
import time
import traceback
from typing import Any

CODE_NAME = "analysis.py"
MAX_DEPTH = 64


class _Capture:
    """Redirect a file descriptor into a pipe; a thread keeps the first ``limit`` bytes, counts the rest."""

    def __init__(self, fd: int, limit: int) -> None:
        self.fd, self.limit = fd, limit
        self.buf = bytearray()
        self.total = 0
        self.lock = threading.Lock()
        read_end, write_end = os.pipe()
        os.dup2(write_end, fd)
        os.close(write_end)
        self._read_end = read_end
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        while True:
            try:
                chunk = os.read(self._read_end, 65536)
            except OSError:
                return
            if not chunk:
                return
            with self.lock:
                self.total += len(chunk)
                room = self.limit - len(self.buf)
                if room > 0:
                    self.buf += chunk[:room]

    def finish(self, wait_s: float = 1.0) -> tuple[str, int, bool]:
        """Close the write side (fd now points to /dev/null); returns (text kept, total bytes, truncated)."""
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, self.fd)
        os.close(null)
        self.thread.join(wait_s)  # a child process still holding the pipe must not stall the result
        with self.lock:
            return bytes(self.buf).decode("utf-8", "replace"), self.total, self.total > len(self.buf)


class NotSerialisable(TypeError):
    """A value in ``results`` cannot be represented in JSON; the message names where."""


def to_json(value: Any, path: str = "results", depth: int = 0) -> Any:
    """Plain JSON structures from ``value``: numpy scalars/arrays, pandas objects, tuples, sets, dates
    converted. Raises ``NotSerialisable`` naming the path of the first bad value."""
    if depth > MAX_DEPTH:
        raise NotSerialisable(f"{path} is nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if isinstance(k, bool | int | float) or k is None:
                k = json.dumps(k)
            elif hasattr(k, "isoformat") and not isinstance(k, str):
                k = k.isoformat()
            elif hasattr(k, "item") and not isinstance(k, str):
                k = str(k.item())
            if not isinstance(k, str):
                raise NotSerialisable(f"{path} has a key of type {type(k).__name__}; keys must be strings")
            out[k] = to_json(v, f"{path}[{k!r}]", depth + 1)
        return out
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return [to_json(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(items)]
    if hasattr(value, "to_dict") and hasattr(value, "columns"):  # pandas DataFrame: column -> values
        return to_json(value.to_dict(orient="list"), path, depth + 1)
    if hasattr(value, "to_dict") and hasattr(value, "index"):  # pandas Series: label -> value
        return to_json(value.to_dict(), path, depth + 1)
    if hasattr(value, "tolist"):  # numpy arrays and scalars, pandas Index
        return to_json(value.tolist(), path, depth + 1)
    if hasattr(value, "isoformat"):  # datetime, date, pandas Timestamp
        return value.isoformat()
    raise NotSerialisable(f"{path} is a {type(value).__module__}.{type(value).__qualname__}, not JSON-serialisable")


def load_inputs(job: str) -> dict[str, Any]:
    """Inputs by name: parsed ``NAME.json`` files and ``files/*`` paths (file inputs are named in meta)."""
    inputs: dict[str, Any] = {}
    for entry in sorted(os.listdir(job)):
        if entry.endswith(".json") and not entry.startswith("."):
            with open(os.path.join(job, entry), encoding="utf-8") as f:
                inputs[entry[: -len(".json")]] = json.load(f)
    return inputs


def make_load_series(inputs: dict[str, Any]) -> Any:
    """The ``load_series`` helper given to the code: archived series (an ``archiver_read`` step's samples, a
    gzip file in the Archiver Appliance JSON shape) as ``{channel: pandas.DataFrame}``, each indexed by UTC time
    with columns ``value``, ``severity``, ``status``. Its argument is the input name of the step (``s2_history``;
    its file is the input ``s2_history_series``), that file input's name, or a path. ``pandas=False`` gives
    ``{channel: {"time": [POSIX s], "value": [...], "severity": [...], "status": [...]}}`` without pandas."""

    def load_series(source: str, pandas: bool = True) -> dict[str, Any]:
        import gzip

        path = inputs.get(source + "_series", inputs.get(source, source))
        if not isinstance(path, str) or not os.path.isfile(path):
            raise FileNotFoundError(f"no archived series named {source!r} (give the archiver_read step's input name)")
        with gzip.open(path, "rt", encoding="utf-8") as f:
            doc = json.load(f)
        out: dict[str, Any] = {}
        for el in doc:
            data = el.get("data", [])
            cols = {
                "time": [d["secs"] + d.get("nanos", 0) * 1e-9 for d in data],
                "value": [d["val"] for d in data],
                "severity": [d.get("severity", 0) for d in data],
                "status": [d.get("status", 0) for d in data],
            }
            if pandas:
                import pandas as pd

                frame = pd.DataFrame(cols)
                frame.index = pd.to_datetime(frame.pop("time"), unit="s", utc=True)
                frame.index.name = "time"
                cols = frame
            out[el["meta"]["name"]] = cols
        return out

    return load_series


STRUCTURED_SEPARATOR = "__"
"""File input ``<step input>__<k>``: the ``.npz`` of reading ``k`` of that channel_read step (a structured PVAccess
value: NTNDArray image, NTTable, long waveform)."""


def make_load_structured(inputs: dict[str, Any]) -> tuple[Any, Any]:
    """The ``load_structured`` and ``load_image`` helpers: structured PVAccess values a channel_read step stored
    as artifacts (its readings with ``artifact_id``). Arguments: the step's input name (``s1_read``) and the
    channel (``pva://SIM:CAMERA:IMAGE``; default: the step's first structured reading). ``load_structured`` gives
    ``{name: numpy array}`` (``value`` for an image or waveform, one array per column for a table);
    ``load_image`` the image as a numpy array (rows, columns[, colour]). Raise ``FileNotFoundError`` naming what
    is missing."""

    def _path(source: str, channel: str | None) -> str:
        step = inputs.get(source)
        readings = step.get("readings") or [] if isinstance(step, dict) else []
        for k, r in enumerate(readings):
            if r.get("artifact_id") and (channel is None or r.get("channel") == channel):
                path = inputs.get(f"{source}{STRUCTURED_SEPARATOR}{k}")
                if isinstance(path, str) and os.path.isfile(path):
                    return path
        what = f"channel {channel!r}" if channel else "a structured reading"
        raise FileNotFoundError(f"input {source!r} has no stored {what} (give a channel_read step's input name)")

    def load_structured(source: str, channel: str | None = None) -> dict[str, Any]:
        import numpy as np

        with np.load(_path(source, channel), allow_pickle=False) as z:
            return {k: z[k] for k in z.files if k != "kind"}

    def load_image(source: str, channel: str | None = None) -> Any:
        return load_structured(source, channel)["value"]

    return load_structured, load_image


def collect_figures(work: str, limits: dict[str, int]) -> tuple[list[dict[str, Any]], int]:
    """Open matplotlib figures (as PNG) and PNG files in the work directory, within the count/size limits."""
    pngs: list[tuple[str, bytes]] = []
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        import io

        for num in plt.get_fignums():
            fig = plt.figure(num)
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=100)
            pngs.append((fig.get_label() or f"figure_{num}", buf.getvalue()))
    for entry in sorted(os.listdir(work)):
        path = os.path.join(work, entry)
        if entry.lower().endswith(".png") and os.path.isfile(path) and not os.path.islink(path):
            if os.path.getsize(path) > limits["figure_bytes"]:
                pngs.append((entry, b""))  # counted as dropped below without reading it
                continue
            with open(path, "rb") as f:
                pngs.append((entry, f.read()))
    kept: list[dict[str, Any]] = []
    dropped = 0
    for name, data in pngs:
        if not data or len(data) > limits["figure_bytes"] or len(kept) >= limits["max_figures"]:
            dropped += 1
            continue
        kept.append({"name": name[:200], "png_b64": base64.b64encode(data).decode("ascii")})
    return kept, dropped


def _error_line(tb: Any) -> int | None:
    line = None
    for frame, lineno in traceback.walk_tb(tb):
        if frame.f_code.co_filename == CODE_NAME:
            line = lineno
    return line


def run(job: str, work: str) -> dict[str, Any]:
    """Run ``job``'s code in ``work``; returns the result document (captures must already be in place)."""
    with open(os.path.join(job, ".tern", "meta.json"), encoding="utf-8") as f:
        meta = json.load(f)
    limits = meta["limits"]
    with open(os.path.join(job, ".tern", "code.py"), encoding="utf-8") as f:
        source = f.read()
    doc: dict[str, Any] = {
        "tern_runner": 1,
        "status": "ok",
        "results": None,
        "figures": [],
        "figures_dropped": 0,
        "error": None,
        "error_type": None,
        "error_line": None,
        "code_s": None,
    }
    inputs = load_inputs(job)
    for name, fname in meta.get("files", {}).items():
        inputs[name] = os.path.join(job, "files", fname)
    namespace: dict[str, Any] = {
        "__name__": "__main__",
        "__builtins__": builtins,
        "inputs": inputs,
        "load_series": make_load_series(inputs),
        "load_structured": make_load_structured(inputs)[0],
        "load_image": make_load_structured(inputs)[1],
        "INPUT_DIR": job,
        "WORK_DIR": work,
    }
    for name, value in inputs.items():
        if name.isidentifier():
            namespace[name] = value
    linecache.cache[CODE_NAME] = (len(source), None, source.splitlines(True), CODE_NAME)
    os.chdir(work)
    started = time.perf_counter()
    try:
        compiled = compile(source, CODE_NAME, "exec")
        exec(compiled, namespace)
    except SystemExit as exc:
        if exc.code not in (None, 0):
            doc.update(
                status="error",
                error_type="SystemExit",
                error=f"the code called exit({exc.code!r})",
                error_line=_error_line(exc.__traceback__),
            )
    except SyntaxError as exc:
        doc.update(
            status="error",
            error_type=type(exc).__name__,
            error_line=exc.lineno,
            error="".join(traceback.format_exception_only(exc)).strip(),
        )
    except BaseException as exc:
        tb = exc.__traceback__.tb_next if exc.__traceback__ else None  # drop the runner's own frame
        doc.update(
            status="error",
            error_type=type(exc).__name__,
            error_line=_error_line(tb),
            error="".join(traceback.format_exception(type(exc), exc, tb)).strip(),
        )
    doc["code_s"] = time.perf_counter() - started
    try:
        doc["figures"], doc["figures_dropped"] = collect_figures(work, limits)
    except Exception as exc:  # a broken figure must not hide the results
        doc["figures_error"] = f"figures not collected: {type(exc).__name__}: {exc}"
    if doc["status"] != "ok":
        return doc
    if "results" not in namespace:
        doc.update(
            status="error",
            error_type="NameError",
            error="the code did not assign `results` (it must assign a dict named results)",
        )
        return doc
    results = namespace["results"]
    if not isinstance(results, dict):
        doc.update(
            status="error",
            error_type="TypeError",
            error=f"`results` must be a dict, got {type(results).__name__}",
        )
        return doc
    try:
        converted = to_json(results)
        size = len(json.dumps(converted, allow_nan=True, ensure_ascii=False).encode("utf-8"))
    except (NotSerialisable, RecursionError, ValueError) as exc:
        doc.update(status="error", error_type="NotSerialisable", error=str(exc))
        return doc
    if size > limits["result_bytes"]:
        doc.update(
            status="output_limit",
            error_type="ResultTooLarge",
            error=f"`results` is {size} bytes when serialised, over the limit of "
            f"{limits['result_bytes']} bytes; return summaries, not raw data",
        )
        return doc
    doc["results"] = converted
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--job", default="/inputs")
    parser.add_argument("--work", default="/work")
    args = parser.parse_args(argv)
    with open(os.path.join(args.job, ".tern", "meta.json"), encoding="utf-8") as f:
        limits = json.load(f)["limits"]
    mpl_cache = "/opt/tern/mplcache"
    mpl_dir = os.environ.get("MPLCONFIGDIR")
    if mpl_dir and os.path.isdir(mpl_cache):
        os.makedirs(mpl_dir, exist_ok=True)
        for entry in os.listdir(mpl_cache):
            if entry.endswith(".json"):
                with (
                    open(os.path.join(mpl_cache, entry), "rb") as src,
                    open(os.path.join(mpl_dir, entry), "wb") as dst,
                ):
                    dst.write(src.read())
    sys.stdout.flush()
    sys.stderr.flush()
    out_fd = os.dup(1)  # the real stdout, for the result document only (not inherited by children)
    out = _Capture(1, int(limits["stdout_bytes"]))
    err = _Capture(2, int(limits["stderr_bytes"]))
    main_pid = os.getpid()
    try:
        doc = run(args.job, args.work)
    except BaseException as exc:  # the runner itself failed (bad job directory, ...)
        doc = {
            "tern_runner": 1,
            "status": "error",
            "results": None,
            "figures": [],
            "figures_dropped": 0,
            "error_type": type(exc).__name__,
            "error_line": None,
            "code_s": None,
            "error": "sandbox runner failed: " + "".join(traceback.format_exception(exc)).strip(),
        }
    if os.getpid() != main_pid:  # a process the code forked got here: only the runner reports
        os._exit(0)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    doc["stdout"], doc["stdout_bytes"], doc["stdout_truncated"] = out.finish()
    doc["stderr"], doc["stderr_bytes"], doc["stderr_truncated"] = err.finish()
    data = json.dumps(doc, allow_nan=True).encode("ascii")  # ASCII: lone surrogates cannot break it
    view = memoryview(data)
    while view:
        view = view[os.write(out_fd, view) :]
    os.close(out_fd)
    return 0


if __name__ == "__main__":
    code = main()
    # Exit at once: daemon threads, matplotlib or atexit handlers of the code must not change the outcome.
    os._exit(code)
