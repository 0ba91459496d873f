"""Building the sandbox image without any image registry.

Two stages: a base image ``tern-sandbox-base:bookworm`` made with ``debootstrap --variant=minbase`` from
the host's Debian mirror (its apt sources, or ``TERN_SANDBOX__DEBIAN_MIRROR``) and ``docker import``; then
``infra/sandbox/Dockerfile`` on top (Debian's python3, numpy, scipy, pandas, matplotlib; a non-root user;
the runner). The final tag is ``tern-sandbox:<12 hex digits>``, a hash of the Dockerfile, the runner and
the base recipe, so a changed runner means a new image and an unchanged one is never rebuilt.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import docker.errors

from tern.config import TernSettings
from tern.sandbox.engine import docker_client, image_exists
from tern.sandbox.job import RUNNER_PATH, SandboxError, SandboxUnavailable

REPOSITORY = "tern-sandbox"
SUITE = "bookworm"
"""Debian release of the image; its python3 (3.11) must run runner.py."""
BASE_IMAGE = f"{REPOSITORY}-base:{SUITE}"
BASE_RECIPE = f"debootstrap --variant=minbase {SUITE}; components main; {SUITE}, -updates, -security"


class ImageBuildError(SandboxError):
    """The sandbox image could not be built; the message says which stage failed and shows its output."""


def dockerfile_dir() -> Path:
    """``infra/sandbox`` of the source tree (the build context template)."""
    return Path(__file__).resolve().parents[2] / "infra" / "sandbox"


def content_hash() -> str:
    """12 hex digits of SHA-256 over the Dockerfile, the runner and the base recipe.

    Raises ``SandboxUnavailable`` when infra/sandbox/Dockerfile is not there (not a source checkout).
    """
    if not (dockerfile_dir() / "Dockerfile").is_file():
        raise SandboxUnavailable(
            f"{dockerfile_dir() / 'Dockerfile'} not found: run Tern from a source checkout, or set "
            "TERN_SANDBOX__IMAGE to a prebuilt sandbox image"
        )
    digest = hashlib.sha256()
    for blob in (
        (dockerfile_dir() / "Dockerfile").read_bytes(),
        RUNNER_PATH.read_bytes(),
        BASE_RECIPE.encode(),
    ):
        digest.update(hashlib.sha256(blob).digest())
    return digest.hexdigest()[:12]


def image_ref() -> str:
    """The locally built image reference, ``tern-sandbox:<content hash>``."""
    return f"{REPOSITORY}:{content_hash()}"


def debian_sources(settings: TernSettings) -> tuple[str, str | None]:
    """(main mirror URL, security mirror URL or None) for the base image.

    From ``settings.sandbox.debian_mirror`` when set, else from the host's apt configuration as apt itself
    reads it (``apt-get indextargets``). Raises ``ImageBuildError`` when neither gives a Debian mirror.
    """
    if settings.sandbox.debian_mirror:
        return settings.sandbox.debian_mirror, None
    if shutil.which("apt-get") is None:
        raise ImageBuildError("no Debian mirror known: set TERN_SANDBOX__DEBIAN_MIRROR (this host has no apt)")
    out = subprocess.run(
        ["apt-get", "indextargets", "--format", "$(REPO_URI)\t$(RELEASE)\t$(COMPONENT)\t$(IDENTIFIER)"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    main = security = None
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) != 4 or parts[2] != "main" or parts[3] != "Packages":
            continue
        uri, release = parts[0].rstrip("/"), parts[1]
        if release.endswith("-security"):
            security = security or uri
        elif "-" not in release and Path("/etc/debian_version").exists():
            main = main or uri
    if main is None:
        raise ImageBuildError(
            "no Debian mirror found in this host's apt sources: set TERN_SANDBOX__DEBIAN_MIRROR to one"
        )
    return main, security


def _run(cmd: list[str], progress: Callable[[str], None], what: str) -> None:
    progress(f"$ {' '.join(cmd)}")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        tail = [*tail[-30:], line.rstrip()]
        if line.startswith(("I: Base", "E:", "W:")):
            progress("  " + line.rstrip())
    if proc.wait() != 0:
        raise ImageBuildError(f"{what} failed (exit {proc.returncode}):\n" + "\n".join(tail))


def build_base(client: docker.DockerClient, settings: TernSettings, progress: Callable[[str], None]) -> None:
    """Build ``tern-sandbox-base:bookworm`` with debootstrap and import it. Needs root and debootstrap."""
    if shutil.which("debootstrap") is None:
        raise ImageBuildError("debootstrap is not installed: apt-get install debootstrap (scripts/system-deps.sh)")
    if os.geteuid() != 0:
        raise ImageBuildError("building the base image with debootstrap needs root (run `tern sandbox build` as root)")
    mirror, security = debian_sources(settings)
    with tempfile.TemporaryDirectory(prefix="tern-rootfs-", dir="/var/tmp") as tmp:
        rootfs = Path(tmp) / "rootfs"
        progress(f"debootstrap {SUITE} (minbase) from the host's Debian mirror")
        _run(["debootstrap", "--variant=minbase", SUITE, str(rootfs), mirror], progress, "debootstrap")
        lines = [f"deb {mirror} {SUITE} main", f"deb {mirror} {SUITE}-updates main"]
        if security:
            lines.append(f"deb {security} {SUITE}-security main")
        (rootfs / "etc/apt/sources.list").write_text("\n".join(lines) + "\n")
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (rootfs / junk).glob("*"):
                if entry.is_file():
                    entry.unlink()
        tarball = Path(tmp) / "rootfs.tar"
        _run(
            ["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(tarball), "."],
            progress,
            "tar of the rootfs",
        )
        progress(f"docker import -> {BASE_IMAGE}")
        repo, tag = BASE_IMAGE.split(":")
        try:
            client.api.import_image_from_file(str(tarball), repository=repo, tag=tag)
        except docker.errors.APIError as exc:
            raise ImageBuildError(f"docker import of the base image failed: {exc}") from exc


BUILD_LOG_TAIL = 30
"""Lines of ``docker build`` output an :class:`ImageBuildError` shows before the error."""


def docker_build(
    client: docker.DockerClient,
    context: str | Path,
    ref: str,
    progress: Callable[[str], None],
    *,
    nocache: bool = False,
    labels: dict[str, str] | None = None,
    buildargs: dict[str, str] | None = None,
) -> None:
    """``docker build`` of the directory ``context`` (its ``Dockerfile``) tagged ``ref``, never pulling, removing
    intermediate containers; the ``Step ...`` and ``Successfully ...`` lines of its output go to ``progress``.

    Reads the engine's build stream (Docker Engine API ``POST /build``: JSON objects with ``stream`` lines, or an
    ``error`` that ends the build). Raises :class:`ImageBuildError` with the error and the last
    :data:`BUILD_LOG_TAIL` lines of output when the build fails or the engine refuses it.
    """
    tail: list[str] = []
    try:
        for chunk in client.api.build(
            path=str(context),
            tag=ref,
            rm=True,
            forcerm=True,
            pull=False,
            nocache=nocache,
            decode=True,
            labels=labels or {},
            buildargs=buildargs or {},
        ):
            if "error" in chunk:
                raise ImageBuildError("docker build failed: " + str(chunk["error"]).strip() + "\n" + "\n".join(tail))
            line = str(chunk.get("stream", "")).rstrip()
            if line:
                tail = [*tail[-BUILD_LOG_TAIL:], line]
                if line.startswith("Step ") or line.startswith("Successfully"):
                    progress("  " + line)
    except docker.errors.APIError as exc:
        raise ImageBuildError(f"docker build failed: {exc}") from exc


def build_image(settings: TernSettings, *, force: bool = False, progress: Callable[[str], None] = print) -> str:
    """Build the sandbox image unless ``image_ref()`` already exists; returns the image reference.

    ``settings`` name the Debian mirror (``sandbox_debian_mirror``, else the host's apt sources).
    ``force`` rebuilds the base and the image. Progress lines go to ``progress``. Raises
    ``SandboxUnavailable`` when the Docker engine is not reachable and ``ImageBuildError`` when debootstrap
    is missing, the mirror is unknown or a build stage fails.
    """
    client = docker_client(timeout_s=600)
    ref = image_ref()
    if not force and image_exists(client, ref):
        progress(f"sandbox image {ref} is up to date")
        return ref
    if force or not image_exists(client, BASE_IMAGE):
        build_base(client, settings, progress)
    else:
        progress(f"base image {BASE_IMAGE} exists")
    with tempfile.TemporaryDirectory(prefix="tern-sandbox-ctx-") as ctx:
        shutil.copy(dockerfile_dir() / "Dockerfile", Path(ctx) / "Dockerfile")
        shutil.copy(RUNNER_PATH, Path(ctx) / "runner.py")
        progress(f"docker build -> {ref}")
        docker_build(client, ctx, ref, progress, nocache=force, labels={"tern.sandbox.content": ref.split(":")[1]})
    if not image_exists(client, ref):
        raise ImageBuildError(f"docker build finished but {ref} does not exist")
    progress(f"built {ref}")
    return ref


__all__ = [
    "BASE_IMAGE",
    "ImageBuildError",
    "SandboxUnavailable",
    "build_image",
    "content_hash",
    "docker_build",
    "image_ref",
]
