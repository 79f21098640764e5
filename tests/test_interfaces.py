from pathlib import Path

import pytest

from labintake.errors import ConfigurationError
from labintake.interfaces import load_interfaces


def _write(folder: Path, body: str) -> None:
    folder.mkdir(parents=True)
    (folder / "interface.toml").write_text(body, encoding="utf-8")


def test_registry_finds_sender_case_insensitively_ignoring_hd_components(tmp_path: Path) -> None:
    _write(tmp_path / "a", 'sending_application = "EPIC"\nsending_facility = "NORTH"\n')
    registry = load_interfaces(tmp_path)
    found = registry.find("epic", "North^1.2.3^ISO")
    assert found is not None
    assert found.name == "a"
    assert registry.find("EPIC", "SOUTH") is None


def test_duplicate_sender_is_a_configuration_error(tmp_path: Path) -> None:
    body = 'sending_application = "X"\nsending_facility = "Y"\n'
    _write(tmp_path / "a", body)
    _write(tmp_path / "b", body)
    with pytest.raises(ConfigurationError, match="both claim"):
        load_interfaces(tmp_path)


def test_missing_key_and_bad_ack_mode_are_reported_with_the_file(tmp_path: Path) -> None:
    _write(tmp_path / "a", 'sending_application = "X"\n')
    with pytest.raises(ConfigurationError, match="sending_facility"):
        load_interfaces(tmp_path)
    _write(tmp_path / "b" / "c", 'sending_application="X"\nsending_facility="Y"\nack_mode="odd"')
    with pytest.raises(ConfigurationError, match="ack_mode"):
        load_interfaces(tmp_path / "b")


def test_absent_folder_means_no_senders(tmp_path: Path) -> None:
    assert len(load_interfaces(tmp_path / "none")) == 0


def test_every_sample_declares_a_character_set_in_msh18_that_decodes_it() -> None:
    from labintake.hl7.charset import decode_message
    from labintake.hl7.header import parse_header

    samples = sorted(Path(__file__).parent.parent.glob("interfaces/*/samples/*.hl7"))
    assert samples
    for sample in samples:
        raw = sample.read_bytes()
        header = parse_header(raw)
        assert header.charset, f"{sample.name}: MSH-18 empty"
        decoded = decode_message(raw, header.charset)
        assert not decoded.fallback, f"{sample.name}: {decoded.note}"
