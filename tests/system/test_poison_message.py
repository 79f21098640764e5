"""A running service with 1 MiB messages being read, parked past a limit, or overrunning the
read budget, or with the largest message the limits read in full (100 orders of 100 tests)
being read and verified: ordinary orders still go from AA to delivered within 2 s
(benchmarks.poison)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from benchmarks.poison import TARGET_SECONDS, Scenario, run_scenario

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    "scenario",
    [
        Scenario("large", {}),
        Scenario("widest", {}),
        Scenario(
            "poison", {"LABINTAKE_READ_TIMEOUT_SECONDS": "0.02", "LABINTAKE_READ_ATTEMPTS": "2"}
        ),
    ],
    ids=lambda s: s.name,
)
def test_ordinary_orders_are_delivered_within_two_seconds_meanwhile(
    scenario: Scenario, tmp_path: Path
) -> None:
    run_scenario(scenario, argparse.Namespace(seconds=8.0, every=0.25, heavy=1), tmp_path)
    assert not scenario.undelivered
    assert len(scenario.latencies) >= 5
    assert max(scenario.latencies) <= TARGET_SECONDS, sorted(scenario.latencies)
    outcomes = scenario.heavy
    if scenario.name == "large":
        assert outcomes["HEAVYREAD1"] == "read after 1 attempt(s)", outcomes
        assert "at most 100 are read in one message" in outcomes["HEAVYLIMIT1"], outcomes
    elif scenario.name == "widest":
        assert outcomes == {"HEAVYWIDE1": "read after 1 attempt(s)"}, outcomes
    else:  # the first one sent is parked; the other may still wait its turn (restarts)
        assert outcomes["HEAVYREAD1"].startswith(
            "error after 2 attempt(s): not read after 2 attempts: reading took longer than 0.02 s"
        ), outcomes
