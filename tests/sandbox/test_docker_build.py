"""``tern.sandbox.image.docker_build``, the one reader of the engine's build stream (sandbox and worker images), on
the real Docker engine: a build from ``scratch`` (nothing pulled) gives its image and reports its steps; a failing
build raises ``ImageBuildError`` with the engine's error and the output before it."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.conftest import unavailable

pytestmark = [pytest.mark.docker]


@pytest.fixture
def client():
    from tern.sandbox import SandboxError
    from tern.sandbox.engine import docker_client

    try:
        engine = docker_client(timeout_s=60)
    except SandboxError as exc:
        unavailable(f"the Docker engine is not reachable: {exc}")
        raise
    yield engine
    engine.close()


def test_a_build_from_scratch_tags_its_image_and_reports_its_steps(client, tmp_path: Path) -> None:
    from tern.sandbox.image import docker_build

    (tmp_path / "Dockerfile").write_text('FROM scratch\nCOPY hello.txt /hello.txt\nLABEL built.by="test"\n')
    (tmp_path / "hello.txt").write_text("hello\n")
    ref = f"tern-test-build:{uuid.uuid4().hex[:12]}"
    lines: list[str] = []
    try:
        docker_build(client, tmp_path, ref, lines.append, labels={"tern.test": "docker-build"})
        image = client.images.get(ref)
        assert image.labels == {"built.by": "test", "tern.test": "docker-build"}
    finally:
        client.images.remove(ref, force=True)
    steps = [line.strip() for line in lines if line.strip().startswith("Step ")]
    # the Dockerfile's three instructions, then the engine's own step for the labels given to the build
    assert [step.split(" : ")[0] for step in steps] == ["Step 1/4", "Step 2/4", "Step 3/4", "Step 4/4"]
    assert steps[1] == "Step 2/4 : COPY hello.txt /hello.txt" and steps[3].startswith("Step 4/4 : LABEL")


def test_a_failing_build_raises_with_the_engine_error_and_the_output_before_it(client, tmp_path: Path) -> None:
    from tern.sandbox.image import ImageBuildError, docker_build

    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY absent.txt /absent.txt\n")
    ref = f"tern-test-build:{uuid.uuid4().hex[:12]}"
    with pytest.raises(ImageBuildError) as info:
        docker_build(client, tmp_path, ref, lambda _line: None)
    message = str(info.value)
    assert message.startswith("docker build failed: ") and "absent.txt" in message
    assert "Step 2/2 : COPY absent.txt /absent.txt" in message  # the output before the error
