"""Hypothesis strategies for hostile HL7: real samples mutated, and messages built from scratch.

Seeds are the sample messages under ``interfaces/*/samples/`` plus a few synthetic orders of
our own (made-up patients), so the suite has material before any interface is defined.
Mutations: byte flips, truncation, separator swaps, huge fields, re-encoding in another
character set (and a lying MSH-18), control characters, segments dropped / repeated /
shuffled, and raw random bytes.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from benchmarks.messages import order_message

REPO = Path(__file__).resolve().parents[2]
INTERFACES = REPO / "interfaces"

# Examples per property; LABINTAKE_FUZZ_EXAMPLES multiplies the suite for a long run.
SCALE = float(os.environ.get("LABINTAKE_FUZZ_EXAMPLES", "1"))


def fuzz_settings(examples: int) -> settings:
    """Hypothesis settings for one property: `examples` cases (times the scale), no deadline."""
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        print_blob=True,
    )


def _split_messages(raw: bytes) -> list[bytes]:
    """A sample file may hold several messages (each starting with MSH) or MLLP frames."""
    raw = raw.replace(b"\x0b", b"").replace(b"\x1c", b"")
    text = raw.replace(b"\r\n", b"\r").replace(b"\n", b"\r")
    parts = [b"MSH" + p for p in text.split(b"MSH") if p.strip(b"\r ")]
    return [p if p.endswith(b"\r") else p + b"\r" for p in parts]


def _synthetic_seeds() -> list[bytes]:
    from datetime import UTC, datetime

    rng = random.Random(11)
    when = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    seeds = [order_message(f"SEED{n}", rng, when) for n in range(3)]
    seeds.append(
        "MSH|^~\\&|CLINICEHR|SMALLCLINIC|LABINTAKE|LAB|20260304050607||OML^O21^OML_O21|"
        "SEED-OML|P|2.5.1|||AL|NE||UNICODE UTF-8\r"
        "PID|1||SC-77^^^SMALLCLINIC^MR||NGUYỄN^THẢO^^^^^L||19800229|F\r"
        "ORC|NW|SC-1|||||^^^20260304^^R||20260304050607|||1234567893^WEXLER^DANA^^^^^^NPI\r"
        "OBR|1|SC-1||85025^CBC^CPT4\r"
        "OBR|2|SC-1||80061^LIPID PANEL^CPT4\r"
        "DG1|1||E78.5^Hyperlipidemia^I10\r"
        "ORC|CA|SC-0\r"
        "OBR|1|SC-0||84443^TSH^CPT4\r".encode()
    )
    seeds.append(
        b"MSH|^~\\&#|CERNERLIKE|GENHOSP|LAB|LAB|202603040506||ORM^O01|SEED-NL|P|2.3.1\n"
        b'PID|||A1^^^GH||""^""||""\n'
        b"DG1|1|I10|I10^HTN^I10\n"
        b"ORC|NW|GH-9\n"
        b"OBR|1|GH-9||GLU^GLUCOSE^L|||\\T\\\\X41\\\\H\\bold\\N\\\n"
    )
    return seeds


SYNTHETIC_SEEDS = _synthetic_seeds()


def load_seeds() -> list[bytes]:
    seeds = list(SYNTHETIC_SEEDS)
    for path in sorted(INTERFACES.glob("*/samples/*")):
        if path.is_file():
            seeds.extend(_split_messages(path.read_bytes()))
    return seeds


SEEDS = load_seeds()

CONTROL_CHARACTERS = [bytes([c]) for c in (*range(0x00, 0x20), 0x7F)]
SEPARATOR_SWAPS = [
    (b"|", b"^"),
    (b"^", b"|"),
    (b"\r", b"\n"),
    (b"\r", b"\r\n"),
    (b"\r", b""),
    (b"^~\\&", b"&\\~^"),
    (b"^~\\&", b"#"),
    (b"|", b"\t"),
    (b"~", b"|"),
    (b"\\", b"\\\\"),
]
ENCODINGS = ["utf-8", "latin-1", "utf-16", "utf-16-be", "utf-32", "cp1252", "shift_jis", "gb18030"]
CHARSET_NAMES = [
    b"",
    b"ASCII",
    b"8859/1",
    b"8859/15",
    b"UNICODE UTF-8",
    b"UNICODE",
    b"ISO IR87",
    b"GB 18030-2000",
    b"KS X 1001",
    b"BIG-5",
    b"NONSENSE",
    b"UNICODE UTF-8~8859/1",
]

Mutation = Callable[[bytes, random.Random], bytes]


def flip_bytes(raw: bytes, rng: random.Random) -> bytes:
    data = bytearray(raw)
    for _ in range(rng.randint(1, 8)):
        if data:
            data[rng.randrange(len(data))] ^= rng.randrange(1, 256)
    return bytes(data)


def truncate(raw: bytes, rng: random.Random) -> bytes:
    return raw[: rng.randrange(len(raw) + 1)]


def swap_separator(raw: bytes, rng: random.Random) -> bytes:
    old, new = rng.choice(SEPARATOR_SWAPS)
    if rng.random() < 0.5:
        return raw.replace(old, new)
    return raw.replace(old, new, 1)


def huge_field(raw: bytes, rng: random.Random) -> bytes:
    # Up to 70 kB: over the listener test's 64 KiB limit. Bigger adds time, not paths.
    size = rng.choice([300, 2_000, 5_000, 20_000, 70_000] if rng.random() < 0.2 else [300, 2_000])
    filler = rng.choice([b"A", b"^", b"~", b"\\", b"9", b"\xc3\xa9", b"|"]) * size
    cut = rng.randrange(len(raw) + 1)
    return raw[:cut] + filler + raw[cut:]


def reencode(raw: bytes, rng: random.Random) -> bytes:
    text = raw.decode("utf-8", "replace")
    if rng.random() < 0.5:
        text = text.replace("PID|1||", "PID|1||ÅÇÉß漢字Ω", 1)
    encoding = rng.choice(ENCODINGS)
    encoded = text.encode(encoding, "replace")
    if rng.random() < 0.7:
        encoded = _declare_charset(encoded, rng.choice(CHARSET_NAMES))
    return encoded


def _declare_charset(raw: bytes, charset: bytes) -> bytes:
    end = raw.find(b"\r")
    msh, rest = (raw, b"") if end < 0 else (raw[:end], raw[end:])
    fields = msh.split(b"|")
    while len(fields) < 18:
        fields.append(b"")
    fields[17] = charset
    return b"|".join(fields) + rest


def control_characters(raw: bytes, rng: random.Random) -> bytes:
    data = bytearray(raw)
    for _ in range(rng.randint(1, 6)):
        data[rng.randrange(len(data) + 1) : 0] = rng.choice(CONTROL_CHARACTERS)
    return bytes(data)


def invalid_utf8(raw: bytes, rng: random.Random) -> bytes:
    junk = rng.choice([b"\xff\xfe", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80\x80"])
    cut = rng.randrange(len(raw) + 1)
    return raw[:cut] + junk + raw[cut:]


def shuffle_segments(raw: bytes, rng: random.Random) -> bytes:
    segments = [s for s in raw.split(b"\r") if s]
    action = rng.choice(["drop", "repeat", "shuffle", "drop-msh"])
    if action == "drop" and segments:
        segments.pop(rng.randrange(len(segments)))
    elif action == "repeat" and segments:
        segment = rng.choice(segments)
        segments[rng.randrange(len(segments) + 1) : 0] = [segment] * rng.randint(1, 50)
    elif action == "shuffle":
        rng.shuffle(segments)
    elif segments:
        segments = segments[1:]
    return b"\r".join(segments) + b"\r"


def odd_fields(raw: bytes, rng: random.Random) -> bytes:
    """Values readers trip on, put in a random field: escapes, nulls, repetitions, dates."""
    value = rng.choice(
        [
            b'""',
            b"\\",
            b"\\X\\",
            b"\\XZZ\\",
            b"\\.br\\",
            b"\\E\\\\F\\\\S\\\\R\\\\T\\",
            b"~~~~",
            b"^^^^^^^^^",
            b"&&&&",
            b"99999999999999999999",
            b"20261340",
            b"-1",
            b"\\H\\\\N\\",
            b"<script>alert(1)</script>",
            b"'; DROP TABLE inbound_message; --",
        ]
    )
    fields = raw.split(b"|")
    if len(fields) > 1:
        fields[rng.randrange(1, len(fields))] = value
    return b"|".join(fields)


MUTATIONS: list[Mutation] = [
    flip_bytes,
    truncate,
    swap_separator,
    huge_field,
    reencode,
    control_characters,
    invalid_utf8,
    shuffle_segments,
    odd_fields,
]


@st.composite
def hostile_messages(draw: st.DrawFn, *, max_size: int | None = None) -> bytes:
    """A seed message with one to four mutations, or random bytes, or a random MSH line."""
    kind = draw(st.sampled_from(["mutated", "mutated", "mutated", "random", "header"]))
    if kind == "random":
        return draw(st.binary(max_size=2000))
    if kind == "header":
        fields = draw(st.lists(st.binary(max_size=40), max_size=25))
        separator = draw(st.sampled_from([b"|", b"^", b"#", b"\x00", b" "]))
        return b"MSH" + separator + separator.join(fields) + b"\r"
    raw = draw(st.sampled_from(SEEDS))
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    for mutation in draw(st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=4)):
        raw = mutation(raw, rng)
    if max_size is not None:
        raw = raw[:max_size]
    return raw
