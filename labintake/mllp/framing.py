"""MLLP framing: an incremental, pure decoder for ``0x0B message 0x1C 0x0D`` frames.

The decoder takes bytes as they arrive from a socket and gives back complete messages. It is
lenient where senders are sloppy and strict where memory is at stake:

- bytes outside a frame (stray newlines, keep-alive noise) are skipped and counted;
- a frame may be split across reads, and one read may hold several frames;
- a frame that is never terminated before the next start block is reported as broken and
  dropped (its bytes cannot be told from the next message's);
- a message longer than ``max_message_bytes`` is not buffered: its first bytes are kept so
  the header can be read for the reply, the rest is discarded as it arrives, and the decoder
  reports an :class:`OversizedMessage` once the end block comes.

No sockets here; the server feeds the decoder and acts on what it returns.
"""

from __future__ import annotations

from dataclasses import dataclass

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c"
CARRIAGE_RETURN = 0x0D
FRAME_END = b"\x1c\x0d"

# How much of an oversized message is kept: enough for any real MSH segment.
OVERSIZED_HEAD_BYTES = 4096

_OUTSIDE, _INSIDE, _DISCARDING = 0, 1, 2


@dataclass(frozen=True, slots=True)
class OversizedMessage:
    """A message over the size limit: its first bytes (for the header) and its full size."""

    head: bytes
    size: int


@dataclass(frozen=True, slots=True)
class BrokenFrame:
    """A frame that was never terminated before the next start block; its bytes are dropped."""

    size: int


FrameEvent = bytes | OversizedMessage | BrokenFrame


def frame(message: bytes) -> bytes:
    """Wrap one message in MLLP start and end blocks."""
    return START_BLOCK + message + FRAME_END


def normalise_segments(message: bytes) -> bytes:
    """Segment separators ``\\r\\n`` and ``\\n`` become ``\\r``, the HL7 separator, for reading."""
    if b"\n" not in message:
        return message
    return message.replace(b"\r\n", b"\r").replace(b"\n", b"\r")


class FrameDecoder:
    """Turns a byte stream into MLLP messages; one decoder per connection."""

    __slots__ = (
        "_buffer",
        "_head",
        "_pending_end",
        "_size",
        "_state",
        "max_message_bytes",
        "stray_bytes",
    )

    def __init__(self, max_message_bytes: int) -> None:
        self.max_message_bytes = max_message_bytes
        self._state = _OUTSIDE
        self._buffer = bytearray()
        self._head = b""
        self._size = 0
        self._pending_end = False  # the previous read ended on 0x1C inside a frame
        self.stray_bytes = 0

    @property
    def in_frame(self) -> bool:
        """True while a message has started and not yet ended."""
        return self._state != _OUTSIDE

    def feed(self, data: bytes) -> list[FrameEvent]:
        """Consume `data`; return the messages (and problems) completed by it, in order."""
        events: list[FrameEvent] = []
        pos = 0
        length = len(data)
        while pos < length:
            if self._state == _OUTSIDE:
                start = data.find(START_BLOCK, pos)
                if start < 0:
                    self.stray_bytes += length - pos
                    break
                self.stray_bytes += start - pos
                pos = start + 1
                self._state = _INSIDE
                self._size = 0
                continue
            if self._pending_end:
                self._pending_end = False
                if data[pos] == CARRIAGE_RETURN:
                    self._finish(events)
                    pos += 1
                    continue
                self._add(END_BLOCK)  # a lone 0x1C inside the message: keep it
            end = data.find(END_BLOCK, pos)
            if end < 0:
                self._add(data[pos:] if pos else data)
                break
            if end > pos:
                self._add(data[pos:end])
            if end + 1 == length:
                self._pending_end = True
                break
            if data[end + 1] == CARRIAGE_RETURN:
                self._finish(events)
                pos = end + 2
            else:
                self._add(END_BLOCK)
                pos = end + 1
        return events

    def _add(self, chunk: bytes | bytearray) -> None:
        self._size += len(chunk)
        if self._state == _DISCARDING:
            return
        if self._size > self.max_message_bytes:
            self._buffer += chunk
            self._head = bytes(self._buffer[:OVERSIZED_HEAD_BYTES])
            self._buffer = bytearray()
            self._state = _DISCARDING
            return
        self._buffer += chunk

    def _finish(self, events: list[FrameEvent]) -> None:
        if self._state == _DISCARDING:
            events.append(OversizedMessage(self._head, self._size))
            self._head = b""
        else:
            message = bytes(self._buffer)
            if START_BLOCK in message:
                # An earlier frame was never terminated: only the last start block counts.
                cut = message.rfind(START_BLOCK)
                events.append(BrokenFrame(cut))
                message = message[cut + 1 :]
            events.append(message)
        self._buffer = bytearray()
        self._state = _OUTSIDE
        self._size = 0
