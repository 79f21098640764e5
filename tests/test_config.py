"""Settings: the default secret is refused outside development, except the demo's own.

`labintake serve --demo` on the default database writes a random secret beside it, so the
other commands work on that demo database without development mode.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from labintake.config import DEFAULT_SECRET_KEY, DEMO_SECRET_FILE, Settings, ensure_demo_secret


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in ("LABINTAKE_SECRET_KEY", "LABINTAKE_DEVELOPMENT", "LABINTAKE_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_the_default_secret_is_refused_outside_development(workdir: Path) -> None:
    with pytest.raises(ValidationError, match="LABINTAKE_SECRET_KEY is the development default"):
        Settings()


def test_the_demo_secret_lets_the_other_commands_use_the_demo_database(workdir: Path) -> None:
    demo = Settings(development=True)
    ensure_demo_secret(demo)
    assert demo.secret_key != DEFAULT_SECRET_KEY
    written = workdir / DEMO_SECRET_FILE
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    # A later command, without development mode, reads the same secret.
    assert Settings().secret_key == demo.secret_key
    # A second demo start keeps it (sessions survive a restart).
    again = Settings(development=True)
    ensure_demo_secret(again)
    assert again.secret_key == demo.secret_key


def test_the_demo_secret_is_ignored_for_any_other_database(workdir: Path) -> None:
    ensure_demo_secret(Settings(development=True))
    with pytest.raises(ValidationError, match="development default"):
        Settings(database_url="postgresql+psycopg://lab@db.example/labintake")


def test_a_real_secret_is_never_replaced(workdir: Path) -> None:
    settings = Settings(secret_key="x" * 40, development=True)
    ensure_demo_secret(settings)
    assert settings.secret_key == "x" * 40
    assert not (workdir / DEMO_SECRET_FILE).exists()


def test_the_query_letterhead_reads_its_settings_and_refuses_a_missing_font(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABINTAKE_LAB_NAME", "Prairie Reference Laboratory")
    monkeypatch.setenv("LABINTAKE_LAB_FAX", "(515) 555-0199")
    monkeypatch.setenv("LABINTAKE_QUERY_RESPOND_WITHIN_DAYS", "5")
    settings = Settings(development=True)
    assert (settings.lab_name, settings.lab_fax) == (
        "Prairie Reference Laboratory",
        "(515) 555-0199",
    )
    assert settings.query_respond_within_days == 5
    assert "protected health information" in settings.query_confidentiality_notice
    font = workdir / "cjk.ttf"
    font.write_bytes(b"\0\1\0\0")
    assert Settings(development=True, query_fallback_fonts=[font]).query_fallback_fonts == [font]
    with pytest.raises(ValidationError, match="not a TrueType or OpenType font file"):
        Settings(development=True, query_fallback_fonts=[workdir / "missing.ttf"])
    with pytest.raises(ValidationError):
        Settings(development=True, query_respond_within_days=0)


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("", "is not a database URL"),
        ("var/labintake.sqlite3", "is not a database URL"),
        ("mysql://lab:hunter2@db/labintake", "names a mysql database"),
    ],
)
def test_a_database_url_labintake_cannot_use_is_refused_by_name(url: str, said: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(development=True, database_url=url, _env_file=None)  # type: ignore[call-arg]
    # What the command line prints: the messages, not the input (it may hold a password).
    message = "; ".join(str(error["msg"]) for error in refused.value.errors())
    assert "LABINTAKE_DATABASE_URL" in message
    assert said in message
    assert "hunter2" not in message


@pytest.mark.parametrize(
    "url",
    ["sqlite://", "sqlite:///var/x.sqlite3", "postgresql+psycopg://lab@127.0.0.1/labintake"],
)
def test_sqlite_and_postgresql_urls_are_taken(url: str) -> None:
    assert Settings(development=True, database_url=url, _env_file=None).database_url == url  # type: ignore[call-arg]
