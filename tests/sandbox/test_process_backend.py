"""The process backend (no isolation): refused unless permitted, labelled loudly, limits still apply."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

import psutil
import pytest

from tern.config import TernSettings
from tern.sandbox import ExecutionRequest, SandboxLimits, SandboxUnavailable, execute, get_backend
from tern.sandbox.process_backend import ProcessBackend


def _running(select: Callable[[psutil.Process], bool], within_s: float = 5.0) -> list[psutil.Process]:
    """The processes matching ``select`` that are still running (not zombies) after up to ``within_s`` seconds:
    a SIGKILLed process closes its pipes a moment before the kernel marks it dead, so poll, don't glance."""
    deadline = time.monotonic() + within_s
    while True:
        running = [
            p
            for p in psutil.process_iter(["pid", "cmdline", "status"])
            if select(p) and p.info["status"] != psutil.STATUS_ZOMBIE
        ]
        if not running or time.monotonic() > deadline:
            return running
        time.sleep(0.05)


@pytest.fixture
def allowed() -> TernSettings:
    return TernSettings(sandbox={"allow_process_backend": True, "backend": "process"})


async def test_process_backend_is_refused_unless_permitted() -> None:
    settings = TernSettings(sandbox={"allow_process_backend": False})
    with pytest.raises(SandboxUnavailable, match="TERN_SANDBOX__ALLOW_PROCESS_BACKEND"):
        get_backend(settings, "process")
    with pytest.raises(SandboxUnavailable, match="WITHOUT isolation"):
        ProcessBackend(settings)


async def test_process_backend_runs_code_and_says_there_is_no_isolation(allowed: TernSettings) -> None:
    code = "import numpy as np\nprint('hi')\nresults = {'mean': np.mean(values), 'n': len(values)}"
    request = ExecutionRequest(code=code, inputs={"values": [1, 2, 3, 6]}, expected_keys=["mean"])
    result = await execute(request, get_backend(allowed))
    assert result.status == "ok", result.feedback()
    assert result.results == {"mean": 3.0, "n": 4}
    assert result.backend == "process" and result.isolation == "none"
    assert "WITHOUT isolation" in result.stderr
    assert result.stdout == "hi\n"


async def test_process_backend_timeout_kills_the_process_group(allowed: TernSettings) -> None:
    marker = f"{300 + random.random():.6f}"  # a unique sleep duration identifies the child
    code = f"import subprocess, time\nsubprocess.Popen(['sleep', '{marker}'])\ntime.sleep(60)\n"
    request = ExecutionRequest(code=code, limits=SandboxLimits(timeout_s=2))
    result = await execute(request, backend=ProcessBackend(allowed))
    assert result.status == "timeout" and result.isolation == "none"
    survivors = _running(lambda p: p.info["cmdline"] == ["sleep", marker])
    assert not survivors, "the code's child process survived the timeout"


async def test_process_backend_leaves_no_child_behind(allowed: TernSettings) -> None:
    code = "import subprocess\nchild = subprocess.Popen(['sleep', '300'])\nresults = {'pid': child.pid}"
    result = await execute(ExecutionRequest(code=code), backend=ProcessBackend(allowed))
    assert result.status == "ok", result.feedback()
    pid = result.results["pid"]
    assert isinstance(pid, int)
    assert not _running(lambda p: p.info["pid"] == pid), f"child process {pid} survived the execution"


async def test_process_backend_memory_limit(allowed: TernSettings) -> None:
    code = "x = bytearray(2 * 1024**3)\nresults = {}"
    result = await execute(
        ExecutionRequest(code=code, limits=SandboxLimits(memory_bytes=512 * 2**20)),
        backend=ProcessBackend(allowed),
    )
    assert result.status == "error" and result.error_type == "MemoryError"


async def test_process_backend_cancel_event_kills_the_code(allowed: TernSettings) -> None:
    cancel = asyncio.Event()
    asyncio.get_running_loop().call_later(0.5, cancel.set)
    request = ExecutionRequest(code="import time\ntime.sleep(60)\nresults = {}", limits=SandboxLimits(timeout_s=30))
    result = await asyncio.wait_for(execute(request, ProcessBackend(allowed), cancel_event=cancel), 20)
    assert result.status == "killed" and result.error_type == "Cancelled", result.feedback()


# --- Issue 22: the process backend requires every piece of code to be approved --------------------------------
@pytest.mark.parametrize("mode", ["control_writes", "disabled"])
def test_settings_refuse_the_process_backend_without_all_code(mode: str) -> None:
    from pydantic import ValidationError

    from tern.config import setting_error

    with pytest.raises(ValidationError) as info:
        TernSettings(sandbox={"backend": "process", "allow_process_backend": True}, approval={"python_mode": mode})
    message = setting_error(info.value)
    assert "process sandbox backend" in message and "requires python approval mode all_code" in message
    assert repr(mode) in message
    TernSettings(sandbox={"backend": "docker"}, approval={"python_mode": mode})  # isolated: any mode
    TernSettings(sandbox={"backend": "process"}, approval={"python_mode": "all_code"})


def _execute_input(code: str = "results = {'ran': True}"):
    from tern.models.python_step import ExecuteInput

    return ExecuteInput(
        workflow_id="run-iso", step_id="py", attempt=1, code=code, inputs={}, files={}, expected_keys=[]
    )


async def _run_activity(settings: TernSettings, tmp_path):
    """``execute_python`` in Temporal's real activity environment, on the process backend; a marker file says
    whether the code ran."""
    from temporalio.testing import ActivityEnvironment

    from activities.sandbox import SandboxActivities

    marker = tmp_path / "ran"
    acts = SandboxActivities(settings, pool=None, backend=ProcessBackend(settings))  # type: ignore[arg-type]
    code = f"open({str(marker)!r}, 'w').write('x')\nresults = {{'ran': True}}"
    return await ActivityEnvironment().run(acts.execute_python, _execute_input(code))


async def test_execution_path_refuses_the_process_backend_when_settings_were_bypassed(allowed, tmp_path) -> None:
    """Settings built without validation (``model_copy``) still cannot run unapproved code unisolated."""
    from temporalio.exceptions import ApplicationError

    approval = allowed.approval.model_copy(update={"python_mode": "control_writes"})
    weak = allowed.model_copy(update={"approval": approval})  # no validation: the settings check is bypassed
    with pytest.raises(ApplicationError, match="requires python approval mode all_code") as info:
        await _run_activity(weak, tmp_path)
    assert info.value.non_retryable and info.value.type == "SandboxUnavailable"
    assert not (tmp_path / "ran").exists()


async def test_execution_path_and_worker_start_refuse_a_policy_file_that_lowers_the_floor(allowed, tmp_path) -> None:
    """The approval policy file sets the floor when there is one: ``control_writes`` there is refused too, at
    worker start and on the execution path; ``all_code`` runs."""
    from temporalio.exceptions import ApplicationError

    from tern.approval import ApprovalPolicyError
    from worker.main import check_approval_policy

    policy = tmp_path / "policy.toml"
    policy.write_text('default_approvers = ["bob"]\npython_approval_mode = "control_writes"\n')
    s = TernSettings(
        sandbox={"backend": "process", "allow_process_backend": True}, approval={"policy_path": str(policy)}
    )
    with pytest.raises(ApprovalPolicyError, match="requires python approval mode all_code"):
        check_approval_policy(s)
    with pytest.raises(ApplicationError, match="requires python approval mode all_code"):
        await _run_activity(s, tmp_path)
    assert not (tmp_path / "ran").exists()

    policy.write_text('default_approvers = ["bob"]\npython_approval_mode = "all_code"\n')
    check_approval_policy(s)
    result = await _run_activity(s, tmp_path)
    assert result.status == "ok" and result.results == {"ran": True} and (tmp_path / "ran").exists()


FORGE = """
import base64, json, os
png = b"\\x89PNG\\r\\n\\x1a\\n" + b"\\0" * 5000
doc = {"tern_runner": 1, "status": "ok", "results": {"blob": "x" * 100}, "figures_dropped": 0,
       "figures": [{"name": f"f{i}", "png_b64": base64.b64encode(png).decode()} for i in range(4)]}
data = json.dumps(doc).encode()
for fd in range(3, 256):  # the runner's copy of the real stdout is one of these: write a document to it
    try:
        os.write(fd, data)
    except OSError:
        pass
os._exit(0)  # the runner never reports
"""
"""Code that writes its own result document (issue 22): 4 figures of 5 KB and 100 bytes of results."""


async def test_a_document_forged_by_the_code_is_held_to_the_limits(allowed: TernSettings) -> None:
    limits = SandboxLimits(timeout_s=20, max_figures=1, figure_bytes=8192)
    result = await execute(ExecutionRequest(code=FORGE, limits=limits), get_backend(allowed))
    assert result.status == "ok" and result.results == {"blob": "x" * 100}, result.feedback()  # it was forged
    assert len(result.figures) == 1 and result.figures_dropped == 3
    small = limits.model_copy(update={"figure_bytes": 4096, "result_bytes": 1024})
    result = await execute(ExecutionRequest(code=FORGE.replace("* 100", "* 2000"), limits=small), get_backend(allowed))
    assert result.status == "output_limit" and result.error_type == "ResultTooLarge" and result.figures == []
    assert result.figures_dropped == 4
