from labintake.hl7.charset import codec_for, decode_message, encode_reply


def test_declared_utf8_decodes_non_ascii_names_without_fallback() -> None:
    decoded = decode_message("PID|||1||Müller^Zoë".encode(), "UNICODE UTF-8")
    assert decoded.text.endswith("Müller^Zoë")
    assert decoded.encoding == "utf-8"
    assert not decoded.fallback


def test_latin1_declared_as_8859_1_reads_accents() -> None:
    decoded = decode_message("Gonçalves".encode("latin-1"), "8859/1")
    assert decoded.text == "Gonçalves"
    assert not decoded.fallback


def test_ascii_declared_but_latin1_bytes_falls_back_and_says_so() -> None:
    decoded = decode_message("Noël".encode("latin-1"), "ASCII")
    assert decoded.text == "Noël"
    assert decoded.fallback
    assert "ASCII" in decoded.note


def test_empty_msh18_with_utf8_bytes_reads_quietly() -> None:
    decoded = decode_message("Noël".encode(), "")
    assert decoded.text == "Noël"
    assert not decoded.fallback


def test_unknown_charset_name_falls_back_and_repetition_uses_first() -> None:
    assert codec_for("UNICODE UTF-8~8859/1") == "utf-8"
    decoded = decode_message(b"abc", "KLINGON")
    assert decoded.text == "abc"
    assert decoded.fallback


def test_reply_encoding_follows_sender_and_never_raises() -> None:
    assert encode_reply("é", "8859/1") == b"\xe9"
    assert encode_reply("é", "ASCII") == b"?"
