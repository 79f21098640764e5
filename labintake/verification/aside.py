"""Large messages are verified beside the pipeline, not in it.

The pipeline thread reads, verifies and releases ordinary messages one stage after the
other, so whatever one stage takes, every order behind it waits for. The isolated reader
already takes the large messages (`labintake.reading.isolation`); it now also verifies the
orders of each one it read, in its own thread, and the pipeline's verifier passes them by
meanwhile. The largest message the default limits read in full (100 orders of 100 tests)
takes most of a second of CPU to verify and write; ordinary orders no longer wait for it.
Release stays with the pipeline: it takes verified orders a batch at a time, in order.

The ids set aside are kept in memory, per worker process. Another instance on the same
database does not see them, and may verify such a message itself (the writes check each
order's status, so each order is verified once); after a restart nothing is set aside and
the pipeline verifies what is left.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class MessagesAside:
    """The ids of the messages a thread other than the pipeline verifies (thread-safe)."""

    def __init__(self) -> None:
        self._ids: frozenset[int] = frozenset()
        self._lock = threading.Lock()

    def ids(self) -> frozenset[int]:
        return self._ids

    @contextmanager
    def holding(self, message_id: int) -> Iterator[None]:
        """The message is set aside while the block runs, and given back after it, even on
        an error (the pipeline then verifies what is left of it)."""
        with self._lock:
            self._ids = self._ids | {message_id}
        try:
            yield
        finally:
            with self._lock:
                self._ids = self._ids - {message_id}
