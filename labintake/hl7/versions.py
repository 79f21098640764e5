"""HL7 version strings ("2.5.1") as numbers that compare: the one parser of them."""

from __future__ import annotations

from labintake.errors import ConfigurationError


def version_numbers(version: str) -> tuple[int, ...]:
    """The leading numeric parts ("2.5.1" -> (2, 5, 1); "2.3.1x" -> (2, 3)), for a version a
    sender wrote: what cannot be read is left out, never an error."""
    parts: list[int] = []
    for part in version.split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts)


def version_tuple(version: str) -> tuple[int, ...]:
    """A version the configuration names, every part numeric; ConfigurationError otherwise."""
    numbers = version_numbers(version)
    if not numbers or len(numbers) != len(version.split(".")):
        raise ConfigurationError(f"not an HL7 version: {version!r}")
    return numbers
