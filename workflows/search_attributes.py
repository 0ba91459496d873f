"""Typed search attributes of Tern runs (registered on the dev server by ``tern up``).

The Web UI and ``tern pending`` filter on them, e.g.
``TernPendingApproval = "control_write" AND ExecutionStatus = "Running"``.
"""

from temporalio import workflow
from temporalio.common import SearchAttributeKey

with workflow.unsafe.imports_passed_through():
    from tern.models import search_attributes as names
    from tern.models.search_attributes import NO_APPROVAL

RUN_STATE = SearchAttributeKey.for_keyword(names.RUN_STATE)
PENDING_APPROVAL = SearchAttributeKey.for_keyword(names.PENDING_APPROVAL)
RUN_USER = SearchAttributeKey.for_keyword(names.RUN_USER)

ALL = (RUN_STATE, PENDING_APPROVAL, RUN_USER)
__all__ = ["ALL", "NO_APPROVAL", "PENDING_APPROVAL", "RUN_STATE", "RUN_USER"]
