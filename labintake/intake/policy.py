"""Which messages this lab takes, and what each message's connection proves about its sender.

Pure: a parsed header and the connection's :class:`PeerIdentity` in, a :class:`Decision`
out. The sender binding comes first (a message its connection does not prove is refused
whatever else is wrong with it); then the header, message type, version and allow-list. See
docs/security-model.md for the binding rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from labintake.errors import HeaderError, HL7Error, UnsupportedMessageError
from labintake.hl7.ack import ACCEPT, ERROR, REJECT, SUPPORTED_VERSIONS
from labintake.hl7.header import Header, validate_header
from labintake.interfaces import Interface, InterfaceRegistry
from labintake.mllp.server import PeerIdentity
from labintake.models.limits import column_limit
from labintake.models.messages import InboundMessage


@dataclass(frozen=True, slots=True)
class Decision:
    """What intake makes of a readable header."""

    outcome: str  # ACCEPT, ERROR or REJECT
    error: HL7Error | None = None
    interface: str | None = None
    sender_identity: str = ""  # what the connection proved (docs/security-model.md)
    # Why the connection does not prove the sender (refused, or only logged when the
    # interface's binding is not enforced).
    binding_mismatch: str | None = None


class IntakePolicy:
    """Which messages this lab takes: types, versions and (optionally) known senders only."""

    def __init__(
        self,
        accepted_message_types: Sequence[str],
        interfaces: InterfaceRegistry,
        *,
        enforce_sender_allowlist: bool = False,
        enforce_sender_binding: bool = False,
        supported_versions: frozenset[str] = SUPPORTED_VERSIONS,
    ) -> None:
        self.accepted = frozenset(t.strip().upper() for t in accepted_message_types)
        self.accepted_types = frozenset(t.split("^", 1)[0] for t in self.accepted)
        self.interfaces = interfaces
        self.enforce_sender_allowlist = enforce_sender_allowlist
        self.enforce_sender_binding = enforce_sender_binding
        self.supported_versions = supported_versions

    def enforced(self, interface: Interface | None) -> bool:
        """Whether a message naming this interface (None: no interface) must prove itself."""
        if interface is None or interface.connection.enforce is None:
            return self.enforce_sender_binding
        return interface.connection.enforce

    def binding(
        self, header: Header, identity: PeerIdentity | None
    ) -> tuple[Interface | None, str, str | None, bool]:
        """(interface, sender identity, mismatch reason, refuse) for the header's sender."""
        interface = self.interfaces.find(header.sending_application, header.sending_facility)
        enforced = self.enforced(interface)
        address = identity.address if identity is not None else ""
        reason: str | None
        if interface is None:
            if not enforced:
                return None, "", None, False
            reason = "the sender is not a known interface and sender binding is on"
        elif not interface.connection.declared:
            if not enforced:
                return interface, "", None, False
            reason = f"interface {interface.name} declares no [connection] binding"
        elif identity is None:
            reason = "the connection is unknown"
        else:
            reason = interface.connection.mismatch(address, identity.certificate_subject)
            if reason is None:
                return interface, (f"interface:{interface.name}" if enforced else ""), None, False
        if not enforced:
            return interface, "", reason, False
        identity_limit = column_limit(InboundMessage, "sender_identity")
        return interface, f"unproven:{address}"[:identity_limit], reason, True

    def decide(self, header: Header, identity: PeerIdentity | None = None) -> Decision:
        interface, sender_identity, mismatch, refuse = self.binding(header, identity)
        decision = self._decide(header, interface)
        if refuse:
            sender = f"{header.sending_application}/{header.sending_facility}"
            error = UnsupportedMessageError(
                f"sender {sender} is not accepted on this connection ({mismatch})",
                location="MSH^1^3",
                error_code="103",
            )
            return Decision(REJECT, error, decision.interface, sender_identity, mismatch)
        return Decision(
            decision.outcome, decision.error, decision.interface, sender_identity, mismatch
        )

    def _decide(self, header: Header, interface: Interface | None) -> Decision:
        try:
            validate_header(header)
        except HeaderError as exc:
            return Decision(ERROR, exc)
        if header.message_code not in self.accepted:
            type_known = header.message_type in self.accepted_types
            return Decision(
                REJECT,
                UnsupportedMessageError(
                    f"message type {header.message_code} is not accepted here "
                    f"(accepted: {', '.join(sorted(self.accepted))})",
                    location="MSH^1^9^1^2" if type_known else "MSH^1^9",
                    error_code="201" if type_known else "200",
                ),
            )
        if header.version not in self.supported_versions:
            return Decision(
                REJECT,
                UnsupportedMessageError(
                    f"HL7 version {header.version or '(empty)'} is not supported",
                    location="MSH^1^12",
                    error_code="203",
                ),
            )
        if interface is None and self.enforce_sender_allowlist:
            return Decision(
                REJECT,
                UnsupportedMessageError(
                    f"sender {header.sending_application}/{header.sending_facility} is not a "
                    "known interface",
                    location="MSH^1^4",
                    error_code="103",
                ),
            )
        return Decision(ACCEPT, interface=interface.name if interface else None)
