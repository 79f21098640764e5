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

and `samples/` with example messages and the outcome each must produce (see its README).
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from labintake.errors import ConfigurationError

ACK_MODES = ("original", "enhanced")
TEST_CODE_SYSTEMS = ("local", "LN", "CPT")


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


def load_interfaces(directory: Path) -> InterfaceRegistry:
    """Every `*/interface.toml` under `directory` (an absent folder means no known senders)."""
    if not directory.is_dir():
        return InterfaceRegistry([])
    folders = sorted(p.parent for p in directory.glob("*/interface.toml"))
    return InterfaceRegistry([load_interface(folder) for folder in folders])
