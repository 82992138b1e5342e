"""The receiver's verdicts against ground truth: messages signed (DKIM) and sealed (ARC) here
with dkimpy and keys made per run, their keys and the SPF and DMARC records served by a loopback
DNS server, read by agent.receiver.verdicts as a parser thread reads them."""

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from agent.dns_resolver import blocking_resolver
from agent.receiver.verdicts import Envelope, Lookup, Read, read
from testkit.peers.dns import DnsPeer

SENDER = "sender.mailprobe.test"
STRICT = "strict.mailprobe.test"
OTHER = "other.mailprobe.test"
SILENT = "silent.mailprobe.test"

_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PRIVATE = _KEY.private_bytes(
    serialization.Encoding.PEM,
    serialization.PrivateFormat.TraditionalOpenSSL,
    serialization.NoEncryption(),
)
_PUBLIC = base64.b64encode(
    _KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
).decode()


def _txt(text: str) -> str:
    """A TXT record's presentation: strings of at most 255 characters."""
    return " ".join(f'"{text[i : i + 255]}"' for i in range(0, len(text), 255))


KEY_RECORD = _txt(f"v=DKIM1; k=rsa; p={_PUBLIC}")
RECORDS = {
    (SENDER, "TXT"): ['"v=spf1 ip4:127.0.0.1 -all"'],
    (f"_dmarc.{SENDER}", "TXT"): ['"v=DMARC1; p=reject"'],
    (f"_dmarc.{STRICT}", "TXT"): ['"v=DMARC1; p=quarantine; adkim=s; aspf=s"'],
    (STRICT, "TXT"): ['"v=spf1 -all"'],
    (OTHER, "TXT"): ['"v=spf1 -all"'],
    **{(f"s1._domainkey.{d}", "TXT"): [KEY_RECORD] for d in (SENDER, f"mail.{SENDER}", OTHER)},
    (f"s1._domainkey.mail.{STRICT}", "TXT"): [KEY_RECORD],
}


def message(from_header: str, subject: str = "nightly") -> bytes:
    return (
        f"From: {from_header}\r\nTo: hb@rx.mailprobe.test\r\nSubject: {subject}\r\n"
        "Message-ID: <1@sender.mailprobe.test>\r\nDate: Sat, 28 Nov 2026 12:00:00 +0000\r\n\r\n"
        "the nightly report\r\n"
    ).encode()


def signed(raw: bytes, domain: str) -> bytes:
    signature = dkim.sign(
        raw, b"s1", domain.encode(), PRIVATE, include_headers=[b"from", b"subject"]
    )
    return bytes(signature) + raw


def sealed(raw: bytes) -> bytes:
    """`raw` as a forwarder at OTHER passes it on: its Authentication-Results and an ARC set
    (seal, message signature, its results) signed by OTHER's key (dkimpy with `authres`)."""
    results = f"Authentication-Results: hop.{OTHER}; spf=pass smtp.mailfrom={SENDER}\r\n"
    forwarded = results.encode() + raw
    arc = dkim.arc_sign(
        forwarded,
        b"s1",
        OTHER.encode(),
        PRIVATE,
        f"hop.{OTHER}".encode(),
        include_headers=[b"from", b"subject"],
    )
    return b"".join(arc) + forwarded


def forged_arc(raw: bytes) -> bytes:
    """`raw` with an ARC set whose seal and signature do not verify."""
    return (
        f"ARC-Seal: i=1; a=rsa-sha256; cv=none; d={OTHER}; s=s1; t=1700000000; b=AAAA\r\n"
        f"ARC-Message-Signature: i=1; a=rsa-sha256; c=relaxed/relaxed; d={OTHER}; s=s1;"
        " h=from:subject; bh=AAAA; b=AAAA\r\n"
        "ARC-Authentication-Results: i=1; hop.other.mailprobe.test; spf=pass\r\n"
    ).encode() + raw


@dataclass(frozen=True)
class Case:
    name: str
    message: bytes
    mail_from: str
    peer: str
    want: tuple[str | None, str | None, list[str], str | None, str, str | None]


TAMPERED = signed(message(f"<reports@{SENDER}>"), SENDER).replace(b"nightly report", b"forged")

CASES = [
    Case(
        "signed by its own domain, sent from its SPF address",
        signed(message(f"Reports <reports@{SENDER}>"), SENDER),
        f"bounce@{SENDER}",
        "127.0.0.1",
        ("pass", "pass", [SENDER], "pass", "reject", "none"),
    ),
    Case(
        "signed by another domain from elsewhere: DKIM passes, DMARC fails unaligned",
        signed(message(f"<reports@{SENDER}>"), OTHER),
        f"bounce@{OTHER}",
        "192.0.2.1",
        ("fail", "pass", [OTHER], "fail", "reject", "none"),
    ),
    Case(
        "the body changed after signing",
        TAMPERED,
        f"bounce@{SENDER}",
        "192.0.2.1",
        ("fail", "fail", [], "fail", "reject", "none"),
    ),
    Case(
        "a subdomain's signature aligns relaxed",
        signed(message(f"<reports@{SENDER}>"), f"mail.{SENDER}"),
        f"bounce@{OTHER}",
        "192.0.2.1",
        ("fail", "pass", [f"mail.{SENDER}"], "pass", "reject", "none"),
    ),
    Case(
        "and not strict (adkim=s)",
        signed(message(f"<reports@{STRICT}>"), f"mail.{STRICT}"),
        f"bounce@{STRICT}",
        "127.0.0.1",
        ("fail", "pass", [f"mail.{STRICT}"], "fail", "quarantine", "none"),
    ),
    Case(
        "two From addresses: DMARC cannot judge",
        message(f"<a@{SENDER}>, <b@{OTHER}>"),
        f"bounce@{SENDER}",
        "127.0.0.1",
        ("pass", "none", [], "permerror", "", "none"),
    ),
    Case(
        "an ARC set that does not verify",
        forged_arc(message(f"<reports@{OTHER}>")),
        f"bounce@{OTHER}",
        "192.0.2.1",
        ("fail", "none", [], "none", "", "fail"),
    ),
    Case(
        "sealed by a forwarder (ARC i=1) whose key verifies",
        sealed(message(f"<reports@{OTHER}>")),
        f"bounce@{OTHER}",
        "192.0.2.1",
        ("fail", "none", [], "none", "", "pass"),
    ),
    Case(
        "sealed, then the body changed: the seal is broken",
        sealed(message(f"<reports@{OTHER}>")).replace(b"nightly report", b"forged"),
        f"bounce@{OTHER}",
        "192.0.2.1",
        ("fail", "none", [], "none", "", "fail"),
    ),
    Case(
        "a From domain without DMARC",
        message(f"<reports@{OTHER}>"),
        f"bounce@{OTHER}",
        "192.0.2.1",
        ("fail", "none", [], "none", "", "none"),
    ),
]


@pytest.fixture(scope="module")
async def lookup() -> AsyncIterator[Lookup]:
    async with DnsPeer(RECORDS, silent=frozenset({SILENT})) as dns:
        yield Lookup(blocking_resolver(f"127.0.0.1:{dns.port}"))


async def _read(case_message: bytes, mail_from: str, peer: str, lookup: Lookup) -> Read:
    # A parser thread, as the receiver runs it: the DNS server answers on this loop.
    return await asyncio.to_thread(read, case_message, Envelope(peer, "mx.test", mail_from), lookup)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_each_verdict_matches_what_the_message_and_dns_say(
    case: Case, lookup: Lookup
) -> None:
    got = await _read(case.message, case.mail_from, case.peer, lookup)
    v = got.verdicts
    assert (v.spf, v.dkim, v.dkim_domains, v.dmarc, v.dmarc_policy, v.arc) == case.want


async def test_a_domain_whose_dns_never_answers_is_temperror_not_fail(lookup: Lookup) -> None:
    got = await _read(message(f"<reports@{SILENT}>"), f"bounce@{SILENT}", "127.0.0.1", lookup)
    assert (got.verdicts.spf, got.verdicts.dmarc) == ("temperror", "temperror")


async def test_from_and_subject_are_kept_short_and_without_hidden_characters(
    lookup: Lookup,
) -> None:
    raw = message(f"<reports@{OTHER}>", subject="a\x1b[31m" + "x" * 600)
    got = await _read(raw, f"bounce@{OTHER}", "192.0.2.1", lookup)
    assert got.header_from == f"reports@{OTHER}"
    assert "\x1b" not in got.subject and len(got.subject) == 255
