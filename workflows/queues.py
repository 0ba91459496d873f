"""Task queues of one Tern deployment: the main queue (``temporal.task_queue``: agent runs, approvals, writes and
every short activity) and its long-work queue ``<main>-long`` (python steps' child workflows with their sandbox
runs, logbook ingestion and re-embedding). One worker process polls both, each with its own activity slots, so
hour-long sandbox and ingestion work fills only the long queue's slots and never starves a run's write path of
one (issue 26). A pure function of the main queue's name, so workflows may call it (deterministic)."""

from __future__ import annotations

LONG_QUEUE_SUFFIX = "-long"


def long_queue(task_queue: str) -> str:
    """The long-work queue of main queue ``task_queue``: ``<task_queue>-long``."""
    return f"{task_queue}{LONG_QUEUE_SUFFIX}"
