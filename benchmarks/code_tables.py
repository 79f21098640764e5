"""Code tables load benchmark: wall time and resident memory added by `load_code_tables`.

    python benchmarks/code_tables.py [CODE_TABLES_DIR] [--repeat N]

Each run is a fresh child process (so nothing is cached and RSS starts from a bare
interpreter with labintake.codes imported); prints one line per run and the median.
Target: load <= 1 s and <= 60 MB RSS added, with every shipped table version loaded
(both ICD-10-CM releases). It also checks that `simple_icd_10_cm` was never imported.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from pathlib import Path

def rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0

from labintake.codes.tables import load_code_tables
from datetime import date
before = rss_kb()
start = time.perf_counter()
tables = load_code_tables(Path(sys.argv[1]))
seconds = time.perf_counter() - start
after = rss_kb()
# touch the tables the way verification does
release = tables.icd10_for(date(2026, 5, 1))
lookups_start = time.perf_counter()
for code in ["E11.9", "E11", "T36.0X1A", "E11.A", "Z00.00", "I25.10"] * 1000:
    release.get(code)
lookup_us = (time.perf_counter() - lookups_start) / 6000 * 1e6
print(json.dumps({
    "seconds": seconds,
    "rss_added_mb": (after - before) / 1024,
    "lookup_us": lookup_us,
    "versions": [m.version for m in tables.manifests()],
    "icd_imported": "simple_icd_10_cm" in sys.modules,
}))
"""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("directory", nargs="?", type=Path, default=Path("code_tables"))
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    runs = []
    for _ in range(args.repeat):
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(args.directory)],
            check=True,
            capture_output=True,
            text=True,
        )
        run = json.loads(out.stdout)
        runs.append(run)
        print(
            f"load {run['seconds']:.3f} s   RSS +{run['rss_added_mb']:.1f} MB   "
            f"ICD lookup {run['lookup_us']:.2f} us"
        )
    seconds = statistics.median(r["seconds"] for r in runs)
    rss = statistics.median(r["rss_added_mb"] for r in runs)
    print(
        f"median: load {seconds:.3f} s, RSS +{rss:.1f} MB "
        f"(targets: <= 1 s, <= 60 MB); versions: {', '.join(runs[0]['versions'])}"
    )
    if any(r["icd_imported"] for r in runs):
        print("FAIL: simple_icd_10_cm was imported")
        return 1
    return 0 if seconds <= 1.0 and rss <= 60 else 1


if __name__ == "__main__":
    raise SystemExit(main())
