"""Order messages of a chosen size and shape, for measuring how reading scales.

Each shape repeats one part of an ordinary ORM^O01 (a repetition of a field, a segment, an
order group, a component) until the message reaches the size asked for, so the time to read
it can be compared per byte with a small message. Every patient, provider and office is
invented; the NPI is the standard example number.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

MSH = "MSH|^~\\&|SHAPEEHR|SHAPECLINIC|LABINTAKE|LAB|20260105083000||ORM^O01|{control}|P|2.5.1"
PID = "PID|1||{ids}||TESTPATIENT^AVERY^A||19700101|F"
PROVIDER = "1234567893^WEXLER^DANA^^^^^^NPI^L^^^NPI"
ORC = "ORC|NW|PL{n}||||||||||{provider}|||||||||SHAPE FAMILY PRACTICE||{phones}"
OBR = "OBR|{n}|PL{n}||80061^LIPID PANEL^CPT4|R|20260105083000|20260105083000"
DG1 = "DG1|1|I10|E78.5^Hyperlipidemia, unspecified^I10"


@dataclass(frozen=True, slots=True)
class Shape:
    """One way of making a message large: `build(count)` repeats the part `count` times."""

    name: str
    unit: str  # what is repeated, in words
    build: Callable[[int], str]
    # True when the reader's output grows with (orders x message-level parts): such a message
    # is only bounded by the limits (orders per message, notes per order).
    multiplicative: bool = False

    def sized(self, size: int) -> tuple[str, int]:
        """The message of about `size` characters (never less than one repetition) and its
        repetition count."""
        base, more = len(self.build(8)), len(self.build(72))
        per_unit = max(1.0, (more - base) / 64)
        count = max(1, int((size - base) / per_unit) + 8)
        text = self.build(count)
        for _ in range(3):  # numbers grow longer with the count: correct towards the size
            if abs(len(text) - size) <= size // 50 or count == 1:
                break
            count = max(1, int(count * size / len(text)))
            text = self.build(count)
        return text, count


def _message(*segments: str, control: str = "SHAPE1") -> str:
    return "\r".join([MSH.format(control=control), *segments])


def _ordinary(
    *,
    ids: str = "BM0000001^^^SHAPECLINIC^MR",
    provider: str = PROVIDER,
    phones: str = "^WPN^PH^^1^217^5550199",
    obr: str = OBR.format(n=1),
    extra: tuple[str, ...] = (),
) -> tuple[str, ...]:
    return (
        PID.format(ids=ids),
        ORC.format(n=1, provider=provider, phones=phones),
        obr,
        DG1,
        *extra,
    )


def small(_: int = 1) -> str:
    """The ordinary order every shape grows from."""
    return _message(*_ordinary())


def pid3_repetitions(count: int) -> str:
    ids = "~".join(f"X{i}^^^SHAPE^PI" for i in range(count))
    return _message(*_ordinary(ids=f"{ids}~BM0000001^^^SHAPECLINIC^MR"))


def orc12_repetitions(count: int) -> str:
    # No repetition carries an NPI: the reader looks at every one of them.
    provider = "~".join(f"D{i}^DOE^PAT" for i in range(count))
    return _message(*_ordinary(provider=provider))


def orc23_repetitions(count: int) -> str:
    phones = "~".join(f"^WPN^PH^^1^217^{i % 10_000_000:07d}" for i in range(count))
    return _message(*_ordinary(phones=phones))


def nte3_repetitions(count: int) -> str:
    note = "~".join(f"line {i}" for i in range(count))
    return _message(*_ordinary(extra=(f"NTE|1|L|{note}",)))


def obx5_repetitions(count: int) -> str:
    answer = "~".join(f"A{i}" for i in range(count))
    return _message(*_ordinary(extra=(f"OBX|1|ST|Q1^QUESTION||{answer}",)))


def nte_segments(count: int) -> str:
    notes = tuple(f"NTE|{i}|L|specimen note {i}" for i in range(1, count + 1))
    return _message(*_ordinary(extra=notes))


def dg1_segments(count: int) -> str:
    dx = tuple(f"DG1|{i}|I10|Z{i % 100:02d}.{i % 10}^Code {i}^I10" for i in range(1, count + 1))
    return _message(*_ordinary(extra=dx))


def obrs_in_one_order(count: int) -> str:
    obrs = tuple(OBR.format(n=i) for i in range(2, count + 1))
    return _message(*_ordinary(extra=obrs))


def orders(count: int) -> str:
    groups: list[str] = [PID.format(ids="BM0000001^^^SHAPECLINIC^MR")]
    for i in range(1, count + 1):
        groups += [
            ORC.format(n=i, provider=PROVIDER, phones="^WPN^PH^^1^217^5550199"),
            OBR.format(n=i),
        ]
    return _message(*groups)


def full_orders(count: int) -> str:
    """Orders of 100 tests each: at the default limits (100 x 100) about 690 KB, the most a
    message can hold and still be read in full."""
    groups: list[str] = [PID.format(ids="BM0000001^^^SHAPECLINIC^MR")]
    for i in range(count):
        if i % 100 == 0:
            groups.append(ORC.format(n=i // 100 + 1, provider=PROVIDER, phones=""))
        groups.append(OBR.format(n=i % 100 + 1))
    return _message(*groups)


def timings_and_tests(count: int) -> str:
    """Half TQ1 (with no quantity), half OBR, in one order group."""
    half = max(1, count // 2)
    tq1 = tuple("TQ1|1||||||20260105083000" for _ in range(half))
    obrs = tuple(OBR.format(n=i) for i in range(2, half + 2))
    pid, orc, obr, dg1 = _ordinary()
    return _message(pid, orc, *tq1, obr, dg1, *obrs)


def deep_components(count: int) -> str:
    code = "^".join(f"C{i}" for i in range(count))
    return _message(*_ordinary(obr=OBR.format(n=1).replace("80061^LIPID PANEL^CPT4", code)))


def deep_subcomponents(count: int) -> str:
    authority = "&".join(f"S{i}" for i in range(count))
    return _message(*_ordinary(ids=f"BM0000001^^^{authority}^MR"))


def escapes(count: int) -> str:
    text = "\\F\\\\S\\\\T\\\\R\\\\E\\\\X41\\\\.br\\" * count
    return _message(*_ordinary(extra=(f"NTE|1|L|{text}",)))


def stray_lines(count: int) -> str:
    """Lines that are not segments: each one a warning."""
    junk = tuple(f"junk line {i}" for i in range(count))
    return _message(*_ordinary(extra=junk))


def notes_before_orders(count: int) -> str:
    """Message-level notes and orders, half each: every order carries every note."""
    half = max(1, count // 2)
    notes = [f"NTE|{i}|L|message note {i}" for i in range(1, half + 1)]
    body = orders(half).split("\r")[1:]
    return _message(body[0], *notes, *body[1:])


SHAPES: tuple[Shape, ...] = (
    Shape("pid3_repetitions", "PID-3 repetitions", pid3_repetitions),
    Shape("orc12_repetitions", "ORC-12 repetitions", orc12_repetitions),
    Shape("orc23_repetitions", "ORC-23 repetitions", orc23_repetitions),
    Shape("nte3_repetitions", "NTE-3 repetitions", nte3_repetitions),
    Shape("obx5_repetitions", "OBX-5 repetitions", obx5_repetitions),
    Shape("nte_segments", "NTE segments", nte_segments),
    Shape("dg1_segments", "DG1 segments", dg1_segments),
    Shape("obrs_in_one_order", "OBR segments", obrs_in_one_order),
    Shape("orders", "ORC/OBR groups", orders),
    Shape("full_orders", "OBR segments, 100 per ORC", full_orders),
    Shape("timings_and_tests", "TQ1 and OBR segments", timings_and_tests),
    Shape("deep_components", "OBR-4 components", deep_components),
    Shape("deep_subcomponents", "PID-3.4 subcomponents", deep_subcomponents),
    Shape("escapes", "escape sequences", escapes),
    Shape("stray_lines", "lines that are not segments", stray_lines),
    Shape("notes_before_orders", "message notes and orders", notes_before_orders, True),
)


def shape(name: str) -> Shape:
    return next(s for s in SHAPES if s.name == name)
