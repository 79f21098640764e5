"""Property-based fuzzing of the MLLP frame decoder."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labintake.mllp.framing import (
    END_BLOCK,
    START_BLOCK,
    BrokenFrame,
    FrameDecoder,
    OversizedMessage,
    frame,
)
from tests.fuzz.mutations import fuzz_settings, hostile_messages

LIMIT = 4096

# Message bodies without framing bytes, and noise between frames without a start block.
bodies = st.one_of(
    hostile_messages(max_size=3 * LIMIT).map(
        lambda raw: raw.replace(START_BLOCK, b"").replace(END_BLOCK, b"")
    ),
    st.binary(max_size=3 * LIMIT).map(
        lambda raw: raw.replace(START_BLOCK, b"").replace(END_BLOCK, b"")
    ),
)
noise = st.one_of(
    st.just(b""),
    st.sampled_from([b"\r", b"\n", b"\r\n", b" ", b"\x00", b"\x1c\r", b"\x1c"]),
    st.binary(max_size=64).map(lambda raw: raw.replace(START_BLOCK, b"")),
)


def _chunks(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    return [stream[a:b] for a, b in itertools.pairwise(points)]


def _buffered(decoder: FrameDecoder) -> int:
    # The decoder's own buffer: the memory one connection can hold.
    return len(decoder._buffer)


def test_any_byte_stream_in_any_chunking_never_raises_and_never_buffers_past_the_limit(
    record_property: pytest.RecordProperty,
) -> None:
    cases = 0

    @fuzz_settings(2500)
    @given(stream=st.binary(max_size=4 * LIMIT) | hostile_messages(), cuts=st.lists(st.integers()))
    def run(stream: bytes, cuts: list[int]) -> None:
        nonlocal cases
        cases += 1
        decoder = FrameDecoder(LIMIT)
        for chunk in _chunks(stream, cuts):
            events = decoder.feed(chunk)
            assert _buffered(decoder) <= LIMIT
            for event in events:
                if isinstance(event, bytes):
                    assert len(event) <= LIMIT
                else:
                    assert isinstance(event, OversizedMessage | BrokenFrame)

    run()
    record_property("fuzz_cases", cases)


def test_framed_messages_between_noise_come_out_whole_in_order_whatever_the_chunking(
    record_property: pytest.RecordProperty,
) -> None:
    cases = 0

    @fuzz_settings(2500)
    @given(
        items=st.lists(st.tuples(noise, bodies), min_size=1, max_size=6),
        tail=noise,
        cuts=st.lists(st.integers(), max_size=40),
    )
    def run(items: list[tuple[bytes, bytes]], tail: bytes, cuts: list[int]) -> None:
        nonlocal cases
        cases += 1
        stream = b"".join(junk + frame(body) for junk, body in items) + tail
        decoder = FrameDecoder(LIMIT)
        events = []
        for chunk in _chunks(stream, cuts):
            events.extend(decoder.feed(chunk))
            assert _buffered(decoder) <= LIMIT
        expected: list[bytes | tuple[str, int]] = [
            body if len(body) <= LIMIT else ("oversized", len(body)) for _, body in items
        ]
        seen = [
            ("oversized", e.size) if isinstance(e, OversizedMessage) else e
            for e in events
            if not isinstance(e, BrokenFrame)
        ]
        assert seen == expected
        for event in events:
            if isinstance(event, OversizedMessage):
                assert len(event.head) <= 4096
        assert not decoder.in_frame

    run()
    record_property("fuzz_cases", cases)
