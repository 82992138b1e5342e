"""A report's bytes out of the containers reporters pack it in, as a stream of chunks, bounded
by construction; pure (no store, no I/O).

What comes in is told by its magic bytes, not by what the sender says: gzip (one member or
several concatenated, RFC 1952 §2.2; bytes after the last that are no member ignored), zip
(one member, stored or deflate), or the report itself.
A container may hold one more container (a zip in a gzip, a gzip in a zip, ...): `NESTING`
levels at most. Every level's output is counted against one limit, `limit(packed)`:
`MAX_RATIO` times the bytes that arrived, at most `unpacked` (the caller's), and no decompressor
is ever asked for more than what is left of it plus one byte (zlib's `max_length`; zipfile's
deflate reads are bounded the same way), so a bomb costs at most a `CHUNK` past the limit.

Zip members packed with any other method (bzip2, LZMA, ...) are refused by their method's name
without being opened: the standard library inflates those with no output limit. So are
encrypted members, archives of more than one member, and members not named `.xml`, `.json`
(or `.gz`, `.zip`: a container within).
"""

import io
import zipfile
import zlib
from collections.abc import Iterator

from controller.reports.rejected import Rejected

MAX_PACKED = 10 * 1024 * 1024
MAX_RATIO = 200
CHUNK = 256 * 1024
NESTING = 2  # containers within each other, the outer one included
GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"
_GZIP_WBITS = 16 + zlib.MAX_WBITS
_READ_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
_MEMBER_NAMES = (".xml", ".json", ".gz", ".zip")
# APPNOTE.TXT 4.4.5: the methods a refusal names.
METHOD_NAMES = {
    0: "stored",
    8: "deflate",
    9: "deflate64",
    12: "bzip2",
    14: "LZMA",
    93: "zstandard",
    95: "xz",
    98: "PPMd",
}


def limit(packed: int, unpacked: int) -> int:
    """The bytes a report of `packed` bytes may unpack to."""
    return min(unpacked, max(packed, 1) * MAX_RATIO)


class _Budget:
    """The bytes one level has produced, refused past `most`."""

    def __init__(self, most: int) -> None:
        self.most = most
        self.produced = 0

    def room(self) -> int:
        """What to ask a decompressor for: never more than one byte past the limit."""
        return min(CHUNK, self.most - self.produced + 1)

    def take(self, out: bytes) -> bytes:
        self.produced += len(out)
        if self.produced > self.most:
            raise Rejected(
                "bomb",
                f"unpacks to more than {self.most} bytes ({MAX_RATIO} times its size at most)",
            )
        return out


def chunks(data: bytes, unpacked: int) -> Iterator[bytes]:
    """The report in `data`, in chunks of at most `CHUNK` bytes, unpacked from its containers;
    Rejected (`too_large`, `bomb`, `bad_packing`) as soon as a limit is passed."""
    if len(data) > MAX_PACKED:
        raise Rejected("too_large", f"more than {MAX_PACKED} bytes")
    most = limit(len(data), unpacked)
    return _opened(data, iter(()), most, NESTING)


def _opened(head: bytes, rest: Iterator[bytes], most: int, levels: int) -> Iterator[bytes]:
    """The stream that begins with `head` and goes on with `rest`, opened when it is a
    container (`levels` more allowed)."""
    if head.startswith(GZIP_MAGIC):
        inner = _gunzip(_prepend(head, rest), _Budget(most))
    elif head.startswith(ZIP_MAGIC):
        # A zip needs its end (the central directory): read whole, at most MAX_PACKED.
        inner = _unzip(whole(head, rest, MAX_PACKED, "a zip within"), _Budget(most))
    else:
        return _prepend(head, rest) if head else rest
    if levels == 1:
        return _flat(inner)
    first = _first(inner, len(ZIP_MAGIC))
    return _opened(first, inner, most, levels - 1)


def _flat(inner: Iterator[bytes]) -> Iterator[bytes]:
    """The innermost level: a container there is refused."""
    first = _first(inner, len(ZIP_MAGIC))
    if first.startswith((GZIP_MAGIC, ZIP_MAGIC)):
        raise Rejected("bad_packing", f"containers nested more than {NESTING} deep")
    return _prepend(first, inner)


def _first(stream: Iterator[bytes], n: int) -> bytes:
    """At least `n` bytes from the start of `stream` (fewer at its end), taken from it."""
    head = b""
    for chunk in stream:
        head += chunk
        if len(head) >= n:
            break
    return head


def _prepend(head: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    for start in range(0, len(head), CHUNK):
        yield head[start : start + CHUNK]
    yield from rest


def whole(head: bytes, rest: Iterator[bytes], most: int, what: str) -> bytes:
    """The stream that begins with `head` read whole, at most `most` bytes (else `too_large`,
    `what` naming it)."""
    out = bytearray(head)
    for chunk in rest:
        out += chunk
        if len(out) > most:
            raise Rejected("too_large", f"{what} of more than {most} bytes")
    return bytes(out)


def _gunzip(source: Iterator[bytes], budget: _Budget) -> Iterator[bytes]:
    """Every member of a gzip stream, one after the other. Bytes after a member that do not
    begin another (a reporter's CRLF, NUL padding) end the stream and are ignored, as
    gzip(1) ignores "trailing garbage"."""
    inflate = zlib.decompressobj(_GZIP_WBITS)
    carry = b""  # the first byte of a magic a chunk's end split
    try:
        for data in source:
            pending, carry = carry + data, b""
            while pending:
                if inflate.eof:
                    if len(pending) < len(GZIP_MAGIC) and GZIP_MAGIC.startswith(pending):
                        carry = pending
                        break
                    if not pending.startswith(GZIP_MAGIC):
                        return
                    inflate = zlib.decompressobj(_GZIP_WBITS)
                out = inflate.decompress(pending, budget.room())
                if out:
                    yield budget.take(out)
                pending = inflate.unused_data if inflate.eof else inflate.unconsumed_tail
            while not inflate.eof and (out := inflate.decompress(b"", budget.room())):
                yield budget.take(out)  # what it holds back of what it was given
    except zlib.error as exc:
        raise Rejected("bad_packing", f"not a valid gzip stream ({exc})") from None
    if not inflate.eof:
        raise Rejected("bad_packing", "the gzip stream ends early")


def _unzip(data: bytes, budget: _Budget) -> Iterator[bytes]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            member = _member(archive)
            with archive.open(member) as opened:
                while chunk := opened.read(budget.room()):
                    yield budget.take(chunk)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, ValueError):
        raise Rejected("bad_packing", "not a zip archive this reader opens") from None


def _member(archive: zipfile.ZipFile) -> zipfile.ZipInfo:
    """The archive's one report member, when it is one this reader opens."""
    members = [i for i in archive.infolist() if not i.is_dir()]
    if len(members) != 1:
        raise Rejected("bad_packing", f"a zip of {len(members)} files, not one report")
    info = members[0]
    if info.compress_type not in _READ_METHODS:
        method = METHOD_NAMES.get(info.compress_type, f"method {info.compress_type}")
        raise Rejected(
            "bad_packing", f"a zip member packed with {method}: only stored and deflate are read"
        )
    if info.flag_bits & 0x1:
        raise Rejected("bad_packing", "an encrypted zip member")
    if not info.filename.lower().endswith(_MEMBER_NAMES):
        raise Rejected("bad_packing", "the zip holds no .xml, .json or .gz file")
    return info
