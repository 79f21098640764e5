"""Garbage-collector settings for the long-running processes: the listener and the workers.

CPython's cyclic collector walks every tracked object of a generation each time it runs. In a
worker that has imported SQLAlchemy, the models, hl7apy's reference data and the code tables,
the oldest generation holds a few hundred thousand objects that live as long as the process,
and every full collection walked them again: about a quarter of the pipeline's CPU per order
went to the collector (benchmarks/stages.py, 2,000 orders). The listener holds about 90,000
such objects (SQLAlchemy, the modules it imports, the code tables): there each full
collection stopped the event loop for tens of milliseconds, and every ACK due meanwhile
waited for it (docs/benchmarks.md). `settle` is called once a process has loaded what it
keeps: it collects, moves the survivors out of the collector's sight (`gc.freeze`), and
raises the youngest generation's threshold so the short-lived rows of one batch are not
scanned every 700 allocations. Nothing else changes: objects are still freed by reference
counting, and cycles made after start-up are still collected.
"""

from __future__ import annotations

import gc

# Allocations between two collections of the youngest generation (CPython's default: 700),
# and how many of those before the next generation is collected (default: 10 and 10).
YOUNG_THRESHOLD = 20_000
OLDER_THRESHOLDS = (20, 20)


def settle() -> None:
    """Freeze what the process has loaded so far and space the young collections out."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
