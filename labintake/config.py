"""Settings: one pydantic-settings class, read from `LABINTAKE_*` variables or a `.env` file."""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from labintake.hl7.limits import (
    MAX_DIAGNOSES_PER_ORDER,
    MAX_FIELD_REPETITIONS,
    MAX_NOTES_PER_ORDER,
    MAX_ORDERS_PER_MESSAGE,
    MAX_TESTS_PER_ORDER,
)
from labintake.resources import default_code_tables, default_interfaces

DEFAULT_SECRET_KEY = "change-me-development-only"  # noqa: S105 - a marker, refused outside demo
DEFAULT_DATABASE_URL = "sqlite:///./var/labintake.sqlite3"
DEFAULT_CONFIDENTIALITY_NOTICE = (
    "CONFIDENTIAL: this document contains protected health information. It is intended only "
    "for the ordering provider and the provider's staff named above. If you received it in "
    "error, please notify the laboratory at once by phone and destroy all copies; any review, "
    "use or disclosure by others is prohibited."
)
# `serve --demo` writes the secret it generated here, beside the default database, so that
# the other commands (`users`, `tokens`, `codes`, `replay`) work on the same demo database
# without development mode. Read only while the database is that default SQLite file.
DEMO_SECRET_FILE = Path("var/demo-secret-key")


class Settings(BaseSettings):
    """Every knob of the service. Names match `../CONTRACT.md` with the `LABINTAKE_` prefix."""

    model_config = SettingsConfigDict(
        env_prefix="LABINTAKE_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str = DEFAULT_DATABASE_URL

    mllp_host: str = "127.0.0.1"
    mllp_port: int = 2575
    web_host: str = "127.0.0.1"
    web_port: int = 8000

    lis_host: str | None = None
    lis_port: int = 2576
    # Release to the LIS: MLLP over TLS (CA to trust; client certificate when the LIS asks).
    lis_tls: bool = False
    lis_tls_ca: Path | None = None
    lis_tls_cert: Path | None = None
    lis_tls_key: Path | None = None
    lis_ack_timeout_seconds: float = Field(default=30.0, gt=0)
    lis_connect_timeout_seconds: float = Field(default=10.0, gt=0)
    lis_max_attempts: int = Field(default=20, ge=1)
    lis_backoff_base_seconds: float = Field(default=2.0, gt=0)
    lis_backoff_cap_seconds: float = Field(default=300.0, gt=0)
    # Outbound message: ORM^O01 or OML^O21, HL7 version, and where each code goes.
    lis_message_type: str = "ORM^O01"
    lis_version: str = "2.5.1"
    lis_receiving_application: str = "LIS"
    lis_receiving_facility: str = "LAB"
    lis_sending_application: str = "LABINTAKE"
    lis_sending_facility: str = "LAB"
    lis_order_code: str = "local"  # OBR-4 first triplet: local | loinc | cpt
    lis_alternate_code: str = "loinc"  # OBR-4 alternate triplet: local | loinc | cpt | none
    lis_billing_codes: bool = True  # FT1 per test with CPT/HCPCS, diagnoses and modifiers
    # Replies to placers (ORR^O02 / ORL^O22) on lab reject or cancel: interface name ->
    # "host:port". Senders not listed get no reply.
    placer_replies: dict[str, str] = Field(default_factory=dict)
    # Scheduled jobs.
    escalate_holds_after_hours: float = Field(default=72.0, gt=0)
    daily_summary_hour_utc: int = Field(default=6, ge=0, le=23)
    metrics_token: str | None = None  # bearer token for /metrics scrapers without a user
    # The reasons a coder picks from to reject an order (details may follow in free text;
    # "Other" requires them). The placer's reply carries the reason and its details.
    reject_reasons: list[str] = Field(
        default_factory=lambda: [
            "Office did not answer after the attempts allowed",
            "Duplicate of an earlier order",
            "Test not offered by this laboratory",
            "Patient identity could not be confirmed",
            "Ordering provider could not be confirmed",
            "Specimen not received or not suitable",
            "Order cancelled by the office",
            "Other",
        ],
        min_length=1,
    )
    # The office query's letterhead and terms (docs/queue.md). The coder's own name and direct
    # line (`labintake users phone`) are printed beside these; without a direct line, the
    # lab's phone is.
    lab_name: str = Field(default="Clinical Laboratory", min_length=1, max_length=200)
    lab_address: str = Field(default="", max_length=400)  # one line, as it should print
    lab_phone: str = Field(default="", max_length=60)
    lab_fax: str = Field(default="", max_length=60)  # where the office faxes its answer
    # The office is asked to answer within this many working days (Monday to Friday).
    query_respond_within_days: int = Field(default=3, ge=1, le=30)
    query_confidentiality_notice: str = Field(
        default=DEFAULT_CONFIDENTIALITY_NOTICE, min_length=1, max_length=2000
    )
    # TrueType fonts tried, in order, for characters the bundled DejaVu Sans lacks (Chinese,
    # Japanese and Korean names): for example a Noto Sans CJK file the lab has installed.
    query_fallback_fonts: list[Path] = Field(default_factory=list)
    # Sign-in attempts allowed per client address and per account name, in each web process
    # (e.g. "30/minute", "200/hour"); over either, 429 at once. See labintake.auth.throttle.
    login_rate_per_address: str = "30/minute"
    login_rate_per_account: str = "10/minute"
    # The web process's niceness (CPU priority below the MLLP listener's, which keeps the
    # service's own): 5 by default; up to 19 lets the web app have a core only when the
    # listener leaves it idle. See labintake.web.process.
    web_niceness: int = Field(default=5, ge=0, le=19)

    secret_key: str = DEFAULT_SECRET_KEY
    # True only under `labintake serve --demo` and in tests; production refuses default secrets.
    development: bool = False

    tls_cert: Path | None = None
    tls_key: Path | None = None
    # When set, MLLP clients must present a certificate signed by this CA.
    tls_client_ca: Path | None = None

    max_message_bytes: int = Field(default=1024 * 1024, ge=1024)
    idle_timeout_seconds: float = Field(default=300.0, gt=0)
    max_connections: int = Field(default=200, ge=1)
    # One address may hold at most this many MLLP connections (a sender uses a few at most).
    max_connections_per_peer: int = Field(default=20, ge=1)
    # A message must end within this many seconds of its start block, or its connection closes.
    frame_timeout_seconds: float = Field(default=60.0, gt=0)

    # Reading (see docs/limits.md): a message past one of these limits goes to the error
    # queue with the reason, and can be reprocessed after the setting is raised.
    max_orders_per_message: int = Field(default=MAX_ORDERS_PER_MESSAGE, ge=1)
    max_tests_per_order: int = Field(default=MAX_TESTS_PER_ORDER, ge=1)
    max_notes_per_order: int = Field(default=MAX_NOTES_PER_ORDER, ge=0)
    max_diagnoses_per_order: int = Field(default=MAX_DIAGNOSES_PER_ORDER, ge=1)
    max_field_repetitions: int = Field(default=MAX_FIELD_REPETITIONS, ge=1)
    # Messages larger than this, and any whose reading failed once, are read one at a time in
    # a process of their own, within READ_TIMEOUT_SECONDS, at most READ_ATTEMPTS times.
    isolated_read_bytes: int = Field(default=64 * 1024, ge=1024)
    read_timeout_seconds: float = Field(default=10.0, gt=0)
    # The small messages are read in batches, in a process of their own too: one not read
    # within this is set aside for the isolated reader (a small message reads in milliseconds).
    batch_read_timeout_seconds: float = Field(default=5.0, gt=0)
    read_attempts: int = Field(default=3, ge=1)
    # On a SQLite file, intake commits to a journal file of its own beside the database and the
    # worker process moves the messages in, so that an ACK never waits for the workers' write
    # transactions (labintake.intake.journal). Off: intake commits to the database itself.
    intake_journal: bool = True

    # Unset: the folders the package ships (labintake.resources), whatever the working folder.
    interfaces_dir: Path = Field(default_factory=default_interfaces)
    code_tables_dir: Path = Field(default_factory=default_code_tables)
    # Verification rule settings per sender and payer (TOML); unset: default severities.
    rules_file: Path | None = None
    # When on, messages from senders not defined under `interfaces/` are rejected with AR.
    enforce_sender_allowlist: bool = False
    # When on, every message must come over a connection that proves its MSH-3/MSH-4: the
    # interface's [connection] addresses and/or TLS client-certificate subject (an interface
    # may also turn this on or off for itself). Mismatches are answered AR and kept as rejected.
    enforce_sender_binding: bool = False
    # A message reusing a stored control id with different content is kept as a conflict and
    # answered with this: "AE" (CE in enhanced mode), "AR" (CR), or "original" (the first
    # message's acknowledgement, the behaviour before conflicts were told from duplicates).
    duplicate_conflict_ack: Literal["AE", "AR", "original"] = "AE"
    # Message types other than orders are rejected with AR unless listed here.
    accepted_message_types: list[str] = Field(default_factory=lambda: ["ORM^O01", "OML^O21"])

    log_json: bool = False
    log_level: str = "INFO"
    # Raw HL7 bytes older than this are purged; order status and audit are kept.
    raw_retention_days: int = Field(default=365, ge=1)
    # API Idempotency-Keys older than this are deleted (daily, in batches): a retry sent with
    # an older key is taken as a new request.
    idempotency_key_retention_days: int = Field(default=7, ge=1)

    @field_validator("query_fallback_fonts")
    @classmethod
    def _font_files(cls, value: list[Path]) -> list[Path]:
        for path in value:
            if path.suffix.lower() not in (".ttf", ".otf") or not path.is_file():
                raise ValueError(f"{path} is not a TrueType or OpenType font file")
        return value

    @field_validator("database_url")
    @classmethod
    def _a_database_url(cls, value: str) -> str:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        forms = "sqlite:///var/labintake.sqlite3 or postgresql+psycopg://user@host/labintake"
        try:
            backend = make_url(value).get_backend_name()
        except ArgumentError:  # not a URL at all: not echoed, it may hold a password
            message = f"LABINTAKE_DATABASE_URL is not a database URL; give {forms}"
            raise ValueError(message) from None
        if backend not in ("sqlite", "postgresql"):
            raise ValueError(
                f"LABINTAKE_DATABASE_URL names a {backend} database; labintake runs on SQLite "
                f"or PostgreSQL: {forms}"
            )
        return value

    @field_validator("login_rate_per_address", "login_rate_per_account")
    @classmethod
    def _a_rate(cls, value: str) -> str:
        from labintake.auth.throttle import parse_rate

        parse_rate(value)
        return value

    @model_validator(mode="after")
    def _refuse_default_secret(self) -> Settings:
        if self.secret_key == DEFAULT_SECRET_KEY and self.database_url == DEFAULT_DATABASE_URL:
            self.secret_key = _read_demo_secret() or DEFAULT_SECRET_KEY
        if not self.development and self.secret_key == DEFAULT_SECRET_KEY:
            raise ValueError(
                "LABINTAKE_SECRET_KEY is the development default; set a real secret "
                "(or run `labintake serve --demo` on a laptop)."
            )
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("LABINTAKE_TLS_CERT and LABINTAKE_TLS_KEY must be set together.")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def _read_demo_secret() -> str | None:
    try:
        text = DEMO_SECRET_FILE.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if len(text) >= 32 else None


def ensure_demo_secret(settings: Settings) -> None:
    """Under `serve --demo` on the default database: give the demo a random secret of its own,
    written (owner-only) to `DEMO_SECRET_FILE` where the other commands find it."""
    if settings.secret_key != DEFAULT_SECRET_KEY or settings.database_url != DEFAULT_DATABASE_URL:
        return
    DEMO_SECRET_FILE.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    descriptor = os.open(DEMO_SECRET_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(key + "\n")
    settings.secret_key = key


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
