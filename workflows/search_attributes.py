"""Typed search attributes of Tern runs (registered on the dev server by ``tern up``).

The Web UI and ``tern pending`` filter on them, e.g.
``TernPendingApproval = "control_write" AND ExecutionStatus = "Running"``.
"""

from temporalio.common import SearchAttributeKey

RUN_STATUS = SearchAttributeKey.for_keyword("TernRunStatus")
PENDING_APPROVAL = SearchAttributeKey.for_keyword("TernPendingApproval")
RUN_USER = SearchAttributeKey.for_keyword("TernUser")

ALL = (RUN_STATUS, PENDING_APPROVAL, RUN_USER)
NO_APPROVAL = "none"
