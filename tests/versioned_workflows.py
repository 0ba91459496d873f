"""Two builds (A, B) of a Pinned and an AutoUpgrade test workflow, each returning its build's letter once signalled
(``tests/test_versioning.py``; a module of its own: the workflow sandbox re-imports it)."""

from __future__ import annotations

from temporalio import workflow
from temporalio.common import VersioningBehavior


class _Gate:
    def __init__(self) -> None:
        self.go = False

    @workflow.signal
    def proceed(self) -> None:
        self.go = True


@workflow.defn(name="VersionedPinned", versioning_behavior=VersioningBehavior.PINNED)
class PinnedA(_Gate):
    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self.go)
        return "A"


@workflow.defn(name="VersionedPinned", versioning_behavior=VersioningBehavior.PINNED)
class PinnedB(_Gate):
    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self.go)
        return "B"


@workflow.defn(name="VersionedAuto", versioning_behavior=VersioningBehavior.AUTO_UPGRADE)
class AutoA(_Gate):
    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self.go)
        return "A"


@workflow.defn(name="VersionedAuto", versioning_behavior=VersioningBehavior.AUTO_UPGRADE)
class AutoB(_Gate):
    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self.go)
        return "B"
