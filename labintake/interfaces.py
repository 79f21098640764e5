"""Sending-system definitions: one folder per sender under `interfaces/`.

Each folder holds `interface.toml`:

    name = "northside-epic"                 # defaults to the folder name
    description = "Northside Hospital, Epic Beaker outreach orders"
    sending_application = "EPIC"            # MSH-3 (namespace id)
    sending_facility = "NORTHSIDE"          # MSH-4 (namespace id)
    version = "2.5.1"                       # MSH-12 the sender uses
    ack_mode = "original"                   # original | enhanced
    test_code_system = "local"              # how OBR-4 codes arrive: local | LN | CPT
    timezone = "America/Chicago"            # IANA zone of times sent without a UTC offset
    [test_codes]                            # sender's OBR-4 code -> lab catalog code
    "LAB1234" = "CBCD"
    [connection]                            # how this sender may connect (optional)
    addresses = ["10.20.30.0/24"]           # source addresses (CIDR); empty: any
    certificate_subject = "northside-epic"  # TLS client certificate: a CN, or a full
                                            # subject "CN=...,O=..."; empty: none needed
    enforce = true                          # refuse mismatches (default: the setting
                                            # LABINTAKE_ENFORCE_SENDER_BINDING)

and `samples/` with example messages and the outcome each must produce (see its README).
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from labintake.errors import ConfigurationError

ACK_MODES = ("original", "enhanced")
TEST_CODE_SYSTEMS = ("local", "LN", "CPT")


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class ConnectionBinding:
    """How a sender may connect: source networks and/or a TLS client-certificate subject.

    Both, when both are given. ``enforce`` None means "as the global setting says".
    """

    networks: tuple[Network, ...] = ()
    certificate_subject: str = ""
    enforce: bool | None = None

    @property
    def declared(self) -> bool:
        return bool(self.networks or self.certificate_subject)

    def mismatch(self, address: str, certificate_subject: str | None) -> str | None:
        """Why a connection from `address` with that verified certificate subject does not
        prove this sender (None when it does)."""
        if self.networks:
            try:
                ip = ipaddress.ip_address(address.split("%", 1)[0])
            except ValueError:
                return f"source address {address!r} is not an IP address"
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
            if not any(ip in network for network in self.networks):
                return f"source address {ip} is not among the interface's addresses"
        if self.certificate_subject:
            if not certificate_subject:
                return "no verified TLS client certificate"
            if not subject_matches(self.certificate_subject, certificate_subject):
                return f"certificate subject {certificate_subject!r} is not the interface's"
        return None


def _subject_parts(subject: str) -> list[tuple[str, str]]:
    parts = []
    for part in subject.split(","):
        key, _, value = part.partition("=")
        parts.append((key.strip().upper(), value.strip()))
    return parts


def subject_matches(expected: str, subject: str) -> bool:
    """`expected` a CN alone (``northside-epic``) or a full subject (``CN=x,O=y``, attribute
    order as written, names case-insensitive); `subject` as RFC 4514 text."""
    actual = _subject_parts(subject)
    if "=" not in expected:
        return any(key == "CN" and value == expected.strip() for key, value in actual)
    return sorted(_subject_parts(expected)) == sorted(actual)


@dataclass(frozen=True, slots=True)
class Interface:
    name: str
    sending_application: str
    sending_facility: str
    version: str = "2.5.1"
    ack_mode: str = "original"
    test_code_system: str = "local"
    description: str = ""
    test_codes: Mapping[str, str] = field(default_factory=dict)
    folder: Path | None = None
    timezone: str = "UTC"
    connection: ConnectionBinding = field(default_factory=ConnectionBinding)

    @property
    def key(self) -> tuple[str, str]:
        return (self.sending_application.upper(), self.sending_facility.upper())


class InterfaceRegistry:
    """The known senders, looked up by (MSH-3, MSH-4) namespace ids, case-insensitively."""

    def __init__(self, interfaces: list[Interface]) -> None:
        self._by_key: dict[tuple[str, str], Interface] = {}
        for interface in interfaces:
            if interface.key in self._by_key:
                raise ConfigurationError(
                    f"interfaces {self._by_key[interface.key].name!r} and {interface.name!r} "
                    f"both claim sender {interface.key}"
                )
            self._by_key[interface.key] = interface

    def find(self, sending_application: str, sending_facility: str) -> Interface | None:
        app = sending_application.split("^", 1)[0].upper()
        facility = sending_facility.split("^", 1)[0].upper()
        return self._by_key.get((app, facility))

    def __iter__(self) -> Iterator[Interface]:
        return iter(self._by_key.values())

    def __len__(self) -> int:
        return len(self._by_key)


def load_interface(folder: Path) -> Interface:
    path = folder / "interface.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"{path}: {exc}") from exc
    try:
        interface = Interface(
            name=str(data.get("name", folder.name)),
            sending_application=str(data["sending_application"]),
            sending_facility=str(data["sending_facility"]),
            version=str(data.get("version", "2.5.1")),
            ack_mode=str(data.get("ack_mode", "original")),
            test_code_system=str(data.get("test_code_system", "local")),
            description=str(data.get("description", "")),
            test_codes={str(k): str(v) for k, v in data.get("test_codes", {}).items()},
            folder=folder,
            timezone=str(data.get("timezone", "UTC")),
            connection=_binding(path, data.get("connection", {})),
        )
    except KeyError as exc:
        raise ConfigurationError(f"{path}: missing required key {exc}") from exc
    if interface.ack_mode not in ACK_MODES:
        raise ConfigurationError(f"{path}: ack_mode must be one of {ACK_MODES}")
    if interface.test_code_system not in TEST_CODE_SYSTEMS:
        raise ConfigurationError(f"{path}: test_code_system must be one of {TEST_CODE_SYSTEMS}")
    try:
        ZoneInfo(interface.timezone)
    except (ValueError, ZoneInfoNotFoundError):
        raise ConfigurationError(f"{path}: unknown timezone {interface.timezone!r}") from None
    return interface


def _binding(path: Path, data: object) -> ConnectionBinding:
    if not isinstance(data, dict):
        raise ConfigurationError(f"{path}: [connection] must be a table")
    unknown = set(data) - {"addresses", "certificate_subject", "enforce"}
    if unknown:
        raise ConfigurationError(f"{path}: [connection] has unknown keys {sorted(unknown)}")
    addresses = data.get("addresses", [])
    if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
        raise ConfigurationError(f"{path}: [connection] addresses must be a list of CIDR strings")
    networks: list[Network] = []
    for address in addresses:
        try:
            networks.append(ipaddress.ip_network(address.strip(), strict=True))
        except ValueError as exc:
            raise ConfigurationError(f"{path}: [connection] addresses: {exc}") from None
    subject = data.get("certificate_subject", "")
    enforce = data.get("enforce")
    if not isinstance(subject, str):
        raise ConfigurationError(f"{path}: [connection] certificate_subject must be a string")
    if enforce is not None and not isinstance(enforce, bool):
        raise ConfigurationError(f"{path}: [connection] enforce must be true or false")
    binding = ConnectionBinding(tuple(networks), subject.strip(), enforce)
    if enforce and not binding.declared:
        raise ConfigurationError(
            f"{path}: [connection] enforce = true needs addresses or certificate_subject"
        )
    return binding


def load_interfaces(directory: Path) -> InterfaceRegistry:
    """Every `*/interface.toml` under `directory` (an absent folder means no known senders)."""
    if not directory.is_dir():
        return InterfaceRegistry([])
    folders = sorted(p.parent for p in directory.glob("*/interface.toml"))
    return InterfaceRegistry([load_interface(folder) for folder in folders])
