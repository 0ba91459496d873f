"""SSH signatures over statements, made and checked by OpenSSH's ``ssh-keygen -Y`` (OpenSSH 8.2 and later; the
SSHSIG format of OpenSSH's PROTOCOL.sshsig). Namespaces keep a signature for one purpose from being used for
another: ``tern-start`` for run starts, ``tern-decision`` for decisions.

Signing uses the private key file (or, given a ``.pub`` file, the matching key held by ``ssh-agent``); checking
writes an ``allowed_signers`` file (``ssh-keygen(1)`` "ALLOWED SIGNERS") naming the principal's public keys for
the namespace and runs ``ssh-keygen -Y verify``, whose exit status decides.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from tern.models.identity import ProofPurpose

SSH_KEYGEN_TIMEOUT_S = 20.0
_FINGERPRINT = re.compile(r"key (SHA256:[A-Za-z0-9+/=]+)")
_KEY_LINE = re.compile(
    r"^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa|sk-ssh-ed25519@openssh\.com|"
    r"sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/=]+( .*)?$"
)


class SshSignatureError(ValueError):
    """A signature could not be made or does not verify; the message says why (no key material in it)."""


def namespace(purpose: ProofPurpose) -> str:
    """The SSHSIG namespace for ``purpose`` (``tern-start`` or ``tern-decision``)."""
    return f"tern-{purpose}"


def ssh_keygen() -> str:
    """Path of ``ssh-keygen``. Raises :class:`SshSignatureError` when OpenSSH's client tools are missing."""
    path = shutil.which("ssh-keygen")
    if path is None:
        raise SshSignatureError("ssh-keygen not found: install OpenSSH's client tools (Debian: openssh-client)")
    return path


def valid_public_key(line: str) -> bool:
    """True when ``line`` looks like one OpenSSH public key (``type base64 [comment]``)."""
    return bool(_KEY_LINE.match(line.strip()))


def default_key() -> Path:
    """``~/.ssh/id_ed25519``: the key ``--key`` defaults to."""
    return Path.home() / ".ssh" / "id_ed25519"


def sign(text: str, key: Path, purpose: ProofPurpose) -> str:
    """Sign ``text`` with ``key`` (a private key file, or a ``.pub`` whose key ``ssh-agent`` holds); returns the
    armored signature (``-----BEGIN SSH SIGNATURE-----``...). Raises :class:`SshSignatureError`."""
    if not key.exists():
        raise SshSignatureError(f"SSH key {key} does not exist (--key PATH)")
    try:
        proc = subprocess.run(
            [ssh_keygen(), "-q", "-Y", "sign", "-f", str(key), "-n", namespace(purpose)],
            input=text.encode(),
            capture_output=True,
            timeout=SSH_KEYGEN_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise SshSignatureError(f"ssh-keygen did not sign within {SSH_KEYGEN_TIMEOUT_S:g} s") from None
    if proc.returncode != 0 or b"BEGIN SSH SIGNATURE" not in proc.stdout:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        raise SshSignatureError(f"ssh-keygen could not sign with {key}: {err[-1] if err else 'no signature'}")
    return proc.stdout.decode()


def public_key_of(key: Path) -> str:
    """The public key line of a private key file (``ssh-keygen -y``) or of a ``.pub`` file."""
    if key.suffix == ".pub":
        return key.read_text().strip()
    proc = subprocess.run(
        [ssh_keygen(), "-y", "-f", str(key)], capture_output=True, timeout=SSH_KEYGEN_TIMEOUT_S, check=False
    )
    if proc.returncode != 0:
        raise SshSignatureError(f"cannot read the public key of {key}: {proc.stderr.decode(errors='replace')[-200:]}")
    return proc.stdout.decode().strip()


def verify(text: str, signature: str, principal: str, public_keys: list[str], purpose: ProofPurpose) -> str:
    """Check that ``signature`` over ``text`` was made by one of ``public_keys`` (the principal's keys in the
    policy) for ``purpose``. Returns the signing key's fingerprint (``SHA256:...``).

    Raises :class:`SshSignatureError` when no key is listed, the signature is malformed, made by another key,
    or for another namespace.
    """
    keys = [k.strip() for k in public_keys if valid_public_key(k)]
    if not keys:
        raise SshSignatureError(f"no SSH public key is listed for {principal} in the policy")
    if "BEGIN SSH SIGNATURE" not in signature:
        raise SshSignatureError("the signature is not an armored SSH signature")
    ident = "tern-signer"  # the principal's name is checked by the caller; a fixed identity keeps it out of argv
    with tempfile.TemporaryDirectory(prefix="tern-sshsig-") as tmp:
        allowed = Path(tmp) / "allowed_signers"
        sig = Path(tmp) / "statement.sig"
        allowed.write_text("".join(f'{ident} namespaces="{namespace(purpose)}" {k}\n' for k in keys))
        fd = os.open(sig, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(signature)
        try:
            proc = subprocess.run(
                [
                    ssh_keygen(),
                    "-Y",
                    "verify",
                    "-f",
                    str(allowed),
                    "-I",
                    ident,
                    "-n",
                    namespace(purpose),
                    "-s",
                    str(sig),
                ],
                input=text.encode(),
                capture_output=True,
                timeout=SSH_KEYGEN_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise SshSignatureError(f"ssh-keygen did not verify within {SSH_KEYGEN_TIMEOUT_S:g} s") from None
    out = (proc.stdout + proc.stderr).decode(errors="replace")
    if proc.returncode != 0:
        raise SshSignatureError(f"the SSH signature does not verify for {principal} ({namespace(purpose)})")
    m = _FINGERPRINT.search(out)
    return m.group(1) if m else "SHA256:?"
