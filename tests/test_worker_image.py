"""The worker image (infra/worker/Dockerfile, `tern image build worker`) runs as the worker of an embedded stack:
PostgreSQL, the Temporal dev server and the simulated IOC from ``EmbeddedStack.up(only=...)``, the worker in a
container on the host network; the demo plan without its python step completes with a verified write. The
container runs as a non-root user, has no compiler, has the chat bridges' clients (slack-bolt, matrix-nio; not
Synapse), logs JSON lines, and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tern.config import TernSettings
from tern.embedded.net import free_port
from tern.embedded.stack import EmbeddedStack
from tests.conftest import unavailable

pytestmark = [pytest.mark.docker, pytest.mark.temporal, pytest.mark.postgres, pytest.mark.ca]


@pytest.fixture(scope="module")
def worker_image() -> str:
    from tern.sandbox import SandboxError
    from tern.worker_image import build_worker_image

    try:
        return build_worker_image(TernSettings(), progress=lambda _line: None)
    except SandboxError as exc:
        unavailable(f"the worker image cannot be built here: {exc}")
        raise


async def test_image_is_the_worker_of_an_embedded_stack(worker_image: str, tmp_path: Path) -> None:
    import docker
    from temporalio.client import Client
    from temporalio.contrib.pydantic import pydantic_data_converter

    from starters.plan_file import load_plan
    from tern import DATA_DIR
    from tern.models import AgentRunRequest, Decision
    from tests.agent_helpers import wait_for_state
    from workflows.agent_run import AgentRunWorkflow

    settings = TernSettings(
        data_dir=tmp_path / "tern",
        database={"pg_port": free_port()},
        control={"ca_server_port": free_port()},
        temporal={
            "address": f"127.0.0.1:{free_port()}",
            "ui_port": free_port(),
            "task_queue": "tq-image-" + uuid.uuid4().hex[:6],
        },
        worker={"http_port": free_port()},
        archiver={"port": free_port()},
    )
    stack = EmbeddedStack(settings)
    engine = docker.from_env()
    container = None
    try:
        await asyncio.to_thread(stack.up, ("postgres", "temporal", "sim", "archiver"))  # the plan reads history
        container = engine.containers.run(
            worker_image,
            detach=True,
            network_mode="host",
            name=f"tern-worker-test-{uuid.uuid4().hex[:8]}",
            environment={
                "TERN_TEMPORAL__ADDRESS": settings.temporal.address,
                "TERN_DATABASE__URL": settings.dsn,
                "TERN_TEMPORAL__TASK_QUEUE": settings.temporal.task_queue,
                "TERN_CONTROL__CA_SERVER_PORT": str(settings.control.ca_server_port),
                "TERN_CONTROL__CA_ADDR_LIST": "127.0.0.1",
                "TERN_CONTROL__WRITES_ENABLED": "true",
                "TERN_WORKER__HTTP_HOST": "127.0.0.1",
                "TERN_WORKER__HTTP_PORT": str(settings.worker.http_port),
                "TERN_WORKER__CA_PROBE_CHANNEL": "SR:RF:CAVITY:01:VOLTAGE:SP",
                "TERN_ARCHIVER__URL": settings.archiver.base_url,
            },
        )
        readyz = f"http://127.0.0.1:{settings.worker.http_port}/readyz"
        deadline = time.monotonic() + 90
        deps: dict = {}
        while time.monotonic() < deadline:
            try:
                async with httpx.AsyncClient(timeout=10) as http:
                    deps = (await http.get(readyz)).json()["dependencies"]
                if all(deps[n]["ok"] for n in ("temporal", "postgres", "channel_access")):
                    break
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            container.reload()
            assert container.status == "running", container.logs().decode()[-3000:]
            await asyncio.sleep(0.5)
        else:
            pytest.fail(f"worker container not ready: {deps}\n{container.logs().decode()[-3000:]}")
        assert not deps["sandbox"]["ok"]  # no Docker socket in this container: python steps would fail, said so

        client = await Client.connect(settings.temporal.address, data_converter=pydantic_data_converter)
        plan = load_plan(DATA_DIR.parent / "plans" / "demo_no_sandbox.json")
        handle = await client.start_workflow(
            AgentRunWorkflow.run,
            AgentRunRequest(user="alice", query="cavity 1?", plan=plan, approvers=["bob"]),
            id=f"run-{uuid.uuid4().hex[:10]}",
            task_queue=settings.temporal.task_queue,
        )
        try:
            st = await wait_for_state(handle, "awaiting_approval", within_s=120)
        except TimeoutError:
            pytest.fail(f"the run never asked for approval; worker log:\n{container.logs().decode()[-4000:]}")
        assert st.pending is not None
        await handle.execute_update(
            AgentRunWorkflow.decide, Decision(request_id=st.pending.request_id, approver="bob", approved=True)
        )
        result = await asyncio.wait_for(handle.result(), 90)
        assert result.status == "completed", (result.error, container.logs().decode()[-3000:])
        assert len(result.writes) == 1 and result.writes[0].verified

        uid = container.exec_run(["id", "-u"]).output.decode().strip()
        assert uid == "10001"
        compilers = container.exec_run(["sh", "-c", "command -v gcc cc c++ clang || true"]).output.decode().strip()
        assert compilers == "", compilers
        # the chat bridges' clients (extra `bridge`), so `tern bridge slack|matrix` runs from the image; no Synapse
        probe = "import aiohttp, nio, slack_bolt, slack_sdk, importlib.util as u; print(u.find_spec('synapse'))"
        clients = container.exec_run(["python3", "-c", probe])
        assert clients.exit_code == 0 and clients.output.decode().strip() == "None", clients.output.decode()
        help_ = container.exec_run(["tern", "bridge", "matrix", "--help"])
        assert help_.exit_code == 0, help_.output.decode()[-2000:]
        lines = [json.loads(line) for line in container.logs(stderr=True).decode().splitlines() if line.startswith("{")]
        wrote = [r for r in lines if r["message"].startswith("wrote SR:RF:CAVITY:01:VOLTAGE:SP")]
        assert wrote and wrote[0]["workflow_id"] == handle.id and wrote[0]["step_id"] == "lower-voltage", lines[-5:]

        container.stop(timeout=30)  # SIGTERM: drains and exits 0
        assert container.wait(timeout=30)["StatusCode"] == 0, container.logs().decode()[-2000:]
    finally:
        if container is not None:
            container.remove(force=True)
        await asyncio.to_thread(stack.down)


def test_a_build_removes_only_its_own_checkouts_older_images() -> None:
    """After a build, older ``tern-worker`` images of the same checkout go; an image another checkout built on the
    same engine (another label) and an unlabelled one stay. Tiny images on the sandbox's base stand in for the
    ~600 MB worker images; the checkout label is a unique value, so the real images of this checkout are not
    touched."""
    import io

    import docker.errors

    from tern.sandbox import SandboxError
    from tern.sandbox.engine import docker_client, image_exists
    from tern.sandbox.image import BASE_IMAGE, build_base
    from tern.worker_image import REPOSITORY, SOURCE_LABEL, _remove_older

    try:
        client = docker_client()
        if not image_exists(client, BASE_IMAGE):
            build_base(client, TernSettings(), progress=lambda _line: None)
    except SandboxError as exc:
        unavailable(f"no Docker engine or base image here: {exc}")
        raise
    ours, theirs = f"/checkouts/ours-{uuid.uuid4().hex[:8]}", f"/checkouts/theirs-{uuid.uuid4().hex[:8]}"
    built: dict[str, str] = {}

    def image(name: str, labels: dict[str, str]) -> str:
        tag = f"{REPOSITORY}:test-{name}-{uuid.uuid4().hex[:8]}"
        dockerfile = f"FROM {BASE_IMAGE}\nLABEL test.name={name}\n".encode()
        img, _ = client.images.build(fileobj=io.BytesIO(dockerfile), tag=tag, labels=labels, rm=True)
        built[name] = tag
        return str(img.id)

    try:
        image("older", {SOURCE_LABEL: ours})
        keep = image("current", {SOURCE_LABEL: ours})
        image("other-checkout", {SOURCE_LABEL: theirs})
        image("unlabelled", {})
        said: list[str] = []
        _remove_older(client, keep, ours, said.append)
        left = {name for name, tag in built.items() if image_exists(client, tag)}
        assert left == {"current", "other-checkout", "unlabelled"}, left
        assert said == [f"removed the older worker image {built['older']}"], said
    finally:
        for tag in built.values():
            try:
                client.images.remove(tag, force=True)
            except docker.errors.APIError:
                pass
