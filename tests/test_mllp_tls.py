"""MLLP over TLS, with throwaway certificates made in the test."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from mllp_messages import msa, orm, running_server, stored_rows
from sqlalchemy.engine import Engine

from labintake.config import Settings
from labintake.mllp.client import MLLPClient, client_tls_context
from labintake.mllp.server import server_tls_context


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _issue(
    directory: Path,
    name: str,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(issuer[0].subject if issuer else _name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    certificate = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    (directory / f"{name}.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    _write_key(key, directory / f"{name}.key")
    return certificate, key


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    """A throwaway CA with a server and a client certificate under `tmp_path`."""
    authority = _issue(tmp_path, "ca", None, ca=True)
    _issue(tmp_path, "server", authority)
    _issue(tmp_path, "client", authority)
    return tmp_path


def _client_context(pki: Path, *, with_certificate: bool) -> ssl.SSLContext:
    if with_certificate:
        return client_tls_context(pki / "ca.pem", pki / "client.pem", pki / "client.key")
    return client_tls_context(pki / "ca.pem")


def test_tls_round_trip_stores_and_acknowledges(
    settings: Settings, engine: Engine, pki: Path
) -> None:
    server_context = server_tls_context(pki / "server.pem", pki / "server.key")

    async def go() -> None:
        async with running_server(settings, engine, ssl_context=server_context) as server:
            context = _client_context(pki, with_certificate=False)
            async with MLLPClient("127.0.0.1", server.bound_port, ssl_context=context) as client:
                for i in range(3):
                    assert msa(await client.send(orm(f"TLS{i}").encode()))[1] == "AA"

    asyncio.run(go())
    assert len(stored_rows(engine)) == 3


def test_client_certificate_is_required_when_a_client_ca_is_set(
    settings: Settings, engine: Engine, pki: Path
) -> None:
    server_context = server_tls_context(pki / "server.pem", pki / "server.key", pki / "ca.pem")

    async def go() -> None:
        async with running_server(settings, engine, ssl_context=server_context) as server:
            port = server.bound_port
            anonymous = _client_context(pki, with_certificate=False)

            async def without_certificate() -> bytes:
                # TLS 1.3 reports the missing certificate on the first read, not at connect.
                async with MLLPClient("127.0.0.1", port, timeout=5, ssl_context=anonymous) as c:
                    return await c.send(orm("NOCERT").encode())

            with pytest.raises((ssl.SSLError, ConnectionError)):
                await without_certificate()
            context = _client_context(pki, with_certificate=True)
            async with MLLPClient("127.0.0.1", port, ssl_context=context) as client:
                assert msa(await client.send(orm("CERT1").encode()))[1] == "AA"

    asyncio.run(go())
    assert [r["control_id"] for r in stored_rows(engine)] == ["CERT1"]


def test_plain_client_on_a_tls_listener_is_refused_without_harm(
    settings: Settings, engine: Engine, pki: Path
) -> None:
    server_context = server_tls_context(pki / "server.pem", pki / "server.key")

    async def go() -> None:
        async with running_server(settings, engine, ssl_context=server_context) as server:
            plain = MLLPClient("127.0.0.1", server.bound_port, timeout=5)
            await plain.connect()
            with pytest.raises((ConnectionError, TimeoutError)):
                await plain.send(orm("PLAIN").encode())
            await plain.close()
            context = _client_context(pki, with_certificate=False)
            async with MLLPClient("127.0.0.1", server.bound_port, ssl_context=context) as client:
                assert msa(await client.send(orm("TLS9").encode()))[1] == "AA"

    asyncio.run(go())


def test_send_command_over_tls_with_a_client_certificate(
    settings: Settings, engine: Engine, pki: Path
) -> None:
    from typer.testing import CliRunner

    from labintake.cli import app

    server_context = server_tls_context(pki / "server.pem", pki / "server.key", pki / "ca.pem")
    message = pki / "one.hl7"
    message.write_text(orm("TLSCLI"))

    async def go() -> tuple[int, str]:
        async with running_server(settings, engine, ssl_context=server_context) as server:
            args = [
                "send",
                str(message),
                "--port",
                str(server.bound_port),
                "--tls-ca",
                str(pki / "ca.pem"),
                "--tls-cert",
                str(pki / "client.pem"),
                "--tls-key",
                str(pki / "client.key"),
            ]
            result = await asyncio.to_thread(CliRunner().invoke, app, args)
            return result.exit_code, result.output

    exit_code, output = asyncio.run(go())
    assert (exit_code, output.strip()) == (0, f"{message}: TLSCLI AA")
