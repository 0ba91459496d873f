"""The build id of a Tern worker: the name of its version in a Temporal Worker Deployment (no Temporal import).

Order (first that gives a value):
1. the setting ``worker.build_id`` (``TERN_WORKER__BUILD_ID``);
2. the environment variable ``TERN_IMAGE_TAG`` (set by the worker image build, ``infra/worker/Dockerfile``);
3. the git commit of the checkout Tern runs from (``git rev-parse HEAD``, first 12 hex digits), with
   ``-dirty<digest>`` when the workflow sources differ from it, so an edited checkout is a new version;
4. the package version and a digest of the workflow sources: ``0.1.0-<12 hex>``.

Only workflow code matters to Temporal's routing (activities are not replayed), so the digest covers
``workflows/*.py``: two checkouts with the same workflows get the same build id when nothing else names one.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
"""The checkout (or installed tree) holding ``tern/`` and ``workflows/``."""
IMAGE_TAG_VARIABLE = "TERN_IMAGE_TAG"
BUILD_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.+-]{1,200}$")


class BuildIdError(ValueError):
    """A build id that Temporal or Tern cannot use; the message names where it came from."""


def source_digest(root: Path = ROOT) -> str:
    """SHA-256 (first 12 hex digits) over the names and bytes of ``root/workflows/*.py``, sorted by name."""
    h = hashlib.sha256()
    for path in sorted((root / "workflows").glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def git_commit(root: Path = ROOT) -> str | None:
    """The checkout's commit (12 hex digits) with ``-dirty<digest>`` when ``workflows/`` has uncommitted changes;
    None when ``root`` is no git checkout or git is missing."""
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "workflows"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    if not re.fullmatch(r"[0-9a-f]{40,64}", head):
        return None
    return head[:12] + (f"-dirty{source_digest(root)}" if dirty else "")


def package_version() -> str:
    """The installed ``tern`` distribution's version; ``0.0.0`` when it is not installed (a bare checkout)."""
    try:
        return metadata.version("tern")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def resolve_build_id(configured: str | None, environ: Mapping[str, str] | None = None, root: Path = ROOT) -> str:
    """The worker's build id, in the order of the module docstring. ``configured`` is ``worker.build_id``;
    ``environ`` replaces ``os.environ`` (tests). Raises :class:`BuildIdError` naming the source when the value
    it gives is not 1-200 characters of letters, digits, ``_ . + -`` (an image tag such as ``1.2.0`` passes)."""
    env = os.environ if environ is None else environ
    candidates = (
        ("worker.build_id (TERN_WORKER__BUILD_ID)", configured),
        (IMAGE_TAG_VARIABLE, env.get(IMAGE_TAG_VARIABLE) or None),
    )
    for source, value in candidates:
        if value is not None:
            if not BUILD_ID_PATTERN.fullmatch(value):
                raise BuildIdError(f"{source} is {value!r}: a build id is 1-200 letters, digits, '_', '.', '+' or '-'")
            return value
    return git_commit(root) or f"{package_version()}-{source_digest(root)}"
