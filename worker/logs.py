"""The worker's log lines: human (default) or JSON lines (``TERN_WORKER__LOG_FORMAT=json``, the worker image's default)
carrying, where they apply, the Temporal workflow id and run id, the activity type, Tern's run id, step id and
approval request id, and the OpenTelemetry trace and span ids.

The ids come from three places: the activity's own info (``temporalio.activity.info()``), the
``temporal_workflow`` record extra that ``workflow.logger`` adds, and :class:`LogContextInterceptor`, which
reads ``workflow_id`` (logged as ``run_id``) / ``step_id`` / ``request_id`` from each activity's input model
into a context variable for the activity's duration. JSON encoding: python-json-logger's ``JsonFormatter``.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from typing import IO, Any

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter
from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from tern.config import TernSettings

HUMAN_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"
# log field -> attribute of an activity's input model it is read from, when the model has it. Tern's run id keeps
# the log field name ``run_id`` (log queries written before the rename); the models call it ``workflow_id``.
INPUT_FIELDS = {"run_id": "workflow_id", "step_id": "step_id", "request_id": "request_id"}

_activity_fields: ContextVar[dict[str, str]] = ContextVar("tern_log_fields", default={})  # noqa: B039 - never mutated


class ContextFilter(logging.Filter):
    """Adds ``workflow_id``, ``workflow_run_id``, ``activity``, ``run_id``, ``step_id``, ``request_id``,
    ``trace_id`` and ``span_id`` to a record, each only when known (never overwriting an attribute the record
    already has)."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields: dict[str, Any] = {}
        wf = getattr(record, "temporal_workflow", None)
        if isinstance(wf, dict):
            fields.update(workflow_id=wf.get("workflow_id"), workflow_run_id=wf.get("run_id"))
        if activity.in_activity():
            info = activity.info()
            fields.update(
                workflow_id=info.workflow_id, workflow_run_id=info.workflow_run_id, activity=info.activity_type
            )
        fields.update(_activity_fields.get())
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            fields.update(trace_id=format(ctx.trace_id, "032x"), span_id=format(ctx.span_id, "016x"))
        for key, value in fields.items():
            if value is not None and not hasattr(record, key):
                setattr(record, key, value)
        return True


def make_handler(log_format: str, stream: IO[str] | None = None) -> logging.Handler:
    """A stream handler (default stderr) in ``log_format`` ('human' or 'json') with the :class:`ContextFilter`."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter(JSON_FIELDS, rename_fields={"levelname": "level", "name": "logger"}))
    else:
        handler.setFormatter(logging.Formatter(HUMAN_FORMAT))
    handler.addFilter(ContextFilter())
    return handler


def configure_logging(settings: TernSettings, level: int = logging.INFO) -> None:
    """Replace the root logger's handlers with one :func:`make_handler` for ``settings.worker.log_format``."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(make_handler(settings.worker.log_format))
    root.setLevel(level)


class LogContextInterceptor(Interceptor):
    """Worker interceptor: while an activity runs, its input's ``workflow_id`` (as ``run_id``), ``step_id`` and
    ``request_id`` are in the log context (:class:`ContextFilter` adds them to every record)."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityLogContext(next)


class _ActivityLogContext(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        fields = {
            name: str(value)
            for arg in input.args
            for name, attr in INPUT_FIELDS.items()
            if (value := getattr(arg, attr, None)) is not None
        }
        token = _activity_fields.set(fields)
        try:
            return await super().execute_activity(input)
        finally:
            _activity_fields.reset(token)
