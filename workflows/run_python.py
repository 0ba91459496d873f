"""The python step of ``AgentRunWorkflow``: the child workflow ``PythonExecutionWorkflow`` runs the code; the
writes it proposes become the next steps (``control_write``, checked and approved like any other)."""

from __future__ import annotations

from typing import Any

from temporalio import workflow

from workflows.python_execution import PythonExecutionWorkflow
from workflows.queues import long_queue
from workflows.run_base import RunSteps

with workflow.unsafe.imports_passed_through():
    from tern.models import ControlWriteStep, PythonStep, StepResult
    from tern.models.plan import derived_write_id, input_name
    from tern.models.python_step import PythonRunInput

# Writes a python step proposes are '<step>#write-<n>' (tern.models.plan.derived_write_id; '#' is refused in plan
# ids). Runs that derived them before replay with the old '<step>-write-<n>', which a plan step could be named too.
DERIVED_WRITE_ID_PATCH = "derived-write-id-1"
SERIES_INPUT_SUFFIX = "_series"  # a python step gets an archiver_read step's samples as input '<name>_series'
STRUCTURED_INPUT_SEPARATOR = "__"  # ... and reading k's stored PVAccess value as '<name>__<k>' (sandbox load_image)
MAX_PROPOSED_WRITES = 10  # writes one python step may propose
# The python child runs on the long-work queue (workflows.queues: its own activity slots, so sandbox runs cannot
# starve the write path); runs that started their children before replay them on the parent's queue.
LONG_QUEUE_PATCH = "long-work-queue-1"


def _legacy_write_id(step_id: str, n: int) -> str:
    """The id runs started before ``DERIVED_WRITE_ID_PATCH`` gave the ``n``-th write python step ``step_id``
    proposed (kept for replay only)."""
    return f"{step_id}-write-{n}"


class PythonSteps(RunSteps):
    """Handler of the ``python`` step kind."""

    def _series_files(self, step_ids: list[str]) -> dict[str, str]:
        """Input name ``<id>_series`` -> artifact id for the archived series of the steps ``step_ids`` (and of
        the sources of gather steps among them), and ``<id>__<k>`` -> the artifact of their reading ``k`` when it
        is a structured PVAccess value (no such readings in runs before PVAccess: replays add no input)."""
        files: dict[str, str] = {}
        for s in self._steps:
            if s.step_id not in step_ids:
                continue
            for r in [s, *(s.sources or [])]:
                if r.archived and r.archived.artifact_id:
                    files[input_name(r.step_id) + SERIES_INPUT_SUFFIX] = r.archived.artifact_id
                for k, reading in enumerate(r.readings or []):  # structured PVAccess values (load_image)
                    if reading.artifact_id:
                        files[f"{input_name(r.step_id)}{STRUCTURED_INPUT_SEPARATOR}{k}"] = reading.artifact_id
        return files

    async def _python(self, step: PythonStep) -> StepResult:
        """Run the step as the child workflow; the writes its code proposes become the next steps."""
        req, workflow_id = self._req, self._workflow_id
        inputs: dict[str, Any] = {
            input_name(s.step_id): s.model_dump(mode="json", exclude_none=True)
            for s in self._steps
            if s.step_id in step.inputs
        }
        files = self._series_files(step.inputs)  # by reference; the sandbox activity mounts them read-only
        outcome = await workflow.execute_child_workflow(
            PythonExecutionWorkflow.run,
            PythonRunInput(
                workflow_id=workflow_id,
                step_id=step.id,
                user=req.user,
                approvers=req.approvers,
                approval_timeout_s=req.approval_timeout_s,
                approval_mode=req.python_approval_mode,
                code=step.code,
                objective=step.objective,
                inputs=inputs,
                files=files,
                expected_keys=step.expected_keys,
                max_attempts=step.max_attempts,
            ),
            id=self.child_id(workflow_id, step.id),
            # A run that is terminated or times out asks its python step to stop (its sandbox container is
            # killed) and the step audits the cancel; the default, TERMINATE, killed it with no record.
            parent_close_policy=workflow.ParentClosePolicy.REQUEST_CANCEL,
            static_summary=f"python step {step.id} of {workflow_id}",
            task_queue=long_queue(workflow.info().task_queue) if workflow.patched(LONG_QUEUE_PATCH) else None,
        )
        result = StepResult(
            step_id=step.id, kind=step.kind, status=outcome.status, python=outcome, message=outcome.message
        )
        if outcome.status != "completed" or outcome.execution is None:
            return result
        proposed = outcome.execution.proposed_writes
        derived = derived_write_id if proposed and workflow.patched(DERIVED_WRITE_ID_PATCH) else _legacy_write_id
        self._queue[0:0] = [
            ControlWriteStep(
                id=derived(step.id, n),
                channel=w.channel,
                value=w.value,
                reason=w.reason or f"proposed by python step {step.id}",
            )
            for n, w in enumerate(proposed[:MAX_PROPOSED_WRITES], start=1)
        ]
        self._total += min(len(proposed), MAX_PROPOSED_WRITES)
        if len(proposed) > MAX_PROPOSED_WRITES:
            result.message += f"; only the first {MAX_PROPOSED_WRITES} proposed writes are considered"
        return result
