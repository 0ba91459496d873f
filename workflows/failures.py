"""What a person should read of a failed activity or child workflow (shared by Tern's workflows)."""

from __future__ import annotations

from temporalio.exceptions import ActivityError, ChildWorkflowError


def error_message(exc: BaseException) -> str:
    """The message of the failure behind an activity or child-workflow error (its cause's message), else
    ``str(exc)``."""
    cause = exc.cause if isinstance(exc, ActivityError | ChildWorkflowError) and exc.cause else exc
    return str(getattr(cause, "message", None) or cause)
