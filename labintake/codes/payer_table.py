"""The lab's payer table as a file to import (`labintake codes import payers FILE`).

CSV with a header row, one payer (or plan) a row; lists are separated by spaces or `;`:

    type,name,company_ids,plan_ids,names,source
    medicare,Medicare Part B,CMS;00431,,,our senders
    medicare-advantage,Acme Medicare Advantage,ACME01,MAPD;HMO-MA,,contract H1234

Each row is checked like `payers.toml` (known type; company ids, plan ids or names) and the
kept rows are written as the `[[payer]]` entries of a new coverage version's `payers.toml`.
"""

from __future__ import annotations

import csv
import io
import json
import re

from labintake.codes.importers import ImportResult, Progress, Rejected
from labintake.codes.policies import PLAN_TYPES, PayerPlan

COLUMNS = ("type", "name", "company_ids", "plan_ids", "names", "source")
HEADER = "# The payer table (see the payers.toml of the shipped coverage version for the fields).\n"


def _list(value: str) -> frozenset[str]:
    return frozenset(v.strip().upper() for v in re.split(r"[;\s]+", value) if v.strip())


def read_payers_csv(text: str, *, progress: Progress | None = None) -> ImportResult:
    result = ImportResult("payers")
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in ("type", "company_ids") if c not in (reader.fieldnames or [])]
    if missing:
        result.rejected.append(Rejected(0, f"missing column(s): {', '.join(missing)}"))
        return result
    for row in reader:
        result.rows_read += 1
        line = reader.line_num
        kind = (row.get("type") or "").strip().lower()
        if kind not in PLAN_TYPES:
            result.rejected.append(Rejected(line, f"unknown payer type: {kind!r}"))
            continue
        ids, plans = _list(row.get("company_ids") or ""), _list(row.get("plan_ids") or "")
        names = frozenset(
            " ".join(n.upper().split()) for n in (row.get("names") or "").split(";") if n.strip()
        )
        if not ids and not plans and not names:
            result.rejected.append(
                Rejected(line, "no company id, plan id or name: the row matches nothing")
            )
            continue
        result.payers.append(
            PayerPlan(
                type=kind,
                name=(row.get("name") or "").strip(),
                company_ids=ids,
                plan_ids=plans,
                names=names,
                source=(row.get("source") or "").strip(),
            )
        )
    if progress is not None:
        progress(len(text))
    return result


def format_payers_toml(plans: list[PayerPlan]) -> str:
    """`[[payer]]` entries in the order given (TOML strings written as JSON strings)."""
    out = [HEADER]
    for plan in plans:
        out.append("[[payer]]")
        out.append(f"type = {json.dumps(plan.type)}")
        if plan.name:
            out.append(f"name = {json.dumps(plan.name)}")
        for key, values in (
            ("company_ids", plan.company_ids),
            ("plan_ids", plan.plan_ids),
            ("names", plan.names),
        ):
            if values:
                out.append(f"{key} = {json.dumps(sorted(values))}")
        if plan.source:
            out.append(f"source = {json.dumps(plan.source)}")
        out.append("")
    return "\n".join(out)
