"""Versioned code tables: ICD-10-CM releases, the test catalog, coverage policies, bundling.

Public names are re-exported here; see `labintake.codes.tables.load_code_tables`.
"""

from labintake.codes.bundling import Bundling, MueLimit, PtpEdit
from labintake.codes.catalog import CatalogEntry, TestCatalog
from labintake.codes.icd10 import Icd10Entry, Icd10Release, normalize_icd10
from labintake.codes.manifest import TableVersion
from labintake.codes.policies import (
    CodeSet,
    CoveragePolicies,
    FrequencyLimit,
    NcdPolicy,
    PayerPlan,
    PayerRules,
)
from labintake.codes.screening import Eligibility, ScreeningBenefit, ScreeningFrequency
from labintake.codes.tables import CodeTables, get_code_tables, load_code_tables

__all__ = [
    "Bundling",
    "CatalogEntry",
    "CodeSet",
    "CodeTables",
    "CoveragePolicies",
    "Eligibility",
    "FrequencyLimit",
    "Icd10Entry",
    "Icd10Release",
    "MueLimit",
    "NcdPolicy",
    "PayerPlan",
    "PayerRules",
    "PtpEdit",
    "ScreeningBenefit",
    "ScreeningFrequency",
    "TableVersion",
    "TestCatalog",
    "get_code_tables",
    "load_code_tables",
    "normalize_icd10",
]
