"""Tern's run id, in Temporal's terms: an agent run is identified by its **Workflow ID** (``tern-run-…``; a
python step runs as the child workflow ``<workflow id>.<step id>``). Temporal's *Run ID* is something else: the
id of one execution of a Workflow ID (it changes on continue-as-new, retry or reset). Tern's code says
``workflow_id`` for its id and keeps ``run_id`` for Temporal's (``workflow.info().run_id``).

Models that travel in workflow history were written with the key ``run_id`` before this name was settled; they
still accept it (``validation_alias``), so old histories replay and old payloads load. The CLI's ``--json``
outputs keep ``run_id`` beside ``workflow_id`` for scripts; the audit table's column is still ``run_id``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AliasChoices, Field

WorkflowId = Annotated[
    str,
    Field(
        validation_alias=AliasChoices("workflow_id", "run_id"),
        description="Workflow ID of the agent run (or of its python step's child workflow); 'run_id' accepted.",
    ),
]
"""A Workflow ID field named ``workflow_id`` that also loads from the older key ``run_id``."""

CHILD_WORKFLOW_ID_ALIASES = AliasChoices("child_workflow_id", "child_run_id")
"""Keys a status's ``child_workflow_id`` loads from (``child_run_id`` before the rename)."""
