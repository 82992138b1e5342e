"""Reports an attacker sends (issue 64): a bomb of every codec and nesting, XML and JSON floods,
each as small as it can be made quickly. A bomb unpacks to `head` (a TLS-RPT report's first
byte, or a DMARC report's first element) and white space, so that it is refused for its size,
not its kind. `TLS` are sent where TLS-RPT reports go, `DMARC` where DMARC reports do: name ->
(maker, the reason it is refused for)."""

import gzip
import json
import random
import zipfile
from collections.abc import Callable

from testkit.reports import made

MiB = 1 << 20


JSON_HEAD = b"{"
XML_HEAD = b"<feedback>"


def deflate_zip(head: bytes = XML_HEAD) -> bytes:
    """~64 KB of zip, 64 MiB unpacked."""
    return made.zip_bomb(zipfile.ZIP_DEFLATED, mib=64, head=head)


def bzip2_zip(head: bytes = XML_HEAD) -> bytes:
    """As the issue's 1,287-byte zip (3.28 GB when inflated): a bzip2 member, a few hundred
    bytes for 16 MiB here."""
    return made.zip_bomb(zipfile.ZIP_BZIP2, mib=16, head=head)


def lzma_zip(head: bytes = XML_HEAD) -> bytes:
    return made.zip_bomb(zipfile.ZIP_LZMA, mib=16, head=head)


def zip_in_gzip(head: bytes = XML_HEAD) -> bytes:
    return gzip.compress(made.zip_bomb(zipfile.ZIP_DEFLATED, mib=64, head=head))


def gzip_members(head: bytes = XML_HEAD) -> bytes:
    """Forty gzip members of 8 MiB each, concatenated."""
    return gzip.compress(head + b" " * (8 * MiB)) * 40


def xml_flood(elements: int = 1_000_000) -> bytes:
    """As the issue's (a 9.9 MB gzip of ~6.6 M tiny elements): tiny elements of random two
    letter names in the report's root, gzip'd (~2 MB)."""
    letters = bytes.maketrans(b"0123456789abcdef", b"abcdefghijklmnop")
    names = random.Random(64).randbytes(elements).hex().encode().translate(letters)
    body = b"".join(b"<" + names[i : i + 2] + b"/>" for i in range(0, len(names), 2))
    return gzip.compress(b"<feedback>" + body + b"</feedback>", compresslevel=1)


def record_flood(records: int = 100_001) -> bytes:
    """One record more than a report may hold, each as small as a valid record is: the most a
    report can make the parser do before it is refused."""
    rng = random.Random(65)
    one = (
        b"<record><row><source_ip>%s</source_ip><count>1</count><policy_evaluated>"
        b"<dkim>fail</dkim><spf>fail</spf></policy_evaluated></row></record>"
    )
    head = made.dmarc_xml("flood.example", records=[("192.0.2.1", 1, "fail", "fail")])
    rows = b"".join(
        one % f"198.51.{rng.randrange(256)}.{rng.randrange(256)}".encode() for _ in range(records)
    )
    return gzip.compress(head.replace(b"</feedback>", rows + b"</feedback>"), compresslevel=1)


def json_flood(values: int = 1_300_000) -> bytes:
    """More values than a report may hold: random small numbers in a member nobody reads,
    gzip'd (~3 MB)."""
    numbers = ",".join(str(n) for n in random.Random(66).choices(range(1000), k=values))
    body = b'{"policies":[],"x":[' + numbers.encode() + b"]}"
    return gzip.compress(body, compresslevel=1)


def json_rows() -> bytes:
    """One failure detail more than a report may hold, each as small as a valid one is (its
    sender's address random, so that it packs no better than a report does)."""
    report = made.tls_json("flood.example")
    rng = random.Random(67)
    text = json.dumps(report).encode()
    many = b",".join(
        b'{"result-type":"validation-failure","failed-session-count":1,"sending-mta-ip":"%s"}'
        % f"198.51.{rng.randrange(256)}.{rng.randrange(256)}".encode()
        for _ in range(100_001)
    )
    return gzip.compress(
        text.replace(b'"failure-details": [', b'"failure-details": [' + many + b",", 1)
    )


TLS: dict[str, tuple[Callable[[], bytes], str]] = {
    "deflate zip bomb": (lambda: deflate_zip(JSON_HEAD), "bomb"),
    "bzip2 zip member": (lambda: bzip2_zip(JSON_HEAD), "bad_packing"),
    "LZMA zip member": (lambda: lzma_zip(JSON_HEAD), "bad_packing"),
    "zip bomb in a gzip": (lambda: zip_in_gzip(JSON_HEAD), "bomb"),
    "gzip bomb of many members": (lambda: gzip_members(JSON_HEAD), "too_large"),
    "JSON flood": (json_flood, "too_large"),
    "JSON row flood": (json_rows, "too_large"),
}
DMARC: dict[str, tuple[Callable[[], bytes], str]] = {
    "bzip2 zip member": (bzip2_zip, "bad_packing"),
    "zip bomb in a gzip": (zip_in_gzip, "bomb"),
    "XML flood": (xml_flood, "too_large"),
    "XML record flood": (record_flood, "too_large"),
}
