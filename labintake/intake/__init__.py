"""The durable intake path: from a complete MLLP message to a committed row and its ACK."""

from labintake.intake.policy import Decision, IntakePolicy
from labintake.intake.service import Intake
from labintake.intake.writer import GroupCommitWriter, PendingRow, StoreResult

__all__ = ["Decision", "GroupCommitWriter", "Intake", "IntakePolicy", "PendingRow", "StoreResult"]
