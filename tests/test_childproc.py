"""The child-process helper: the ready handshake, its deadline, a polite stop, then a kill."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection

import pytest

from labintake.childproc import (
    ChildProcess,
    ChildStartError,
    InChildProcess,
    wait_for_stop_request,
)
from labintake.errors import ConfigurationError

log = logging.getLogger("tests.childproc")


def _polite(parent: int, pipe: Connection) -> None:
    pipe.send(("ready", os.getpid()))
    wait_for_stop_request(pipe, parent, running=lambda: True, orphaned=(log, "orphaned"))


def _silent(pipe: Connection) -> None:
    time.sleep(60)


def _ends_at_once(pipe: Connection) -> None:
    raise SystemExit(3)


def _deaf(pipe: Connection) -> None:
    """Ready, then never reads the pipe again and ignores SIGTERM."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    pipe.send("ready")
    time.sleep(60)


@pytest.fixture
def child() -> Iterator[ChildProcess]:
    process = ChildProcess("labintake-test-child")
    yield process
    process.kill()


def test_the_child_says_it_is_ready_and_stops_when_asked(child: ChildProcess) -> None:
    child.spawn(_polite, os.getpid())
    kind, pid = child.wait_ready(60)
    assert (kind, pid) == ("ready", child.pid)
    process = child.process
    assert process is not None
    child.stop(30)
    assert process.exitcode == 0
    assert not child.started
    assert child.pipe is None
    assert child.pid is None


def test_a_child_that_says_nothing_in_time_is_late_not_ended(child: ChildProcess) -> None:
    child.spawn(_silent)
    with pytest.raises(ChildStartError) as caught:
        child.wait_ready(0.5)
    assert caught.value.ended is False
    assert child.is_alive()


def test_a_child_that_ends_before_it_is_ready_is_reported_as_ended(child: ChildProcess) -> None:
    child.spawn(_ends_at_once)
    with pytest.raises(ChildStartError) as caught:
        child.wait_ready(60)
    assert caught.value.ended is True
    assert child.process is not None
    child.process.join(5)
    assert child.exitcode == 3


def test_a_child_that_ignores_the_stop_is_terminated_then_killed(
    child: ChildProcess, caplog: pytest.LogCaptureFixture
) -> None:
    child.spawn(_deaf)
    assert child.wait_ready(60) == "ready"
    process = child.process
    assert process is not None
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="tests.childproc"):
        child.stop(0.5, late=(log, "the test child did not stop in time"))
    assert process.exitcode == -signal.SIGKILL  # SIGTERM ignored: killed after it
    assert time.monotonic() - started < 30
    assert "the test child did not stop in time" in caplog.text
    assert not child.started


def test_kill_gives_the_child_up_at_once(child: ChildProcess) -> None:
    child.spawn(_deaf)
    assert child.wait_ready(60) == "ready"
    process = child.process
    assert process is not None
    child.kill()
    assert process.exitcode == -signal.SIGKILL
    assert not child.started
    assert child.pipe is None


def test_an_orphaned_child_stops_waiting_and_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """In the child: a parent id that is not its parent any more is a parent gone away."""
    reader, writer = ChildProcess("unused").context.Pipe(duplex=False)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="tests.childproc"):
        wait_for_stop_request(
            reader, os.getppid() + 1_000_000, running=lambda: True, orphaned=(log, "gone")
        )
    assert time.monotonic() - started < 5
    assert "gone" in caplog.text
    reader.close()
    writer.close()


def _refuses(kind: str, pipe: Connection) -> None:
    pipe.send((kind, "LABINTAKE_SOMETHING is not a number"))


class _Part(InChildProcess):
    def __init__(self) -> None:
        self._child = ChildProcess("labintake-test-part")
        self.stopped = 0

    def stop(self) -> None:
        self.stopped += 1
        self._child.stop(5)


@pytest.mark.parametrize(
    ("kind", "said"),
    [
        ("configuration", "LABINTAKE_SOMETHING is not a number"),
        ("error", "the part could not start: LABINTAKE_SOMETHING is not a number"),
    ],
)
def test_a_part_whose_child_refuses_to_start_is_stopped_with_the_reason(
    kind: str, said: str
) -> None:
    part = _Part()
    part._child.spawn(_refuses, kind)
    with pytest.raises(ConfigurationError) as caught:
        part._wait_started(60, late="late", ended="ended", refused="the part could not start")
    assert str(caught.value) == said
    assert part.stopped == 1
    assert part.pid is None
