"""What a request's framing may cost the API's parser (h11), checked before h11 parses it.

- A head (request line and header fields, and a chunked body's trailer) is refused once it is
  past `MAX_HEAD_BYTES` without its end, or has more than `MAX_HEAD_FIELDS` lines: whether it
  arrives a byte at a time or whole in one piece. h11 bounds only a head that is still
  incomplete; one that arrives whole is parsed at any size.
- A chunked body is refused once it has more than `FREE_CHUNKS` chunks and its chunks average
  under `MIN_MEAN_CHUNK` bytes: each chunk costs h11 and uvicorn a few microseconds of the
  event loop however small it is, so 1-byte chunks cost about 50 times what their bytes are
  worth.

A refusal is h11's RemoteProtocolError: uvicorn answers 400 and closes the connection.
"""

import re

import h11
from h11._readers import ChunkedReader

# A request head past this many bytes is refused: with its fields counted below, what parsing
# one head may cost the event loop.
MAX_HEAD_BYTES = 32 * 1024
MAX_HEAD_FIELDS = 100  # header lines of a head (Apache's LimitRequestFields)
FREE_CHUNKS = 128  # chunks any body may have, whatever their size
MIN_MEAN_CHUNK = 256  # bytes: past FREE_CHUNKS, the chunks' mean size at least this

_HEAD_END = re.compile(rb"\n\r?\n")  # h11's own end of a head
_LAST_CHUNK = re.compile(rb"0+[;\t \r\n][^\n]{0,1024}\n")  # its trailer follows


class HeadScan:
    """How far a head awaited (from `at` in its buffer) has been looked at: each byte is looked
    at once, however the head arrives."""

    def __init__(self, at: int = 0) -> None:
        self.at = at  # where the head starts in the buffer
        self.scanned = at  # bytes of the buffer looked at
        self.lines = 0  # line ends among them

    def refusal(self, buf: bytearray) -> str | None:
        """Why the head in `buf` is refused, None while it is within bounds."""
        if buf.startswith((b"\r\n", b"\n"), self.at):  # an empty one: a trailer of no fields
            return None
        # a head's end may straddle what was scanned and what came since
        start = max(self.at, self.scanned - 2)
        stop = min(len(buf), self.at + MAX_HEAD_BYTES)
        end = _HEAD_END.search(buf, start, stop)
        upto = end.start() + 1 if end else stop
        self.lines += buf.count(b"\n", self.scanned, upto) if upto > self.scanned else 0
        self.scanned = max(self.scanned, upto)
        if self.lines > MAX_HEAD_FIELDS + 1:  # the request line is not a field
            return f"a head of more than {MAX_HEAD_FIELDS} header fields"
        if end is None and len(buf) - self.at > MAX_HEAD_BYTES:
            return f"a head of more than {MAX_HEAD_BYTES} bytes"
        return None


def chunks_refused(chunks: int, body_bytes: int) -> bool:
    """Whether a body of `chunks` chunks holding `body_bytes` bytes so far is refused."""
    return chunks > FREE_CHUNKS and body_bytes < chunks * MIN_MEAN_CHUNK


class BoundedConnection(h11.Connection):
    """h11's connection refusing a head or a chunked body past the bounds above."""

    def __init__(self, our_role: type[h11.SERVER], max_incomplete_event_size: int) -> None:
        super().__init__(our_role, max_incomplete_event_size)
        self._head = HeadScan()
        self._chunks = 0
        self._body_bytes = 0

    def _extract_next_receive_event(self):  # type: ignore[no-untyped-def]
        # Inside h11's next_event: a refusal here puts the peer in ERROR, as h11's own do.
        if refused := self._head_refusal():
            raise h11.RemoteProtocolError(refused, error_status_hint=431)
        event = super()._extract_next_receive_event()
        if isinstance(event, h11.Request):
            self._head = HeadScan()
            self._chunks = self._body_bytes = 0
        elif isinstance(event, h11.Data):
            self._chunks += event.chunk_start
            self._body_bytes += len(event.data)
            if chunks_refused(self._chunks, self._body_bytes):
                raise h11.RemoteProtocolError(
                    f"a body of {self._chunks} chunks in {self._body_bytes} bytes"
                )
        elif isinstance(event, h11.EndOfMessage):
            self._head = HeadScan()
        return event

    def _head_refusal(self) -> str | None:
        """The head awaited is a request's, or a chunked body's trailer (after its last chunk,
        which may come in the same piece)."""
        buf = self._receive_buffer._data
        if self.their_state is h11.IDLE:
            return self._head.refusal(buf)
        reader = self._reader
        if not isinstance(reader, ChunkedReader):
            return None
        if reader._reading_trailer:
            return self._head.refusal(buf)
        if reader._bytes_in_chunk:
            return None
        # a chunk's closing CRLF, then the next chunk's size line
        last = _LAST_CHUNK.match(buf, len(reader._bytes_to_discard))
        return HeadScan(last.end()).refusal(buf) if last else None
