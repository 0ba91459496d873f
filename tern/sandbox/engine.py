"""The Docker engine client shared by the Docker backend and the image build: connect, ping, and the
engine's errors translated into the sandbox's (``SandboxUnavailable``, ``SandboxError``).

The engine is the one named by ``DOCKER_HOST`` (default: the local socket), as the ``docker`` CLI and the
docker SDK's ``docker.from_env`` read it.
"""

from __future__ import annotations

import docker
import docker.errors
import requests.exceptions

from tern.sandbox.job import EngineUnreachable, SandboxError, SandboxUnavailable

ENGINE_ERRORS = (requests.exceptions.RequestException, docker.errors.APIError)
"""What an engine API call raises when the engine fails or goes away mid-call (connection refused or reset
on its socket, a 5xx while it shuts down): the docker SDK speaks HTTP through ``requests``."""


def docker_client(timeout_s: float = 60.0) -> docker.DockerClient:
    """A client for the engine named by ``DOCKER_HOST``, checked with a ping.

    ``timeout_s``: timeout of each engine API call, seconds (whole seconds; the SDK takes an int).
    Raises ``EngineUnreachable`` (a ``SandboxUnavailable``) when the engine cannot be reached.
    """
    try:
        client = docker.from_env(timeout=int(timeout_s))
        client.ping()
    except docker.errors.DockerException as exc:
        raise EngineUnreachable(
            f"docker engine not reachable: {exc}. Start dockerd (scripts/system-deps.sh) or set DOCKER_HOST."
        ) from exc
    return client


def image_missing(ref: str) -> SandboxUnavailable:
    """The error for a sandbox image ``ref`` (``repository:tag``) the engine does not have, saying how to
    build it; the caller raises it."""
    return SandboxUnavailable(f"sandbox image {ref} is missing: build it with `tern sandbox build`")


def image_exists(client: docker.DockerClient, ref: str) -> bool:
    """Whether the engine has the image ``ref`` (``repository:tag`` or id). Raises ``docker.errors.APIError``
    when the engine fails."""
    try:
        client.images.get(ref)
    except docker.errors.ImageNotFound:
        return False
    return True


def engine_failed(container_id: str | None, exc: BaseException) -> SandboxError:
    """The error for an engine that failed while container ``container_id`` ran code (``exc``: one of
    ``ENGINE_ERRORS``; ``container_id`` None: before any container existed); the caller raises it. Retrying
    runs the code again in a new container: the error says so, and the activity records such re-runs in the
    result (``ExecutionResult.reruns``)."""
    if container_id is None:
        return SandboxError(f"the Docker engine is not reachable ({type(exc).__name__}: {exc}); the code did not run")
    return SandboxError(
        f"the Docker engine failed while the code ran in container {container_id[:12]} ({type(exc).__name__}: "
        f"{exc}); the code may have run in part or in full, and a retry runs it again"
    )


def kill_quietly(client: docker.DockerClient, container_id: str) -> None:
    """Send SIGKILL to a container (the engine's ``kill``); no error when it has already stopped or is gone."""
    try:
        client.api.kill(container_id)
    except docker.errors.APIError:
        pass  # already stopped or gone
