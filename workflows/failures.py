"""What a person should read of a failed activity or child workflow (shared by Tern's workflows)."""

from __future__ import annotations

from temporalio.exceptions import ActivityError, ChildWorkflowError


def error_message(exc: BaseException) -> str:
    """The message of the failure behind an activity or child-workflow error (its cause's message), else
    ``str(exc)``."""
    cause = exc.cause if isinstance(exc, ActivityError | ChildWorkflowError) and exc.cause else exc
    return str(getattr(cause, "message", None) or cause)


def failure_chain(exc: BaseException) -> str:
    """The messages of ``exc``'s causes joined with ``: ``, deepest last (e.g. an activity that ran out of
    time: the timeout, then the last attempt's own failure), without repeats."""
    parts: list[str] = []
    cur: BaseException | None = exc.cause if isinstance(exc, ActivityError | ChildWorkflowError) else exc
    while cur is not None:
        text = str(getattr(cur, "message", None) or cur)
        if text and text not in parts:
            parts.append(text)
        cur = getattr(cur, "cause", None) or cur.__cause__
    return ": ".join(parts) or str(exc)
