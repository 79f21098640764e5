"""One huge or poisonous message must not stall the others: `python -m benchmarks.poison`.

Runs `labintake serve` (SQLite, a stub LIS on loopback) and, for each scenario, sends the
heavy message(s) first and then ordinary orders, one every `--every` seconds for
`--seconds`, each on its own connection; for each ordinary order it measures the time from
its AA to its delivery to the LIS (the order's status `delivered`, polled every 20 ms).

Scenarios:
- `large`: a 1 MiB message read in full (a note of 40,000 escape sequences: the slowest
  shape to read that is within the limits) and a 1 MiB message past a limit (5,000 orders);
- `poison`: the same messages with `LABINTAKE_READ_TIMEOUT_SECONDS` at 0.02 s, far below what
  reading them takes, so that every read overruns: each is tried `LABINTAKE_READ_ATTEMPTS`
  times in the reading process, abandoned, and parked in the error queue;
- `widest`: the largest message the default limits read in full (100 orders of 100 tests,
  about 690 KB), which is read, verified and written as 100 orders and 10,000 tests;
- `baseline`: no heavy message, for comparison.

Each ordinary order is sent `--every` seconds after the previous one's ACK, or as soon as
that one is delivered if later. At the default 0.25 s that is just after a round of the
pipeline, and while orders arrive a round starts at most every 0.5 s
(`labintake.batching.GATHER_SECONDS`), so the median is about 0.5 s. With orders further
apart than that (`--every 1.5`), an idle pipeline is woken by intake's commit
(`labintake.batching.IntakeWatch`): tens of milliseconds.

Target: every ordinary order delivered within 2 s of its AA while the heavy messages are
being read. The time from sending each ordinary order to its ACK is printed too (the ACK
waits for intake's commit, which waits for any write transaction of the workers on SQLite).
Exit status 1 when it is missed. Loopback only; the run stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine

from benchmarks import servers
from benchmarks.message_shapes import shape
from labintake.db import make_engine, migrate
from labintake.mllp.client import MLLPClient
from labintake.release.stub_lis import StubLis

TARGET_SECONDS = 2.0
SCENARIOS = ("baseline", "large", "widest", "poison")
MIB = 1024 * 1024
PID = "PID|1||{mrn}^^^BENCHCLINIC^MR||HARLOW^AVERY^A||19620304|F"
# A test and diagnosis the sample code tables pass (lipid panel for hyperlipidemia, NCD 190.23),
# from a provider with a valid NPI: verified, released, delivered.
ORDINARY = (
    "MSH|^~\\&|BENCHEHR|BENCHCLINIC|LABINTAKE|LAB|20261102080000||ORM^O01|{control}|P|2.5.1",
    PID,
    "IN1|1|MCRB|CMS|MEDICARE PART B",
    "ORC|NW|PL{control}||||||||||1234567893^WEXLER^DANA^^^^^^NPI^L^^^NPI",
    "OBR|1|PL{control}||80061^LIPID PANEL^CPT4|R|20261102080000|20261102080000"
    "|||||||||1234567893^WEXLER^DANA^^^^^^NPI^L^^^NPI",
    "DG1|1|I10|E78.5^Hyperlipidemia, unspecified^I10",
)


@dataclass
class Scenario:
    name: str
    env: dict[str, str]
    latencies: list[float] = field(default_factory=list)
    acks: list[float] = field(default_factory=list)  # send -> ACK, seconds
    undelivered: list[str] = field(default_factory=list)
    heavy: dict[str, str] = field(default_factory=dict)  # control id -> final status, reason


def heavy_messages(copies: int, widest: bool = False) -> dict[str, bytes]:
    """`copies` of each heavy message, with control ids HEAVYREAD1...: just under 1 MiB read
    in full and past a limit, or (`widest`) 100 orders of 100 tests each."""
    if widest:
        kinds = [("HEAVYWIDE", shape("full_orders").build(100 * 100))]
    else:
        kinds = [
            ("HEAVYREAD", shape("escapes").sized(MIB - 4096)[0]),
            ("HEAVYLIMIT", shape("notes_before_orders").sized(MIB - 4096)[0]),
        ]
    messages: dict[str, bytes] = {}
    for n in range(1, copies + 1):
        for control, text_ in ((f"{prefix}{n}", text_) for prefix, text_ in kinds):
            messages[control] = (
                text_.replace("SHAPEEHR|SHAPECLINIC", "BENCHEHR|BENCHCLINIC")
                .replace("SHAPE1", control)
                .encode()
            )
    return messages


def ordinary(control: str) -> bytes:
    return "\r".join(ORDINARY).format(control=control, mrn=f"BM{control[-6:]}").encode()


def order_status(engine: Engine, control: str) -> str | None:
    with engine.connect() as connection:
        return connection.execute(
            text(
                "SELECT o.status FROM lab_order o JOIN inbound_message m ON o.message_id = m.id "
                "WHERE m.control_id = :c"
            ),
            {"c": control},
        ).scalar()


def message_outcome(engine: Engine, control: str) -> str:
    with engine.connect() as connection:
        row = connection.execute(
            text("SELECT status, read_attempts, error FROM inbound_message WHERE control_id = :c"),
            {"c": control},
        ).first()
    if row is None:
        return "not stored"
    reason = f": {row.error[:110]}" if row.error else ""
    return f"{row.status} after {row.read_attempts} attempt(s){reason}"


async def send(port: int, message: bytes) -> str:
    async with MLLPClient("127.0.0.1", port) as client:
        ack = await client.send(message)
    return ack.decode(errors="replace").split("MSA|")[1][:2]


def run_scenario(scenario: Scenario, args: argparse.Namespace, workdir: Path) -> None:
    url = f"sqlite:///{workdir / (scenario.name + '.sqlite3')}"
    migrate(url)
    engine = make_engine(url)
    lis = StubLis(port=0).start()
    env = {"LABINTAKE_LIS_HOST": "127.0.0.1", "LABINTAKE_LIS_PORT": str(lis.port), **scenario.env}
    server = servers.labintake(url, workdir / scenario.name, extra_env=env).start()
    assert server.port is not None
    try:
        # Warm up: the first order loads the code tables in the worker process.
        asyncio.run(send(server.port, ordinary(f"WARM{scenario.name[:4].upper()}01")))
        deadline = time.monotonic() + 120
        while order_status(engine, f"WARM{scenario.name[:4].upper()}01") != "delivered":
            if time.monotonic() > deadline:
                raise RuntimeError(f"warm-up order not delivered; log {server.log_path}")
            time.sleep(0.1)
        heavy = heavy_messages(args.heavy, widest=scenario.name == "widest")
        heavy = heavy if scenario.name != "baseline" else {}
        for control, message in heavy.items():
            code = asyncio.run(send(server.port, message))
            if code != "AA":
                scenario.heavy[control] = f"answered {code}"
        size = max((len(m) for m in heavy.values()), default=0) // 1024
        print(f"  {scenario.name}: {len(heavy)} messages of up to {size} KiB sent", flush=True)
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < args.seconds:
            control = f"{scenario.name[:4].upper()}{n:06d}"
            sent = time.monotonic()
            code = asyncio.run(send(server.port, ordinary(control)))
            acked = time.monotonic()
            scenario.acks.append(acked - sent)
            if code != "AA":
                scenario.undelivered.append(f"{control} {code}")
            else:
                while True:
                    status = order_status(engine, control)
                    waited = time.monotonic() - acked
                    if status == "delivered":
                        scenario.latencies.append(waited)
                        break
                    if waited > 30 or status in ("held", "rejected", "error"):
                        scenario.undelivered.append(f"{control} {status} after {waited:.1f} s")
                        break
                    time.sleep(0.02)
            n += 1
            time.sleep(max(0.0, args.every - (time.monotonic() - acked)))
        # Let the heavy messages settle, then record how they ended.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            outcomes = {c: message_outcome(engine, c) for c in heavy}
            if not any(o.startswith("received") for o in outcomes.values()):
                break
            time.sleep(0.5)
        scenario.heavy.update({c: message_outcome(engine, c) for c in heavy})
    finally:
        server.stop()
        lis.stop()
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--every", type=float, default=0.25)
    parser.add_argument("--heavy", type=int, default=3, help="copies of each heavy message")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument(
        "--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS), help="which to run"
    )
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="labintake-poison-"))
    scenarios = [
        scenario
        for scenario in (
            Scenario("baseline", {}),
            Scenario("large", {}),
            Scenario("widest", {}),
            Scenario(
                "poison",
                {"LABINTAKE_READ_TIMEOUT_SECONDS": "0.02", "LABINTAKE_READ_ATTEMPTS": "3"},
            ),
        )
        if scenario.name in args.scenarios
    ]
    print(f"load average {os.getloadavg()[0]:.1f}; work in {workdir}")
    missed = False
    try:
        for scenario in scenarios:
            run_scenario(scenario, args, workdir)
            times = sorted(scenario.latencies)
            if times:
                p90 = times[max(0, int(len(times) * 0.9) - 1)]
                print(
                    f"{scenario.name}: {len(times)} ordinary orders AA -> delivered: median "
                    f"{statistics.median(times):.2f} s, p90 {p90:.2f} s, max {times[-1]:.2f} s"
                )
            if scenario.acks:
                acks = sorted(scenario.acks)
                print(
                    f"  send -> ACK (new connection each): median "
                    f"{statistics.median(acks) * 1000:.1f} ms, max {acks[-1] * 1000:.1f} ms"
                )
            for control, outcome in scenario.heavy.items():
                print(f"  {control}: {outcome}")
            if scenario.undelivered:
                print(f"  not delivered: {scenario.undelivered}")
            missed |= bool(scenario.undelivered) or not times or times[-1] > TARGET_SECONDS
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"target: every ordinary order delivered within {TARGET_SECONDS:g} s of its AA: "
        f"{'missed' if missed else 'met'}"
    )
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
