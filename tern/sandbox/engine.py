"""The Docker engine client shared by the Docker backend and the image build: connect, ping, and the
engine's errors translated into the sandbox's (``SandboxUnavailable``, ``SandboxError``).

The engine is the one named by ``DOCKER_HOST`` (default: the local socket), as the ``docker`` CLI and the
docker SDK's ``docker.from_env`` read it.
"""

from __future__ import annotations

import docker
import docker.errors

from tern.sandbox.job import SandboxUnavailable


def docker_client(timeout_s: float = 60.0) -> docker.DockerClient:
    """A client for the engine named by ``DOCKER_HOST``, checked with a ping.

    ``timeout_s``: timeout of each engine API call, seconds (whole seconds; the SDK takes an int).
    Raises ``SandboxUnavailable`` when the engine cannot be reached.
    """
    try:
        client = docker.from_env(timeout=int(timeout_s))
        client.ping()
    except docker.errors.DockerException as exc:
        raise SandboxUnavailable(
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


def kill_quietly(client: docker.DockerClient, container_id: str) -> None:
    """Send SIGKILL to a container (the engine's ``kill``); no error when it has already stopped or is gone."""
    try:
        client.api.kill(container_id)
    except docker.errors.APIError:
        pass  # already stopped or gone
