"""Plain ``Literal`` types shared by models, settings and the CLI, in a module without pydantic (so that a
command-line option typed with one does not load the models)."""

from __future__ import annotations

from typing import Literal

ApprovalMode = Literal["disabled", "control_writes", "all_code"]
"""When python code needs approval (Osprey's modes), from weakest to strictest."""
