"""Building the worker image (``infra/worker/Dockerfile``) without any image registry or package index.

On top of the sandbox's base image (``tern-sandbox-base:bookworm``, debootstrap and ``docker import``; built here
when missing, see :mod:`tern.sandbox.image`): Debian's python3 and a virtual environment into which Tern and its
dependencies are installed from wheels made on the build host by ``pip wheel`` (the host's package index
configuration; nothing is fetched inside the build), with the extras :data:`EXTRAS` (the chat bridges' clients:
``tern bridge slack|matrix`` runs from the image). Non-root user 10001, no compilers. The tag is
``tern-worker:<12 hex digits>``, a hash of the Dockerfile, ``pyproject.toml`` and Tern's package files, so an
unchanged tree is never rebuilt; a new build removes the images of earlier trees of the same checkout (label
:data:`SOURCE_LABEL` = the checkout's path), never the images another checkout built on a shared engine.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import docker.errors

from tern.config import TernSettings
from tern.sandbox.engine import docker_client, image_exists
from tern.sandbox.image import BASE_IMAGE, ImageBuildError, build_base, docker_build

REPOSITORY = "tern-worker"
PACKAGES = ("tern", "workflows", "activities", "worker", "starters")
SOURCE_SUFFIXES = (".py", ".json", ".sql", ".txt")
# Extras of pyproject.toml installed in the image: `bridge` = slack-bolt, aiohttp, matrix-nio (not `matrix`, which
# adds the Synapse homeserver; the image runs bridges, not a homeserver).
EXTRAS = ("bridge",)
# Label naming the checkout an image was built from: only images of the same checkout are removed after a build.
SOURCE_LABEL = "org.tern.worker.source"


def source_root() -> Path:
    """The source checkout holding ``pyproject.toml`` and ``infra/worker/Dockerfile``."""
    return Path(__file__).resolve().parents[1]


def content_hash() -> str:
    """12 hex digits of SHA-256 over the Dockerfile, ``pyproject.toml`` and every package file (path and bytes).

    Raises ``ImageBuildError`` outside a source checkout."""
    root = source_root()
    dockerfile = root / "infra" / "worker" / "Dockerfile"
    if not dockerfile.is_file() or not (root / "pyproject.toml").is_file():
        raise ImageBuildError(
            f"{dockerfile} or pyproject.toml not found: build the worker image from a source checkout"
        )
    digest = hashlib.sha256()
    files = [dockerfile, root / "pyproject.toml"]
    for pkg in PACKAGES:
        files += sorted(
            p for p in (root / pkg).rglob("*") if p.suffix in SOURCE_SUFFIXES and "__pycache__" not in p.parts
        )
    for path in files:
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:12]


def image_ref() -> str:
    """``tern-worker:<content hash>``."""
    return f"{REPOSITORY}:{content_hash()}"


def build_worker_image(settings: TernSettings, *, force: bool = False, progress: Callable[[str], None] = print) -> str:
    """Build the worker image unless ``image_ref()`` exists (or ``force``); returns the reference, also tagged
    ``tern-worker:latest``. Raises ``SandboxUnavailable`` when the Docker engine is unreachable and
    ``ImageBuildError`` naming the stage that failed (base image, ``pip wheel``, ``docker build``)."""
    client = docker_client(timeout_s=900)
    ref = image_ref()
    if not force and image_exists(client, ref):
        progress(f"worker image {ref} is up to date")
        return ref
    if not image_exists(client, BASE_IMAGE):
        build_base(client, settings, progress)
    with tempfile.TemporaryDirectory(prefix="tern-worker-ctx-") as ctx:
        wheels = Path(ctx) / "wheels"
        extras = ",".join(EXTRAS)
        progress(f"pip wheel {source_root()}[{extras}] -> wheelhouse")
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "-q",
                "--disable-pip-version-check",
                "-w",
                str(wheels),
                f".[{extras}]",
            ],
            cwd=source_root(),
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise ImageBuildError(f"pip wheel failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        shutil.copy(source_root() / "infra" / "worker" / "Dockerfile", Path(ctx) / "Dockerfile")
        progress(f"docker build -> {ref}")
        docker_build(
            client,
            ctx,
            ref,
            progress,
            nocache=force,
            buildargs={"TERN_EXTRAS": extras, "TERN_IMAGE_TAG": ref.rpartition(":")[2]},  # the workers' build id
            labels={SOURCE_LABEL: str(source_root())},
        )
    image = client.images.get(ref)
    image.tag(REPOSITORY, "latest")
    progress(f"built {ref} (also {REPOSITORY}:latest)")
    _remove_older(client, image.id, str(source_root()), progress)
    return ref


def _remove_older(client: docker.DockerClient, keep_id: str, source: str, progress: Callable[[str], None]) -> None:
    """Remove the ``tern-worker`` images built from the checkout ``source`` (label :data:`SOURCE_LABEL`) other than
    ``keep_id`` (each holds a ~600 MB environment layer). Images of other checkouts, unlabelled images and an image
    a container still uses stay (the engine refuses; not an error)."""
    for old in client.images.list(name=REPOSITORY, filters={"label": f"{SOURCE_LABEL}={source}"}):
        if old.id == keep_id:
            continue
        try:
            client.images.remove(old.id)
            progress(f"removed the older worker image {', '.join(old.tags) or old.short_id}")
        except docker.errors.APIError:
            pass
