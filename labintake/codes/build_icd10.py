"""Compile ICD-10-CM releases from the `simple-icd-10-cm` package into compact tables.

    python -m labintake.codes.build_icd10                 # every known release
    python -m labintake.codes.build_icd10 icd10cm-2025-04 --out code_tables

Each release comes from the package version that ships it (see `RELEASES`). The installed
package is used when its version matches; otherwise the wheel is fetched with
`pip download --no-deps` and its module is read from an extracted copy, in a child process,
so the newer installed package is never replaced and the ~200 MB tree never stays in this
process. The running service never imports `simple_icd_10_cm`; it reads the compiled
`code_tables/icd10cm/<version>/icd10cm.tsv.gz` (see `labintake.codes.icd10`).

Effective dates: ICD-10-CM takes effect each October 1 (the fiscal year's release) with
April 1 updates. Only the April updates exist as package versions; an April update carries its
fiscal year's October codes plus the few April changes, so each stands for its whole fiscal
year (October 1 to September 30), the months before its April 1 as a documented approximation
(`release_date`, `covers` and `approximation` in the manifest). Dates after the last window are
not covered by anything compiled here: load the official CMS order file with
`labintake codes import icd10cm` (see `labintake.codes.icd10_import`).
"""

from __future__ import annotations

import argparse
import gzip
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import date
from importlib import metadata
from pathlib import Path

from labintake.codes.icd10 import Icd10Entry, format_rows, is_manifestation_title
from labintake.codes.manifest import TableVersion, write_manifest

PACKAGE = "simple-icd-10-cm"
MODULE = "simple_icd_10_cm"
FILE_NAME = "icd10cm.tsv.gz"


@dataclass(frozen=True)
class ReleaseSpec:
    version: str
    package_version: str
    data_marker: str  # must appear in the package's data file name
    effective_from: date
    effective_to: date | None
    title: str
    release_date: date

    @property
    def fiscal_year(self) -> int:
        return self.effective_to.year if self.effective_to else self.release_date.year


RELEASES = (
    ReleaseSpec(
        "icd10cm-2025-04",
        "1.4.0",
        "April-2025",
        date(2024, 10, 1),
        date(2025, 9, 30),
        "ICD-10-CM April 1, 2025 release (FY2025 update)",
        date(2025, 4, 1),
    ),
    ReleaseSpec(
        "icd10cm-2026-04",
        "1.5.0",
        "April-2026",
        date(2025, 10, 1),
        date(2026, 9, 30),
        "ICD-10-CM April 1, 2026 release (FY2026 update)",
        date(2026, 4, 1),
    ),
)

_CODE = r"[A-Z]\d[0-9A-Z](?:\.[0-9A-Z]{1,4})?"
_RANGE = re.compile(rf"^({_CODE})\.?-\s*({_CODE})(?:\.?-)?$")
_PREFIX = re.compile(rf"^({_CODE})\.?-$")
_EXACT = re.compile(rf"^({_CODE})$")
_PARENS = re.compile(r"\(([^()]*)\)")


def excludes_patterns(notes: list[str], is_header: dict[str, bool]) -> tuple[str, ...]:
    """Code patterns in Excludes1 notes: '(E10.-)' -> 'E10.*', '(E08-E13)' -> 'E08-E13'.

    A code written without a dash that has children in the release stands for its family.
    """
    patterns: list[str] = []
    for note in notes:
        for group in _PARENS.findall(note):
            for token in group.split(","):
                token = token.strip().upper()
                if m := _RANGE.match(token):
                    patterns.append(f"{m.group(1)}-{m.group(2)}")
                elif m := _PREFIX.match(token):
                    stem = m.group(1)
                    patterns.append(f"{stem}.*" if len(stem) == 3 else f"{stem}*")
                elif m := _EXACT.match(token):
                    code = m.group(1)
                    if is_header.get(code, False):
                        patterns.append(f"{code}.*" if len(code) == 3 else f"{code}*")
                    else:
                        patterns.append(code)
    return tuple(dict.fromkeys(patterns))


def compile_loaded_module() -> list[Icd10Entry]:
    """Rows from the `simple_icd_10_cm` module importable in this process (child side)."""
    import simple_icd_10_cm as cm

    codes = [
        c
        for c in dict.fromkeys(cm.get_all_codes(with_dots=True))
        if cm.is_category_or_subcategory(c)
    ]
    is_header = {c: not cm.is_leaf(c) for c in codes}
    seventh: set[str] = set()
    for code in codes:
        if cm.is_extended_subcategory(code):
            seventh.add(code)
            seventh.add(cm.get_parent(code))
    entries = []
    for code in codes:
        parent = cm.get_parent(code) if cm.is_subcategory(code) else None
        description = " ".join(cm.get_description(code).split())
        entries.append(
            Icd10Entry(
                code=code,
                description=description,
                billable=not is_header[code],
                header=is_header[code],
                seventh_char_required=code in seventh,
                excludes1=excludes_patterns(cm.get_excludes1(code), is_header),
                parent=parent or None,
                manifestation=is_manifestation_title(description),
            )
        )
    return entries


def _emit(package_path: str | None, marker: str, out: Path) -> None:
    if package_path:
        sys.path.insert(0, package_path)
    import simple_icd_10_cm as cm

    data_file = getattr(cm.simple_icd_10_cm, "_all_codes_package_file_name", "")
    if marker not in data_file:
        raise SystemExit(f"package data {data_file!r} is not the {marker} release")
    out.write_text(format_rows(compile_loaded_module()), encoding="utf-8")


def _package_dir(spec: ReleaseSpec, workdir: Path) -> str | None:
    """None when the installed package is the right one, else an extracted wheel's folder."""
    try:
        if metadata.version(PACKAGE) == spec.package_version:
            return None
    except metadata.PackageNotFoundError:
        pass
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            f"{PACKAGE}=={spec.package_version}",
            "--no-deps",
            "--only-binary=:all:",
            "-d",
            str(workdir),
        ],
        check=True,
        capture_output=True,
    )
    wheels = list(workdir.glob(f"{MODULE}-{spec.package_version}-*.whl"))
    if not wheels:
        raise SystemExit(f"pip did not produce a wheel for {PACKAGE}=={spec.package_version}")
    extracted = workdir / f"extracted-{spec.package_version}"
    with zipfile.ZipFile(wheels[0]) as wheel:
        wheel.extractall(extracted)
    return str(extracted)


def build_release(spec: ReleaseSpec, out_dir: Path) -> TableVersion:
    """Compile one release into `out_dir/icd10cm/<version>/` and seal it with a manifest."""
    folder = out_dir / "icd10cm" / spec.version
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        package_path = _package_dir(spec, workdir)
        rows_file = workdir / "rows.tsv"
        command = [
            sys.executable,
            "-m",
            "labintake.codes.build_icd10",
            "--emit",
            str(rows_file),
            "--marker",
            spec.data_marker,
        ]
        if package_path:
            command += ["--package-path", package_path]
        subprocess.run(command, check=True)
        text = rows_file.read_text(encoding="utf-8")
    rows = text.count("\n")
    (folder / FILE_NAME).write_bytes(gzip.compress(text.encode("utf-8"), 9, mtime=0))
    return write_manifest(
        folder,
        TableVersion(
            kind="icd10cm",
            version=spec.version,
            source=f"CMS/NCHS {spec.title} (public domain), read through {PACKAGE} "
            f"{spec.package_version} (MIT); compiled by labintake.codes.build_icd10",
            effective_from=spec.effective_from,
            effective_to=spec.effective_to,
            rows=rows,
            checksum="",
            illustrative=False,
            files=(FILE_NAME,),
            created=date.today(),
            notes="Chapters and blocks left out. Flags: B billable, H header, 7 takes a 7th "
            "character, M manifestation code (guideline I.A.13).",
            release_date=spec.release_date,
            covers_text=window_text(spec),
            approximation=approximation_text(spec),
        ),
    )


def window_text(spec: ReleaseSpec) -> str:
    fy, y = spec.fiscal_year, spec.release_date.year
    return (
        f"FY{fy}: dates of service {spec.effective_from} to {spec.effective_to} (the April {y} "
        f"update, which carries the FY{fy} October codes plus the April {y} changes, stands "
        "for the whole fiscal year)"
    )


def approximation_text(spec: ReleaseSpec) -> str:
    fy, y, rd = spec.fiscal_year, spec.release_date.year, spec.release_date
    return (
        f"From {spec.effective_from} to {y}-03-31 the FY{fy} October release was in force; "
        f"this April update stands in for it. It differs only by the April {y} changes: codes "
        f"added on {rd} are accepted a few months early, and codes deleted or expanded on {rd} "
        f"are refused a few months early. Loading the FY{fy} October order file (labintake "
        "codes import icd10cm) takes those months back."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("versions", nargs="*", help="release ids (default: all)")
    parser.add_argument("--out", type=Path, default=Path("code_tables"))
    parser.add_argument("--emit", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--marker", default="", help=argparse.SUPPRESS)
    parser.add_argument("--package-path", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.emit:
        _emit(args.package_path, args.marker, args.emit)
        return 0
    known = {spec.version: spec for spec in RELEASES}
    unknown = [v for v in args.versions if v not in known]
    if unknown:
        parser.error(f"unknown release(s) {', '.join(unknown)}; known: {', '.join(known)}")
    for version in args.versions or list(known):
        manifest = build_release(known[version], args.out)
        print(f"{manifest.version}: {manifest.rows} codes, {manifest.checksum[:23]}...")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
