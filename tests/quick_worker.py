"""``python -m tests.quick_worker``: the production worker (``worker.main``) with the workflows of
:data:`tests.workflow_variants.QUICK_WORKER_WORKFLOWS` registered in place of the production ones of the same
name: the same procedures with shorter heartbeat timeouts, so a test that SIGKILLs a worker waits seconds, not
production's 20 s, for Temporal to notice and retry the activity on the next worker. Everything else (settings
from the environment, activities, interceptors, health endpoint) is ``worker.main``'s.
"""

from __future__ import annotations

import worker.main as worker_main
from tests.workflow_variants import QUICK_WORKER_WORKFLOWS


def use_quick_workflows() -> None:
    """Swap the variants into ``worker.main.WORKFLOWS`` (read by ``build_worker`` at call time). Raises
    ``ValueError`` when a variant replaces no production workflow (a renamed workflow would otherwise run twice
    under one name)."""
    quick = {workflow_name(w): w for w in QUICK_WORKER_WORKFLOWS}
    names = {workflow_name(w) for w in worker_main.WORKFLOWS}
    missing = set(quick) - names
    if missing:
        raise ValueError(f"no production workflow named {', '.join(sorted(missing))} to replace")
    worker_main.WORKFLOWS = tuple(quick.get(workflow_name(w), w) for w in worker_main.WORKFLOWS)


def workflow_name(cls: type) -> str:
    """The name a workflow class is registered under (``@workflow.defn(name=...)``, else the class name)."""
    from temporalio.workflow import _Definition

    defn = _Definition.from_class(cls)
    assert defn is not None and defn.name is not None, cls
    return defn.name


if __name__ == "__main__":
    use_quick_workflows()
    worker_main.main()
