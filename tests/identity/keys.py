"""SSH keys for identity tests, made by Debian's OpenSSH ``ssh-keygen`` (no key material is checked in)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.conftest import unavailable


def make_key(directory: Path, name: str) -> Path:
    """A new unencrypted Ed25519 key ``directory/name`` (and ``name.pub``); returns the private key's path."""
    if shutil.which("ssh-keygen") is None:
        unavailable("ssh-keygen (Debian's openssh-client) is not installed")
    path = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{name}@test", "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path


def public(key: Path) -> str:
    """The public key line of ``key``."""
    return Path(f"{key}.pub").read_text().strip()
