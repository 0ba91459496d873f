"""The client factory (worker/connection.py) over TLS with client certificates, from the standard TEMPORAL_*
variables: the CLI and a worker connect and a run completes; a wrong CA, a missing certificate file and an unknown
profile fail with a message naming the setting (CLI exit status 1, no traceback).

The dev server has no TLS option (``temporal server start-dev --help``), so a TLS-terminating relay built on the
standard library's ``ssl`` and ``asyncio`` streams stands in front of it, requiring a client certificate and
offering ALPN ``h2`` (the SDK's gRPC transport, tonic, refuses a TLS server that does not negotiate HTTP/2, so
socat 1.7 and stunnel, which cannot, do not work). Certificates are made by the test with ``cryptography``.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import ssl
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.conftest import env_without_services

pytestmark = pytest.mark.temporal
ROOT = Path(__file__).resolve().parent.parent


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    key: ec.EllipticCurvePrivateKey,
    cn: str,
    issuer: tuple[ec.EllipticCurvePrivateKey, str],
    *,
    ca: bool = False,
    san: list[x509.GeneralName] | None = None,
    usage: list[x509.ObjectIdentifier] | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(issuer[1]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
    return builder.sign(issuer[0], hashes.SHA256())


def _write(path: Path, obj: x509.Certificate | ec.EllipticCurvePrivateKey) -> Path:
    if isinstance(obj, x509.Certificate):
        path.write_bytes(obj.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(
            obj.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return path


@dataclass
class Pki:
    ca: Path
    other_ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca_key, other_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _cert(ca_key, "tern test CA", (ca_key, "tern test CA"), ca=True)
    other = _cert(other_key, "another CA", (other_key, "another CA"), ca=True)
    server_key, client_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    san: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    server = _cert(server_key, "localhost", (ca_key, "tern test CA"), san=san, usage=[ExtendedKeyUsageOID.SERVER_AUTH])
    client = _cert(client_key, "tern-worker", (ca_key, "tern test CA"), usage=[ExtendedKeyUsageOID.CLIENT_AUTH])
    return Pki(
        ca=_write(tmp_path / "ca.pem", ca),
        other_ca=_write(tmp_path / "other-ca.pem", other),
        server_cert=_write(tmp_path / "server.pem", server),
        server_key=_write(tmp_path / "server.key", server_key),
        client_cert=_write(tmp_path / "client.pem", client),
        client_key=_write(tmp_path / "client.key", client_key),
    )


@pytest.fixture
async def tls_address(temporal_env, pki: Pki) -> AsyncIterator[str]:
    """``127.0.0.1:port`` of a TLS relay to the dev server that requires a client certificate of the test CA."""
    host, _, port = temporal_env.client.service_client.config.target_host.rpartition(":")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki.server_cert, pki.server_key)
    ctx.load_verify_locations(pki.ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.set_alpn_protocols(["h2"])

    async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            dst.close()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(relay, "127.0.0.1", 0, ssl=ctx)
    yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    server.close()


def tls_env(address: str, pki: Pki, ca: Path | None = None) -> dict[str, str]:
    return {
        "TEMPORAL_ADDRESS": address,
        "TEMPORAL_TLS_SERVER_CA_CERT_PATH": str(ca or pki.ca),
        "TEMPORAL_TLS_CLIENT_CERT_PATH": str(pki.client_cert),
        "TEMPORAL_TLS_CLIENT_KEY_PATH": str(pki.client_key),
    }


async def tern(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = env_without_services(tmp_path, **env)  # TERN_TEMPORAL__ADDRESS points at nothing: TEMPORAL_* must win
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "starters.cli", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


async def test_cli_and_worker_connect_with_a_client_certificate(
    tls_address, pki, settings, tmp_path, monkeypatch
) -> None:
    from tern.models import Plan
    from tests.agent_helpers import start_run
    from worker.connection import connect
    from worker.main import run_worker

    proc = await tern(tmp_path, "pending", "--json", **tls_env(tls_address, pki))
    assert proc.returncode == 0, proc.stderr
    json.loads(proc.stdout)  # the pending list, read over the TLS connection

    for key, value in tls_env(tls_address, pki).items():
        monkeypatch.setenv(key, value)
    settings = settings.model_copy(
        update={
            "temporal": settings.temporal.model_copy(update={"task_queue": "tq-" + uuid.uuid4().hex[:8]}),
            "worker": settings.worker.model_copy(update={"http_port": 0}),
        }
    )
    client = await connect(settings)
    assert client.service_client.config.target_host == tls_address and client.service_client.config.tls
    plan = Plan.model_validate(
        {
            "steps": [
                {"id": "read", "kind": "channel_read", "channels": ["SR:RF:CAVITY:01:VOLTAGE:SP"]},
                {"id": "a", "kind": "respond"},
            ]
        }
    )
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, stop))
    try:
        handle = await start_run(client, settings, plan)
        result = await asyncio.wait_for(handle.result(), 60)
        assert result.status == "completed", result.error
    finally:
        stop.set()
        await asyncio.wait_for(worker, 30)


async def test_wrong_ca_missing_file_and_unknown_profile_name_the_setting(tls_address, pki, tmp_path) -> None:
    proc = await tern(tmp_path, "pending", **tls_env(tls_address, pki, ca=pki.other_ca))
    assert proc.returncode == 1, proc.stderr
    assert "TEMPORAL_TLS_SERVER_CA_CERT_PATH" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr

    missing = {**tls_env(tls_address, pki), "TEMPORAL_TLS_CLIENT_CERT_PATH": str(tmp_path / "nope.pem")}
    proc = await tern(tmp_path, "pending", **missing)
    assert proc.returncode == 1, proc.stderr
    assert "TEMPORAL_TLS_CLIENT_CERT_PATH" in proc.stderr and "nope.pem" in proc.stderr, proc.stderr

    proc = await tern(tmp_path, "pending", TEMPORAL_PROFILE="no-such-profile")
    assert proc.returncode == 1, proc.stderr
    assert "TEMPORAL_PROFILE" in proc.stderr and "no-such-profile" in proc.stderr, proc.stderr

    worker = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "worker.main"],
        env=env_without_services(tmp_path, **missing),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert worker.returncode == 1 and "TEMPORAL_TLS_CLIENT_CERT_PATH" in worker.stderr, worker.stderr
    assert "Traceback" not in worker.stderr, worker.stderr
