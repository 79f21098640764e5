"""Password hashing with argon2id, at most HASH_SLOTS hashes at a time in a process.

Each argon2 computation takes its memory cost (19 MiB here) and tens of milliseconds of one
CPU core. Unbounded, a flood of sign-in attempts makes as many hashes at once as it has
connections: 40 at once took a process from 87 MB to 819 MB. So every hash and every check
takes one of HASH_SLOTS slots first; a caller that does not get one within
HASH_WAIT_SECONDS is refused (:class:`~labintake.errors.BusyError`, HTTP 503 with
Retry-After) instead of waiting in an unbounded queue. The slots bound both the memory
(HASH_SLOTS x 19 MiB) and the CPU a sign-in flood can take from the rest of the machine.

The hashes themselves run in HASH_SLOTS threads of their own at the lowest CPU priority
(HASH_NICENESS, Linux: niceness is per thread): a flood that keeps both slots busy takes the
processor only when the MLLP listener and the rest of the web app leave it idle. argon2 runs
with one lane (one thread per hash).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from labintake.errors import BusyError

__all__ = [
    "HASH_NICENESS",
    "HASH_SLOTS",
    "hash_password",
    "hashing_slot",
    "needs_rehash",
    "verify_password",
]

T = TypeVar("T")

# argon2id at the OWASP Password Storage Cheat Sheet's first configuration (19 MiB, 2
# iterations, 1 lane) rather than the library's default (64 MiB, 3, 4): the same strength by
# that guide, at a third of the memory per check. Hashes made with other parameters still
# verify, and are redone at the next successful login.
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)

HASH_SLOTS = 2
# How long a caller may wait for a slot: a few hashes' time, so a sign-in during a burst
# still passes, while a flood is refused quickly.
HASH_WAIT_SECONDS = 0.25

# The hashing threads' niceness: the lowest priority there is (the web process itself runs
# at 5, the listener at 0).
HASH_NICENESS = 19

_slots = threading.BoundedSemaphore(HASH_SLOTS)


def _lower_priority() -> None:
    """Run this thread (a hashing thread) at HASH_NICENESS; no-op where not supported."""
    with contextlib.suppress(AttributeError, OSError):  # not Linux: the process's priority
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASH_NICENESS)


# As many threads as slots: a caller holding a slot never waits for a thread.
_threads = ThreadPoolExecutor(
    max_workers=HASH_SLOTS, thread_name_prefix="argon2", initializer=_lower_priority
)


def _in_hashing_thread(work: Callable[[], T]) -> T:
    return _threads.submit(work).result()


@contextmanager
def hashing_slot(wait: float | None = None) -> Iterator[None]:
    """Hold one of the process's hashing slots; BusyError when none frees up within `wait`
    seconds (default HASH_WAIT_SECONDS)."""
    if not _slots.acquire(timeout=HASH_WAIT_SECONDS if wait is None else wait):
        raise BusyError("sign-in is busy at the moment; try again in a few seconds")
    try:
        yield
    finally:
        _slots.release()


def hash_password(password: str, *, wait: float | None = None) -> str:
    with hashing_slot(wait):
        return _in_hashing_thread(lambda: _hasher.hash(password))


def verify_password(password_hash: str, password: str) -> bool:
    """True when `password` matches `password_hash` (False for a malformed hash)."""
    with hashing_slot():
        return _in_hashing_thread(lambda: _verify(password_hash, password))


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)
