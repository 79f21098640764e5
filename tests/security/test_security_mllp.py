"""MLLP security through a real `labintake serve`, configured only by its environment: TLS with
a required client certificate (`LABINTAKE_TLS_CLIENT_CA`) and the sending-facility allow-list
(`LABINTAKE_ENFORCE_SENDER_ALLOWLIST`). The intake tests check the same pieces in-process;
this checks that the settings reach the running service.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from benchmarks import servers
from labintake.interfaces import load_interfaces
from labintake.mllp.framing import FrameDecoder, frame

REPO = Path(__file__).resolve().parents[2]


def _known_sender() -> tuple[str, str]:
    """MSH-3 and MSH-4 of a sender defined under interfaces/."""
    for interface in load_interfaces(REPO / "interfaces"):
        return interface.sending_application, interface.sending_facility
    pytest.skip("no sender defined under interfaces/")


def _message(application: str, facility: str, control_id: str) -> bytes:
    return (
        f"MSH|^~\\&|{application}|{facility}|LABINTAKE|LAB|20260101120000||ORM^O01|{control_id}|"
        "P|2.5.1\rPID|1||TLS1^^^X^MR||TLSPATIENT^ANN||19700101|F\r"
        "ORC|NW|TLS-1\rOBR|1|TLS-1||85025^CBC^CPT4\rDG1|1||D64.9^Anemia^I10\r"
    ).encode()


@dataclass
class TlsService:
    server: servers.ServerProcess
    ca: trustme.CA
    client_ca: trustme.CA

    @property
    def port(self) -> int:
        assert self.server.port is not None
        return self.server.port


@pytest.fixture
def tls_service(database_url: str, tmp_path: Path) -> Iterator[TlsService]:
    server_ca, client_ca = trustme.CA(), trustme.CA()
    certificate = server_ca.issue_cert("127.0.0.1", "localhost")
    cert, key, client_ca_file = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    certificate.cert_chain_pems[0].write_to_path(str(cert))
    certificate.private_key_pem.write_to_path(str(key))
    client_ca.cert_pem.write_to_path(str(client_ca_file))
    server = servers.labintake(
        database_url,
        tmp_path / "serve",
        extra_env={
            "LABINTAKE_TLS_CERT": str(cert),
            "LABINTAKE_TLS_KEY": str(key),
            "LABINTAKE_TLS_CLIENT_CA": str(client_ca_file),
            "LABINTAKE_ENFORCE_SENDER_ALLOWLIST": "true",
        },
    ).start()
    try:
        yield TlsService(server, server_ca, client_ca)
    finally:
        server.stop()


def _client_context(service: TlsService, client_ca: trustme.CA | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    service.ca.configure_trust(context)
    if client_ca is not None:
        client_ca.issue_cert("sender.example").configure_cert(context)
    return context


def _exchange(service: TlsService, context: ssl.SSLContext, message: bytes) -> bytes | None:
    """Send one message over TLS; the ACK, or None when the server ended the connection."""
    with (
        socket.create_connection(("127.0.0.1", service.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(frame(message))
        decoder = FrameDecoder(1 << 20)
        while True:
            data = tls.recv(65536)
            if not data:
                return None
            for event in decoder.feed(data):
                if isinstance(event, bytes):
                    return event


def _msa1(ack: bytes) -> str:
    for segment in ack.split(b"\r"):
        if segment.startswith(b"MSA|"):
            return segment.split(b"|")[1].decode()
    raise AssertionError(ack)


def test_tls_with_a_client_certificate_from_the_configured_ca_is_accepted(
    tls_service: TlsService,
) -> None:
    application, facility = _known_sender()
    ack = _exchange(
        tls_service,
        _client_context(tls_service, tls_service.client_ca),
        _message(application, facility, "TLS-OK-1"),
    )
    assert ack is not None
    assert _msa1(ack) == "AA"


@pytest.mark.parametrize("client", ["no certificate", "certificate from another CA"])
def test_tls_clients_without_a_trusted_certificate_are_refused(
    tls_service: TlsService, client: str
) -> None:
    application, facility = _known_sender()
    other = trustme.CA() if client != "no certificate" else None
    context = _client_context(tls_service, other)
    try:
        ack = _exchange(tls_service, context, _message(application, facility, "TLS-NO-1"))
    except (ssl.SSLError, ConnectionError):
        ack = None
    assert ack is None
    # The listener is unharmed: a proper client still gets through.
    good = _exchange(
        tls_service,
        _client_context(tls_service, tls_service.client_ca),
        _message(application, facility, "TLS-OK-2"),
    )
    assert good is not None
    assert _msa1(good) == "AA"


def test_plain_connection_to_the_tls_listener_gets_no_hl7_answer(tls_service: TlsService) -> None:
    application, facility = _known_sender()
    with socket.create_connection(("127.0.0.1", tls_service.port), timeout=10) as plain:
        plain.sendall(frame(_message(application, facility, "PLAIN-1")))
        received = b""
        try:
            while chunk := plain.recv(65536):
                received += chunk
        except (ConnectionError, TimeoutError):
            pass
    assert b"MSA|" not in received


def test_unknown_sending_facility_gets_ar_when_the_allow_list_is_on(
    tls_service: TlsService,
) -> None:
    ack = _exchange(
        tls_service,
        _client_context(tls_service, tls_service.client_ca),
        _message("STRANGERAPP", "STRANGERFAC", "TLS-AR-1"),
    )
    assert ack is not None
    assert _msa1(ack) == "AR"
    assert b"ERR|" in ack
