"""The worker processes' collector settings (labintake.heap), checked in a fresh interpreter so
the test process keeps its own."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from labintake import heap

_PROBE = textwrap.dedent(
    """
    import gc, weakref
    import labintake.models  # what a worker has loaded: models, SQLAlchemy
    from labintake import heap

    before = gc.get_freeze_count()
    heap.settle()
    frozen = gc.get_freeze_count()

    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle made after start-up
    probe = weakref.ref(a)
    del a, b
    gc.collect()
    print(before, frozen, *gc.get_threshold(), probe() is None)
    """
)


def test_settle_freezes_what_is_loaded_and_still_collects_new_cycles() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    before, frozen, young, middle, old, collected = done.stdout.split()
    assert int(before) == 0
    assert int(frozen) > 10_000  # the imported modules, classes and tables
    assert (int(young), int(middle), int(old)) == (heap.YOUNG_THRESHOLD, *heap.OLDER_THRESHOLDS)
    assert collected == "True"
