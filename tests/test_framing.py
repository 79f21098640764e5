"""The MLLP frame decoder, without sockets."""

from __future__ import annotations

from labintake.mllp.framing import (
    BrokenFrame,
    FrameDecoder,
    OversizedMessage,
    frame,
    normalise_segments,
)

MESSAGE = b"MSH|^~\\&|A|B|C|D|20250101||ORM^O01|1|P|2.5.1\rPID|1\r"


def test_one_frame_in_one_read_gives_the_message() -> None:
    assert FrameDecoder(1024).feed(frame(MESSAGE)) == [MESSAGE]


def test_frame_split_across_reads_at_every_position_is_reassembled() -> None:
    data = frame(MESSAGE)
    for cut in range(1, len(data)):
        decoder = FrameDecoder(1024)
        assert decoder.feed(data[:cut]) == []
        assert decoder.feed(data[cut:]) == [MESSAGE], cut


def test_frame_fed_byte_by_byte_is_reassembled() -> None:
    decoder = FrameDecoder(1024)
    events = []
    for byte in frame(MESSAGE):
        events += decoder.feed(bytes([byte]))
    assert events == [MESSAGE]


def test_several_frames_in_one_read_come_out_in_order() -> None:
    second = MESSAGE.replace(b"|1|P|", b"|2|P|")
    assert FrameDecoder(1024).feed(frame(MESSAGE) + frame(second)) == [MESSAGE, second]


def test_stray_bytes_and_newlines_between_frames_are_skipped() -> None:
    decoder = FrameDecoder(1024)
    data = b"\r\n" + frame(MESSAGE) + b"\n\r\nnoise" + frame(MESSAGE) + b"\n"
    assert decoder.feed(data) == [MESSAGE, MESSAGE]
    assert decoder.stray_bytes == 2 + 8 + 1
    assert not decoder.in_frame


def test_end_block_without_carriage_return_is_message_content() -> None:
    body = b"MSH|^~\\&|A\x1cB|\r"
    assert FrameDecoder(1024).feed(frame(body)) == [body]


def test_end_block_at_the_end_of_a_read_waits_for_the_next_byte() -> None:
    decoder = FrameDecoder(1024)
    assert decoder.feed(b"\x0b" + MESSAGE + b"\x1c") == []
    assert decoder.in_frame
    assert decoder.feed(b"\x0d") == [MESSAGE]


def test_oversized_message_is_reported_with_its_head_and_not_buffered() -> None:
    limit = 1024
    decoder = FrameDecoder(limit)
    body = MESSAGE + b"NTE|1||" + b"x" * 10_000 + b"\r"
    events = []
    for start in range(0, len(body), 500):
        events += decoder.feed((b"\x0b" if start == 0 else b"") + body[start : start + 500])
        assert len(decoder._buffer) <= limit + 500  # never more than one read over the limit
    events += decoder.feed(b"\x1c\x0d" + frame(MESSAGE))
    assert len(events) == 2
    oversized = events[0]
    assert isinstance(oversized, OversizedMessage)
    assert oversized.size == len(body)
    assert oversized.head.startswith(MESSAGE)
    assert events[1] == MESSAGE


def test_message_exactly_at_the_limit_is_accepted() -> None:
    assert FrameDecoder(len(MESSAGE)).feed(frame(MESSAGE)) == [MESSAGE]
    assert isinstance(FrameDecoder(len(MESSAGE) - 1).feed(frame(MESSAGE))[0], OversizedMessage)


def test_unterminated_frame_before_a_new_start_block_is_reported_broken() -> None:
    events = FrameDecoder(1024).feed(b"\x0bMSH|half a message" + frame(MESSAGE))
    assert isinstance(events[0], BrokenFrame)
    assert events[1] == MESSAGE


def test_segment_separators_are_normalised_to_carriage_return() -> None:
    assert normalise_segments(b"MSH|x\nPID|1\n") == b"MSH|x\rPID|1\r"
    assert normalise_segments(b"MSH|x\r\nPID|1\r\n") == b"MSH|x\rPID|1\r"
    assert normalise_segments(MESSAGE) is MESSAGE
