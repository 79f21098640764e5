"""Benchmarks: labintake's durable intake against two in-memory HL7 peers, same load."""
