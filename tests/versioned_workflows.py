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


@workflow.defn(name="PatchedWaiting")
class PatchedWaiting(_Gate):
    """Records ``approval-policy-1`` per request (``<id>:<step>``, twice) and ``test-only-1``, then waits."""

    @workflow.run
    async def run(self) -> str:
        workflow.patched("approval-policy-1:write-1")
        workflow.patched("approval-policy-1:write-2")
        workflow.patched("test-only-1")
        await workflow.wait_condition(lambda: self.go)
        return "done"


@workflow.defn(name="Marker")
class MarkerPatched:
    """A branch behind ``workflow.patched("m-1")``: a history of it records the (non-deprecated) marker."""

    @workflow.run
    async def run(self) -> str:
        if workflow.patched("m-1"):
            await workflow.sleep(0.01)
        return "ok"


@workflow.defn(name="Marker")
class MarkerDeprecated:
    """Step 2 of retiring ``m-1``: ``deprecate_patch``; its histories record a deprecated marker."""

    @workflow.run
    async def run(self) -> str:
        workflow.deprecate_patch("m-1")
        await workflow.sleep(0.01)
        return "ok"


@workflow.defn(name="Marker")
class MarkerRemoved:
    """Step 3: the call removed."""

    @workflow.run
    async def run(self) -> str:
        await workflow.sleep(0.01)
        return "ok"
