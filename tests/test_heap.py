"""The worker processes' collector settings (labintake.heap), checked in a fresh interpreter so
the test process keeps its own."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

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


_LISTENER_PROBE = textwrap.dedent(
    """
    import asyncio, gc, os, sys
    from benchmarks.servers import labintake_env
    from labintake.db import migrate

    url = sys.argv[1]
    migrate(url)
    os.environ.update(labintake_env(url))
    from labintake import runtime
    from labintake.config import Settings

    # The listener alone: the web and worker children are not what this checks.
    runtime.WebProcess.start = lambda self, timeout=0.0: None
    runtime.WorkerProcess.start = lambda self, timeout=0.0: None
    runtime.WorkerProcess.stop = lambda self, timeout=0.0: None

    async def watch(self, stop):  # what the listener's heap is once the service runs
        print(gc.get_freeze_count(), gc.get_threshold()[0])

    runtime.Supervisor.watch = watch
    asyncio.run(runtime.serve(Settings()))
    """
)


def test_the_listener_process_settles_its_heap_once_the_service_runs(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _LISTENER_PROBE, f"sqlite:///{tmp_path / 'probe.db'}"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    frozen, young = done.stdout.split()
    assert int(frozen) > 10_000  # SQLAlchemy, the models, the code tables: out of the way
    assert int(young) == heap.YOUNG_THRESHOLD
