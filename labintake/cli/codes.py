"""`labintake codes ...`: list table versions, import official files, seal, build ICD-10-CM."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from labintake.cli.settings import load_settings
from labintake.errors import CodeTableError, LabintakeError

if TYPE_CHECKING:
    from labintake.codes.tables import CodeTables

codes_app = typer.Typer(
    help="Code tables: list versions, import official files.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

DirOption = Annotated[
    Path | None,
    typer.Option(
        "--dir",
        metavar="DIR",
        help="Code tables folder (default: LABINTAKE_CODE_TABLES_DIR, else the shipped tables)",
    ),
]


def _directory(given: Path | None) -> Path:
    if given is not None:
        return given
    return load_settings(development=True).code_tables_dir


def _writable_directory(given: Path | None) -> Path:
    """Where an import writes: never the copy inside an installed package (an upgrade
    replaces it), so the lab's own folder must be named."""
    from labintake.resources import is_installed_copy

    folder = _directory(given)
    if is_installed_copy(folder):
        typer.secho(
            f"error: {folder} holds the code tables shipped with the package and is replaced on "
            "upgrade; copy it to a folder of your own and name that with --dir or "
            "LABINTAKE_CODE_TABLES_DIR",
            fg="red",
            err=True,
        )
        raise typer.Exit(2)
    return folder


def _fail(exc: LabintakeError) -> typer.Exit:
    typer.secho(f"error: {exc}", fg="red", err=True)
    return typer.Exit(1)


def _tables_on(on: str | None, directory: Path | None) -> tuple[CodeTables, date]:
    """The loaded code tables and the day `--date` names (today by default); a clear error for
    a date that is not ISO or tables that do not load."""
    from labintake.codes.lookup import parse_day
    from labintake.codes.tables import load_code_tables

    try:
        day = parse_day(on) or date.today()
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--date") from exc
    try:
        return load_code_tables(_directory(directory)), day
    except CodeTableError as exc:
        raise _fail(exc) from exc


@codes_app.command("list")
def list_versions(directory: DirOption = None) -> None:
    """Every table version: kind, version, effective dates, rows, checksum, source."""
    from labintake.codes.manifest import compute_checksum, discover

    folder = _directory(directory)
    try:
        manifests = discover(folder)
    except CodeTableError as exc:
        raise _fail(exc) from exc
    table = Table(
        title=f"Code tables in {folder}",
        box=None,
        caption="* in force today",
        padding=(0, 1),
        pad_edge=False,
    )
    for column in ("kind", "version", "from", "to", "rows", "sha256", "subset"):
        table.add_column(column, no_wrap=True, justify="right" if column == "rows" else "left")
    bad = 0
    today = date.today()
    for m in manifests:
        assert m.folder is not None
        try:
            ok = compute_checksum(m.folder, m.files) == m.checksum
        except CodeTableError:
            ok = False
        bad += not ok
        checksum = m.checksum.removeprefix("sha256:")[:8]
        table.add_row(
            m.kind,
            m.version + (" *" if m.covers(today) else ""),
            m.effective_from.isoformat(),
            m.effective_to.isoformat() if m.effective_to else "-",
            f"{m.rows:,}",
            checksum if ok else f"[red]{checksum} MISMATCH[/red]",
            "illus." if m.illustrative else "full",
        )
    console = Console()
    console.print(table)
    console.print("Sources:")
    for m in manifests:
        console.print(f"  {m.version}: {m.source}", highlight=False)
        for label, text in (
            ("covers", m.covers_text),
            ("approximation", m.approximation),
            *(("source file", f) for f in m.source_files),
        ):
            if text:
                console.print(f"    {label}: {text}", highlight=False, soft_wrap=True)
        stamp = m.imported
        if stamp is not None:
            console.print(
                f"    imported {stamp.file} ({stamp.sha256[:19]}...) at "
                f"{stamp.at:%Y-%m-%d %H:%M} UTC, {stamp.by}; rows read {stamp.rows_read:,}, "
                f"kept {stamp.rows_kept:,}, skipped {stamp.rows_skipped:,}, "
                f"rejected {stamp.rows_rejected:,}",
                highlight=False,
            )
    icd10 = [m for m in manifests if m.kind == "icd10cm"]
    if icd10 and not any(m.covers(today) for m in icd10):
        from labintake.codes.release_choice import fiscal_year

        fy = fiscal_year(today)
        typer.secho(
            f"No ICD-10-CM release covers today ({today}): orders are checked against the "
            f"newest one with a CODE_TABLES_OUT_OF_DATE finding. Load the FY{fy} release: "
            f"labintake codes import icd10cm icd10cm-order-{fy}.txt --effective-from "
            f"{fy - 1}-10-01",
            fg="yellow",
        )
    if bad:
        typer.secho(f"{bad} table version(s) fail their checksum", fg="red", err=True)
        raise typer.Exit(1)


@codes_app.command("import")
def import_command(
    kind: Annotated[str, typer.Argument(help="ncci-ptp | mue | ncd | catalog | icd10cm | payers")],
    file: Annotated[
        Path,
        typer.Argument(
            exists=True,
            dir_okay=False,
            readable=True,
            help="ncd: the CMS NCD Coding Policy Manual as text, or a CSV ncd,list,code[,title]; "
            "ncci-ptp: the CMS PTP text file; mue: the CMS MUE CSV; catalog: the lab's CSV; "
            "icd10cm: the CMS order file (icd10cm_order_YYYY.txt); payers: the lab's payer "
            "table CSV (type,name,company_ids,plan_ids,names,source)",
        ),
    ],
    effective_from: Annotated[
        str | None,
        typer.Option(
            metavar="YYYY-MM-DD",
            help="First date of service (YYYY-MM-DD; default: the quarter of the edition "
            "the file names, else today)",
        ),
    ] = None,
    effective_to: Annotated[
        str | None, typer.Option(metavar="YYYY-MM-DD", help="Last date of service")
    ] = None,
    version: Annotated[
        str | None, typer.Option(metavar="VERSION", help="Version id (default KIND-DATE)")
    ] = None,
    all_codes: Annotated[
        bool, typer.Option("--all-codes", help="PTP/MUE: keep non-laboratory codes too")
    ] = False,
    strict: Annotated[bool, typer.Option(help="Write nothing if any row is rejected")] = False,
    addenda: Annotated[
        list[Path] | None,
        typer.Option(
            exists=True, dir_okay=False, help="icd10cm: order addenda file(s) to check against"
        ),
    ] = None,
    tabular: Annotated[
        Path | None,
        typer.Option(
            exists=True, dir_okay=False, help="icd10cm: tabular XML (Excludes1, 7th characters)"
        ),
    ] = None,
    directory: DirOption = None,
) -> None:
    """Read an official file and write a new table version with its manifest.

    icd10cm: FILE is the CMS order file (icd10cm-order-YYYY.txt); --effective-from is required
    (10-01 for the October release, 04-01 for the April update)."""
    from labintake.codes.importing import IMPORT_KINDS, import_file

    if kind not in (*IMPORT_KINDS, "icd10cm"):
        kinds = ", ".join((*IMPORT_KINDS, "icd10cm"))
        typer.secho(f"error: KIND must be one of {kinds}", fg="red", err=True)
        raise typer.Exit(2)
    try:
        start = date.fromisoformat(effective_from) if effective_from else None
        end = date.fromisoformat(effective_to) if effective_to else None
    except ValueError as exc:
        typer.secho(f"error: dates must be YYYY-MM-DD ({exc})", fg="red", err=True)
        raise typer.Exit(2) from exc
    if kind == "icd10cm":
        invoked = _invocation(kind, file, effective_from, effective_to, version)
        _import_icd10cm(file, start, end, version, addenda or [], tabular, directory, invoked)
        return
    if addenda or tabular:
        typer.secho("error: --addenda and --tabular are for icd10cm", fg="red", err=True)
        raise typer.Exit(2)
    console = Console(stderr=True)
    size = file.stat().st_size
    with Progress(
        TextColumn(f"reading {file.name}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("read", total=size)
        try:
            outcome = import_file(
                kind,
                file,
                _writable_directory(directory),
                effective_from=start,
                effective_to=end,
                version=version,
                lab_only=not all_codes,
                strict=strict,
                progress=lambda n: progress.advance(task, n),
                invoked_by=_invocation(kind, file, effective_from, effective_to, version),
            )
        except CodeTableError as exc:
            raise _fail(exc) from exc
        progress.update(task, completed=size)
    result = outcome.result
    summary = Table(title=f"{kind} import: {file.name}", show_header=False)
    summary.add_column("what")
    summary.add_column("count", justify="right")
    if result.layout:
        edition = f", {result.edition} edition" if result.edition else ""
        summary.add_row(f"layout {result.layout}{edition}", "")
    summary.add_row("rows read", f"{result.rows_read:,}")
    summary.add_row("rows kept", f"{result.kept:,}")
    if result.skipped:
        summary.add_row("rows skipped (not laboratory codes)", f"{result.skipped:,}")
    summary.add_row("rows rejected", f"{len(result.rejected):,}")
    for reason, count in sorted(result.reasons().items(), key=lambda kv: -kv[1]):
        summary.add_row(f"  {reason}", f"{count:,}")
    Console().print(summary)
    for item in result.rejected[:20]:
        where = f"line {item.line}" if item.line else "file"
        typer.echo(f"  rejected {where}: {item.reason}")
    if len(result.rejected) > 20:
        typer.echo(f"  ... and {len(result.rejected) - 20} more rejected rows")
    if outcome.written is None:
        typer.secho(f"nothing written: {outcome.reason_not_written}", fg="red", err=True)
        raise typer.Exit(1)
    m = outcome.written
    based = (
        f", rest from {outcome.based_on.version}" if outcome.based_on and kind != "catalog" else ""
    )
    typer.secho(
        f"wrote {m.kind} version {m.version} ({m.rows:,} rows, in force from "
        f"{m.effective_from}{based}) at {m.folder}",
        fg="green",
    )


def _import_icd10cm(
    file: Path,
    start: date | None,
    end: date | None,
    version: str | None,
    addenda: list[Path],
    tabular: Path | None,
    directory: Path | None,
    invoked_by: str,
) -> None:
    from labintake.codes.icd10_import import import_icd10cm

    try:
        done = import_icd10cm(
            file,
            _writable_directory(directory),
            effective_from=start,
            effective_to=end,
            version=version,
            addenda=addenda,
            tabular=tabular,
            invoked_by=invoked_by,
        )
    except CodeTableError as exc:
        raise _fail(exc) from exc
    summary = Table(title=f"icd10cm import: {file.name}", show_header=False)
    summary.add_column("what")
    summary.add_column("count", justify="right")
    summary.add_row("codes", f"{done.codes:,}")
    summary.add_row("complete (billable)", f"{done.billable:,}")
    summary.add_row("taking a 7th character", f"{done.seventh_codes:,}")
    summary.add_row("with Excludes1 patterns", f"{done.excludes1_codes:,}")
    if addenda:
        a = done.addenda
        summary.add_row("addenda checked (add/delete/revise)", f"{a.added}/{a.deleted}/{a.revised}")
    Console().print(summary)
    m = done.written
    typer.secho(
        f"wrote icd10cm version {m.version} ({m.rows:,} codes, dates of service "
        f"{m.effective_from} to {m.effective_to}) at {m.folder}; restart the service, then "
        f"re-verify the orders it covers: labintake replay --since {m.effective_from} --apply",
        fg="green",
    )


def _invocation(
    kind: str, file: Path, start: str | None, end: str | None, version: str | None
) -> str:
    """What the manifest records as the importing command and user."""
    import getpass

    words = ["labintake codes import", kind, file.name]
    for option, value in (("--effective-from", start), ("--effective-to", end)):
        if value:
            words += [option, value]
    if version:
        words += ["--version", version]
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = "unknown user"
    return f"{' '.join(words)} (by {user})"


@codes_app.command("seal")
def seal_command(
    folder: Annotated[Path, typer.Argument(exists=True, file_okay=False)],
) -> None:
    """Recompute rows and checksum of a table version folder after editing its data."""
    from labintake.codes.versions import seal

    try:
        manifest = seal(folder)
    except CodeTableError as exc:
        raise _fail(exc) from exc
    typer.echo(f"sealed {manifest.version}: {manifest.rows:,} rows, {manifest.checksum[:23]}...")


@codes_app.command("build-icd10")
def build_icd10_command(
    versions: Annotated[list[str] | None, typer.Argument(help="Release ids (default all)")] = None,
    directory: DirOption = None,
) -> None:
    """Compile ICD-10-CM releases from simple-icd-10-cm (needs the `icd-build` extra)."""
    from labintake.codes.build_icd10 import main

    raise typer.Exit(main([*(versions or []), "--out", str(_writable_directory(directory))]))


@codes_app.command("lookup")
def lookup_command(
    query: Annotated[
        str,
        typer.Argument(
            metavar="CODE_OR_WORDS",
            help="ICD-10-CM code or words; CPT/HCPCS, LOINC or local test code, or a test's name",
        ),
    ],
    on: Annotated[
        str | None,
        typer.Option("--date", metavar="YYYY-MM-DD", help="Date of service (default today)"),
    ] = None,
    limit: Annotated[
        int, typer.Option(min=1, metavar="N", help="Most rows shown of each kind")
    ] = 25,
    directory: DirOption = None,
) -> None:
    """Look a code up: the catalog's tests and the ICD-10-CM release in force on a date."""
    from labintake.codes.lookup import lookup, render

    tables, day = _tables_on(on, directory)
    sections = lookup(tables, query, day, limit)
    if not sections:
        typer.echo(f"{query}: no test and no ICD-10-CM code or title matches")
        raise typer.Exit(1)
    for line in render(sections, limit):
        typer.echo(line)


@codes_app.command("compress")
def compress_command(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    on: Annotated[
        str | None,
        typer.Option(
            "--date", metavar="YYYY-MM-DD", help="Release in force on this date (default today)"
        ),
    ] = None,
    directory: DirOption = None,
) -> None:
    """Write a transcribed code list (codes separated by spaces, commas or lines) as the fewest
    codes, families and ranges claiming exactly it over the release's billable codes."""
    from labintake.codes.ranges import billable_codes, compress

    tables, day = _tables_on(on, directory)
    release = tables.icd10_for(day)
    if release is None:
        typer.secho(f"no ICD-10-CM release covers {day}", fg="red", err=True)
        raise typer.Exit(1)
    codes = file.read_text(encoding="utf-8").replace(",", " ").split()
    try:
        patterns = compress(codes, billable_codes(release))
    except ValueError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"# {len(set(codes))} codes as {len(patterns)} patterns over {release.version}")
    for pattern in patterns:
        note = (
            "" if "-" in pattern or "*" in pattern or pattern in release else "  # not in release"
        )
        typer.echo(f'  "{pattern}",{note}')
