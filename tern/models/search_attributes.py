"""Tern's Temporal search attributes (all of type Keyword) and their values: the one definition for the
workflows (typed keys in ``workflows/search_attributes.py``), the settings' visibility queries
(``TernSettings.pending_query``), the worker's start-up check and the embedded stack, which registers them on the
dev server.

``TernRunStatus`` carries the run's *state* (:data:`RunState`); its Python key is :data:`RUN_STATE`. The name on
the server stays ``TernRunStatus``: renaming it would mean registering a new attribute on every namespace and
losing the filter on runs started before.
"""

from typing import Literal

RUN_STATE = "TernRunStatus"
"""Search attribute holding the run's state, one of :data:`RunState`."""
PENDING_APPROVAL = "TernPendingApproval"
"""Search attribute holding the kind of request waiting for a decision (``control_write``, ``python``), or
:data:`NO_APPROVAL`."""
RUN_USER = "TernUser"
"""Search attribute holding who started the run."""
NAMES = (RUN_STATE, PENDING_APPROVAL, RUN_USER)
NO_APPROVAL = "none"

RunState = Literal[
    "running", "awaiting_approval", "completed", "rejected", "failed", "timed_out", "cancelled", "frozen"
]
"""Values of ``TernRunStatus`` and of the status query's ``state``: where a run (or its python step) is
(``cancelled``: the run was cancelled while a request waited; ``frozen``: an approved write waits for a thaw of the
facility write freeze)."""
FinalRunState = Literal["completed", "rejected", "failed", "timed_out"]
"""The states a run ends in: its result's ``status`` and the last value of ``TernRunStatus``."""
