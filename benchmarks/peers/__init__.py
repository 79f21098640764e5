"""Peer MLLP servers doing the same job in memory (parse + ACK, nothing stored)."""
