"""Sender binding: a message's MSH-3/MSH-4 must match how its connection came in.

The attack this stops: anyone who can reach the port sends a message as EPIC/NORTHSIDE with
the real sender's next control id; the real message then got the forged one's AA as a
"duplicate" and vanished.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
import sys
from pathlib import Path

import pytest
from mllp_messages import err, msa, orm, running_server, stored_rows
from sqlalchemy.engine import Engine
from test_mllp_tls import pki  # noqa: F401  (the throwaway CA fixture)

from labintake.config import Settings
from labintake.errors import ConfigurationError
from labintake.intake import Intake
from labintake.interfaces import (
    ConnectionBinding,
    Interface,
    InterfaceRegistry,
    load_interface,
    subject_matches,
)
from labintake.mllp.client import MLLPClient, client_tls_context
from labintake.mllp.framing import frame
from labintake.mllp.server import PeerIdentity, server_tls_context

EPIC_HOST = PeerIdentity("10.20.30.5")
ELSEWHERE = PeerIdentity("192.0.2.66")


def _registry(**binding: object) -> InterfaceRegistry:
    networks = tuple(ipaddress.ip_network(a) for a in binding.pop("addresses", []))  # type: ignore[attr-defined]
    return InterfaceRegistry(
        [
            Interface(
                name="northside-epic",
                sending_application="EPIC",
                sending_facility="NORTHSIDE",
                connection=ConnectionBinding(networks, **binding),  # type: ignore[arg-type]
            ),
            Interface(name="prairie-clinic", sending_application="PRAXIS", sending_facility="PFM"),
        ]
    )


BOUND = _registry(addresses=["10.20.30.0/24"])


def _handle(
    settings: Settings,
    engine: Engine,
    interfaces: InterfaceRegistry,
    *messages: tuple[bytes, PeerIdentity | None],
) -> list[bytes]:
    async def go() -> list[bytes]:
        async with Intake(settings, engine, interfaces=interfaces) as intake:
            return [await intake.handle(m, f"{i.address if i else '?'}:1", i) for m, i in messages]

    return asyncio.run(go())


def test_forged_sender_cannot_take_the_real_senders_acknowledgement(
    settings: Settings, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings.model_copy(update={"enforce_sender_binding": True})
    forged = orm("EPIC1001", patient_name="FORGED^PAT").encode()
    real = orm("EPIC1001").encode()
    with caplog.at_level(logging.WARNING, logger="labintake.intake"):
        forged_ack, real_ack = _handle(
            settings, engine, BOUND, (forged, ELSEWHERE), (real, EPIC_HOST)
        )
    messages = [r.getMessage() for r in caplog.records]
    # prairie-clinic in BOUND has no [connection]: said once at start.
    assert messages[0] == (
        "sender binding is on but the interface declares no [connection]: its messages are refused"
    )
    [refusal] = [
        r for r in caplog.records if r.getMessage() == "sender binding refused the message"
    ]
    assert refusal.__dict__["reason"] == (
        "source address 192.0.2.66 is not among the interface's addresses"
    )
    assert msa(forged_ack)[1:3] == ["AR", "EPIC1001"]
    assert err(forged_ack)[2] == "MSH^1^3"
    assert "not accepted on this connection" in forged_ack.decode()
    assert msa(real_ack)[1:3] == ["AA", "EPIC1001"]
    rows = stored_rows(engine)
    assert [(r["status"], r["sender_identity"]) for r in rows] == [
        ("rejected", "unproven:192.0.2.66"),
        ("received", "interface:northside-epic"),
    ]
    assert "192.0.2.66 is not among the interface's addresses" in str(rows[0]["error"])
    assert bytes(rows[1]["raw"]) == real


def test_binding_off_keeps_the_old_key(settings: Settings, engine: Engine) -> None:
    """Without enforcement, nothing is proven: the identity is empty, as before."""
    first, second = _handle(
        settings,
        engine,
        BOUND,
        (orm("EPIC1002").encode(), ELSEWHERE),
        (orm("EPIC1002").encode(), EPIC_HOST),
    )
    assert msa(first)[1] == "AA"
    assert second == first
    assert [r["sender_identity"] for r in stored_rows(engine)] == [""]


def test_per_interface_enforcement_without_the_global_setting(
    settings: Settings, engine: Engine
) -> None:
    interfaces = _registry(addresses=["10.20.30.0/24"], enforce=True)
    forged, other_sender = _handle(
        settings,
        engine,
        interfaces,
        (orm("EPIC1003").encode(), ELSEWHERE),
        (orm("PFM1", sending_application="PRAXIS", sending_facility="PFM").encode(), ELSEWHERE),
    )
    assert msa(forged)[1] == "AR"
    assert msa(other_sender)[1] == "AA"  # an interface without enforcement is not affected


def test_global_binding_refuses_unknown_senders_and_unbound_interfaces(
    settings: Settings, engine: Engine
) -> None:
    settings = settings.model_copy(update={"enforce_sender_binding": True})
    unknown, unbound = _handle(
        settings,
        engine,
        BOUND,
        (orm("X1", sending_application="NOBODY").encode(), EPIC_HOST),
        (orm("PFM2", sending_application="PRAXIS", sending_facility="PFM").encode(), EPIC_HOST),
    )
    assert msa(unknown)[1] == msa(unbound)[1] == "AR"
    reasons = [str(r["error"]) for r in stored_rows(engine)]
    assert "not a known interface and sender binding is on" in reasons[0]
    assert "prairie-clinic declares no [connection] binding" in reasons[1]


def test_binding_is_checked_before_anything_else(settings: Settings, engine: Engine) -> None:
    """A forged message with an unsupported version is refused for the binding, and stored
    under the unproven identity, never under the real sender's key."""
    settings = settings.model_copy(update={"enforce_sender_binding": True})
    [ack] = _handle(settings, engine, BOUND, (orm("EPIC1004", version="2.9").encode(), ELSEWHERE))
    assert "not accepted on this connection" in ack.decode()
    assert stored_rows(engine)[0]["sender_identity"] == "unproven:192.0.2.66"


def test_certificate_subject_binding(settings: Settings, engine: Engine) -> None:
    settings = settings.model_copy(update={"enforce_sender_binding": True})
    interfaces = _registry(certificate_subject="northside-epic")
    good = PeerIdentity("198.51.100.7", "CN=northside-epic,O=Northside Hospital")
    wrong = PeerIdentity("198.51.100.7", "CN=prairie-clinic")
    anonymous = PeerIdentity("198.51.100.7")
    acks = _handle(
        settings,
        engine,
        interfaces,
        (orm("C1").encode(), good),
        (orm("C2").encode(), wrong),
        (orm("C3").encode(), anonymous),
    )
    assert [msa(a)[1] for a in acks] == ["AA", "AR", "AR"]
    errors = [r["error"] for r in stored_rows(engine)]
    assert "is not the interface's" in str(errors[1])
    assert "no verified TLS client certificate" in str(errors[2])


def test_subject_matching() -> None:
    assert subject_matches("northside-epic", "CN=northside-epic,O=Northside")
    assert not subject_matches("northside", "CN=northside-epic,O=Northside")
    assert subject_matches("O=Northside, CN=northside-epic", "CN=northside-epic,O=Northside")
    assert not subject_matches("CN=northside-epic", "CN=northside-epic,O=Northside")
    assert not subject_matches("northside-epic", "O=northside-epic")


def test_ipv4_mapped_addresses_match_ipv4_networks() -> None:
    binding = ConnectionBinding((ipaddress.ip_network("10.20.30.0/24"),))
    assert binding.mismatch("::ffff:10.20.30.9", None) is None
    assert binding.mismatch("10.20.31.9", None) is not None
    assert binding.mismatch("not-an-address", None) is not None


def test_interface_toml_connection_section(tmp_path: Path) -> None:
    folder = tmp_path / "northside"
    folder.mkdir()
    base = 'sending_application = "EPIC"\nsending_facility = "NORTHSIDE"\n'
    (folder / "interface.toml").write_text(
        base + '[connection]\naddresses = ["10.20.30.0/24", "2001:db8::/32"]\n'
        'certificate_subject = "northside-epic"\nenforce = true\n'
    )
    binding = load_interface(folder).connection
    assert [str(n) for n in binding.networks] == ["10.20.30.0/24", "2001:db8::/32"]
    assert (binding.certificate_subject, binding.enforce) == ("northside-epic", True)
    for bad, message in [
        ('[connection]\naddresses = ["10.20.30.1/24"]\n', "host bits set"),
        ('[connection]\naddresses = "10.0.0.0/8"\n', "list of CIDR"),
        ("[connection]\nenforce = true\n", "needs addresses or certificate_subject"),
        ("[connection]\nport = 1\n", "unknown keys"),
    ]:
        (folder / "interface.toml").write_text(base + bad)
        with pytest.raises(ConfigurationError, match=message):
            load_interface(folder)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs 127.0.0.2")
def test_source_address_binding_over_real_sockets(settings: Settings, engine: Engine) -> None:
    settings = settings.model_copy(update={"enforce_sender_binding": True})
    interfaces = _registry(addresses=["127.0.0.2/32"])

    async def send_from(port: int, local: str, control_id: str) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(local, 0))
        writer.write(frame(orm(control_id).encode()))
        from test_mllp_server import read_acks

        [ack] = await read_acks(reader, 1)
        writer.close()
        return ack

    async def go() -> tuple[bytes, bytes]:
        async with running_server(settings, engine, interfaces=interfaces) as server:
            forged = await send_from(server.bound_port, "127.0.0.1", "NET1")
            real = await send_from(server.bound_port, "127.0.0.2", "NET1")
            return forged, real

    forged, real = asyncio.run(go())
    assert (msa(forged)[1], msa(real)[1]) == ("AR", "AA")
    assert [r["sender_identity"] for r in stored_rows(engine)] == [
        "unproven:127.0.0.1",
        "interface:northside-epic",
    ]


def test_certificate_binding_over_tls(
    settings: Settings,
    engine: Engine,
    pki: Path,  # noqa: F811
) -> None:
    """The server reads the subject of the client certificate the handshake verified."""
    settings = settings.model_copy(update={"enforce_sender_binding": True})
    context = server_tls_context(pki / "server.pem", pki / "server.key", pki / "ca.pem")
    right = _registry(certificate_subject="client")
    wrong = _registry(certificate_subject="CN=someone-else")

    async def go(interfaces: InterfaceRegistry, control_id: str) -> bytes:
        client_context: ssl.SSLContext = client_tls_context(
            pki / "ca.pem", pki / "client.pem", pki / "client.key"
        )
        async with (
            running_server(settings, engine, interfaces=interfaces, ssl_context=context) as s,
            MLLPClient("127.0.0.1", s.bound_port, ssl_context=client_context) as client,
        ):
            return await client.send(orm(control_id).encode())

    assert msa(asyncio.run(go(right, "TLS1")))[1] == "AA"
    assert msa(asyncio.run(go(wrong, "TLS2")))[1] == "AR"
    rows = stored_rows(engine)
    assert rows[0]["sender_identity"] == "interface:northside-epic"
    assert "certificate subject 'CN=client' is not the interface's" in str(rows[1]["error"])
