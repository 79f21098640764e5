"""SQLite under storage faults: a full disk and a database file that turns read-only.

A real `labintake serve` takes load; the fault is injected under it, then removed. While the
fault lasts intake must answer with a NAK (or not at all) instead of AA, and keep running;
once it is removed, AA again. Every message that got AA is stored exactly once, and
everything else is stored once when the sender resends it.

The full disk is a small tmpfs mounted for the test; the read-only files are the database,
intake's journal beside it and their write-ahead logs, marked immutable (`chattr +i`, which
holds even for root). Each test is
skipped where its fault cannot be made (no permission to mount, no `chattr` support).
"""

from __future__ import annotations

import contextlib
import errno
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from benchmarks import servers
from benchmarks.loadgen import LoadResult, LoadSpec, parse_ack, run_load_blocking
from benchmarks.messages import SyntheticMessage, synthetic_orders
from labintake.db import migrate
from tests.system.counts import PipelineCounts, stored_control_ids, wait_for_verification

CONNECTIONS = 3
PADDING = 8_000  # bigger messages make the write-ahead log grow, so a full disk shows at once


def padded_orders(prefix: str, count: int | None = None) -> Iterator[SyntheticMessage]:
    for message in synthetic_orders(prefix, count):
        raw = message.raw.replace(b"NTE|1|P|", b"NTE|1|P|" + b"P" * PADDING, 1)
        yield SyntheticMessage(message.control_id, raw)


@dataclass
class FaultRun:
    sent: int
    accepted: set[str]
    refused: set[str]
    unanswered: set[str]
    codes_during_fault: list[str]
    codes_after_fault: list[str]
    resent: int
    stored: int
    pipeline: PipelineCounts


def _load(
    port: int, messages: Iterator[SyntheticMessage], seconds: float, at_most: int
) -> LoadResult:
    """`seconds` of load, or `at_most` messages if that comes first: what is stored must leave
    room on the small disk for the orders read from it once the fault is gone, however fast
    intake is."""
    return run_load_blocking(
        LoadSpec(
            port=port,
            connections=CONNECTIONS,
            duration_seconds=seconds,
            max_messages=at_most,
            keep_acks=True,
            stop_on_error=False,
            ack_timeout_seconds=20.0,
        ),
        messages,
    )


def run_fault_cycle(
    database_url: str,
    workdir: Path,
    prefix: str,
    inject: Callable[[], None],
    remove: Callable[[], None],
) -> FaultRun:
    """Load before, during and after a fault; resend what was not accepted; count."""
    server = servers.labintake(database_url, workdir).start()
    assert server.port is not None
    source = padded_orders(prefix)
    phases: dict[str, LoadResult] = {}
    try:
        phases["before"] = _load(server.port, source, 1.5, at_most=1500)
        inject()
        try:
            phases["during"] = _load(server.port, source, 4.0, at_most=3000)
        finally:
            remove()
        time.sleep(1.0)
        phases["after"] = _load(server.port, source, 4.0, at_most=2000)
        assert server.process is not None
        assert server.process.poll() is None, f"labintake died:\n{server.log_tail()}"

        codes: dict[str, str] = {}
        unanswered: set[str] = set()
        for result in phases.values():
            codes.update({c: parse_ack(ack)[0] for c, ack in result.acks.items()})
            unanswered.update(result.unacked)
        accepted = {c for c, code in codes.items() if code == "AA"}
        refused = {c for c, code in codes.items() if code != "AA"}
        sent = sum(r.sent for r in phases.values())
        stored_now = stored_control_ids(database_url, "BENCHEHR")
        lost = sorted(accepted - set(stored_now))
        assert not lost, f"{len(lost)} acknowledged messages not stored, e.g. {lost[:5]}"

        every = {m.control_id: m for m in padded_orders(prefix, sent)}
        resend = [every[c] for c in sorted(refused | unanswered)]
        second = run_load_blocking(
            LoadSpec(
                port=server.port,
                connections=CONNECTIONS,
                max_messages=max(1, len(resend)),
                keep_acks=True,
                ack_timeout_seconds=20.0,
            ),
            resend,
        )
        assert second.ack_codes == ({"AA": len(resend)} if resend else {}), second.summary()
        pipeline = wait_for_verification(database_url, "BENCHEHR", len(every))
    finally:
        server.stop()
    stored = stored_control_ids(database_url, "BENCHEHR")
    # Reading and verification went through the fault too: each message one order, verified once.
    assert pipeline.orders_per_message == {1: len(every)}, pipeline.line()
    assert pipeline.verifications_per_order == {1: len(every)}, pipeline.line()
    repeated = {c: n for c, n in stored.items() if n != 1}
    assert not repeated, f"stored more than once: {list(repeated.items())[:5]}"
    assert set(stored) == set(every), f"missing {len(set(every) - set(stored))}"
    return FaultRun(
        sent=sent,
        accepted=accepted,
        refused=refused,
        unanswered=unanswered,
        codes_during_fault=[parse_ack(a)[0] for a in phases["during"].acks.values()],
        codes_after_fault=[parse_ack(a)[0] for a in phases["after"].acks.values()],
        resent=len(resend),
        stored=len(stored),
        pipeline=pipeline,
    )


def _report(name: str, run: FaultRun) -> None:
    during = run.codes_during_fault
    print(
        f"\n{name}: sent {run.sent}, acknowledged AA {len(run.accepted)}, NAK {len(run.refused)}, "
        f"unanswered {len(run.unanswered)}; during the fault {during.count('AA')} AA of "
        f"{len(during)} answers; after it {run.codes_after_fault.count('AA')} AA of "
        f"{len(run.codes_after_fault)}; resent {run.resent}; stored {run.stored}, each once; "
        f"then {run.pipeline.line()} (delivery is not awaited here: no LIS is configured)"
    )


def _assert_fault_seen_and_recovered(run: FaultRun) -> None:
    nak_or_silence = [c for c in run.codes_during_fault if c != "AA"]
    assert nak_or_silence or run.unanswered, "the fault never showed: every message got AA"
    assert set(run.codes_during_fault) <= {"AA", "AE"}, set(run.codes_during_fault)
    assert run.codes_after_fault, "no answers after the fault was removed"
    assert run.codes_after_fault[-1] == "AA", "intake did not recover after the fault"


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(path: Path) -> None:
    """Write into `path` until the filesystem is full."""
    with contextlib.suppress(OSError), path.open("wb") as filler:
        chunk = b"\0" * 65536
        with contextlib.suppress(OSError):
            while True:
                filler.write(chunk)
                filler.flush()
        # Top up the last partial chunk.
        with contextlib.suppress(OSError):
            while True:
                filler.write(b"\0" * 512)
                filler.flush()


@pytest.mark.skipif(shutil.which("mount") is None, reason="mount not available")
def test_sqlite_disk_full_naks_without_crashing_and_recovers_when_space_returns(
    tmp_path: Path,
) -> None:
    # Room for what the whole run stores (about 6,500 messages of 9 KB, each in the journal,
    # then in the database with its order and outbound message, and the logs beside them)
    # with a margin on a loaded machine, where the workers lag and the journal holds more.
    with small_tmpfs(tmp_path / "small", "384m") as folder:
        url = f"sqlite:///{folder / 'labintake.sqlite3'}"
        migrate(url)
        filler = folder / "filler"

        def inject() -> None:
            _fill(filler)

        def remove() -> None:
            filler.unlink(missing_ok=True)

        run = run_fault_cycle(url, tmp_path / "serve", "DISKFULL", inject, remove)
    _report("SQLite disk full", run)
    _assert_fault_seen_and_recovered(run)


def _immutable(paths: list[Path], on: bool) -> subprocess.CompletedProcess[str]:
    existing = [str(p) for p in paths if p.exists()]
    return subprocess.run(
        ["chattr", "+i" if on else "-i", *existing], capture_output=True, text=True, check=False
    )


@pytest.mark.skipif(shutil.which("chattr") is None, reason="chattr not available")
def test_sqlite_read_only_database_file_naks_without_crashing_and_recovers(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "db"
    folder.mkdir()
    database = folder / "labintake.sqlite3"
    url = f"sqlite:///{database}"
    migrate(url)
    # The database and intake's journal beside it (where an ACK's commit goes), with their
    # write-ahead logs.
    files = [
        database,
        folder / "labintake.sqlite3-wal",
        folder / "labintake.sqlite3.intake",
        folder / "labintake.sqlite3.intake-wal",
    ]
    probe = _immutable([database], on=True)
    _immutable([database], on=False)
    if probe.returncode != 0:
        pytest.skip(f"cannot mark files immutable here: {probe.stderr.strip()}")
    made_read_only = threading.Event()

    def inject() -> None:
        result = _immutable(files, on=True)
        assert result.returncode == 0, result.stderr
        made_read_only.set()

    def remove() -> None:
        _immutable(files, on=False)

    try:
        run = run_fault_cycle(url, tmp_path / "serve", "READONLY", inject, remove)
    finally:
        remove()
    assert made_read_only.is_set()
    _report("SQLite read-only database file", run)
    _assert_fault_seen_and_recovered(run)


def test_filling_helper_really_fills_a_small_filesystem(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "tiny", "1m") as folder:
        _fill(folder / "filler")
        with pytest.raises(OSError) as raised:
            (folder / "more").write_bytes(b"x" * 8192)
        assert raised.value.errno == errno.ENOSPC
