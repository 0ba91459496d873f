"""Names of Tern's Temporal search attributes (all of type Keyword) and their values: one definition for the
workflows (typed keys in ``workflows/search_attributes.py``), the worker's start-up check and the embedded
stack, which registers them on the dev server.
"""

RUN_STATUS = "TernRunStatus"  # the run's state: running, awaiting_approval, completed, rejected, failed, timed_out
PENDING_APPROVAL = "TernPendingApproval"  # the kind of request waiting for a decision, or NO_APPROVAL
RUN_USER = "TernUser"  # who started the run
NAMES = (RUN_STATUS, PENDING_APPROVAL, RUN_USER)
NO_APPROVAL = "none"
