"""The round trip's pure rules as tables: the probe header, which messages are leftovers,
Received hops, Authentication-Results, and the verdict on a delivery."""

from email import message_from_string
from email.parser import BytesHeaderParser

import msgspec
import pytest

from agent.probers.delivery import (
    ARC_INSTANCES_MAX,
    ARC_TEXT_MAX,
    MAX_HOPS,
    Probe,
    arc_results,
    auth_results,
    grade,
    hops,
    is_leftover,
    parse_probe,
)
from shared.messages import ArcResults, AuthResults, Hop

MINE = Probe("m-1", "DE", 1_000_000, "tok")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("m-1 DE 1000000 tok", MINE),
        ("m-1 DE\r\n 1000000 tok", MINE),  # folded by a relay
        ("m-1 DE soon tok", None),
        ("m-1 DE 1000000", None),
        ("", None),
        (None, None),
    ],
)
def test_probe_header_parses_only_a_probe(value: str | None, expected: Probe | None) -> None:
    assert parse_probe(value) == expected
    if expected is not None:
        assert parse_probe(expected.header()) == expected


@pytest.mark.parametrize(
    ("found", "leftover"),
    [
        (Probe("m-1", "DE", 1_000_000 - 60_001, "old"), True),
        (Probe("m-1", "DE", 1_000_000 - 59_999, "young"), False),  # may be in flight
        (Probe("m-1", "US", 1_000_000 - 600_000, "old"), False),  # another country's
        (Probe("m-2", "DE", 1_000_000 - 600_000, "old"), False),  # another monitor's
        (Probe("m-1", "DE", 1_000_000 - 600_000, "tok"), False),  # the round's own
    ],
)
def test_only_this_monitors_and_countrys_old_messages_are_leftovers(
    found: Probe, leftover: bool
) -> None:
    assert is_leftover(found, MINE, timeout_ms=60_000) is leftover


HEADERS = (
    "Received: from mx2.example.net (mx2.example.net [192.0.2.2])\r\n"
    "\tby mail.example.net (Postfix) with ESMTPS id 4AB for <p@example.net>;\r\n"
    "\tThu, 01 Jan 2026 12:00:05 +0000 (UTC)\r\n"
    "Received: from sender.example (unknown [198.51.100.1]) by mx2.example.net with ESMTP;"
    " Thu, 01 Jan 2026 12:00:02 +0000\r\n"
    "Received: by broken.example; not a date\r\n"
    "Authentication-Results: mail.example.net; spf=pass smtp.mailfrom=p@sender.example;\r\n"
    "\tdkim=fail (bad signature) header.d=sender.example; DMARC=Quarantine\r\n"
    "Authentication-Results: forged.example; spf=fail\r\n"
    "Date: Thu, 01 Jan 2026 12:00:00 +0000\r\n"
    "\r\n"
)


def test_hops_oldest_first_with_the_delay_at_each() -> None:
    assert hops(message_from_string(HEADERS)) == [
        Hop(by="broken.example", sender=None, at=None, delay_ms=None),
        Hop(
            by="mx2.example.net",
            sender="sender.example",
            at="2026-01-01T12:00:02.000Z",
            delay_ms=None,  # the hop before has no time
        ),
        Hop(
            by="mail.example.net",
            sender="mx2.example.net",
            at="2026-01-01T12:00:05.000Z",
            delay_ms=3000.0,
        ),
    ]


def test_first_hop_delay_counts_from_the_submission_date() -> None:
    msg = message_from_string(
        "Received: from a by b; Thu, 01 Jan 2026 12:00:01 +0000\r\n"
        "Date: Thu, 01 Jan 2026 12:00:00 +0000\r\n\r\n"
    )
    assert hops(msg) == [Hop(by="b", sender="a", at="2026-01-01T12:00:01.000Z", delay_ms=1000.0)]


def test_authentication_results_of_the_receiving_server_only() -> None:
    assert auth_results(message_from_string(HEADERS)) == AuthResults(
        authserv_id="mail.example.net", spf="pass", dkim="fail", dmarc="quarantine"
    )
    assert auth_results(message_from_string("Subject: x\r\n\r\n")) is None


@pytest.mark.parametrize(
    ("folder", "delivery_s", "slow_after", "spam_fails", "kind"),
    [
        ("INBOX", 4.2, None, False, None),
        ("INBOX", 4.2, 5.0, True, None),
        ("INBOX", 48.0, 30.0, False, "slow_delivery"),
        ("Junk", 4.2, None, False, None),  # reported by its folder, not failing
        ("Junk", 4.2, None, True, "spam"),
        ("Junk", 48.0, 30.0, True, "spam"),  # spam is named before slowness
        ("Junk", 48.0, 30.0, False, "slow_delivery"),
    ],
)
def test_grade(
    folder: str, delivery_s: float, slow_after: float | None, spam_fails: bool, kind: str | None
) -> None:
    got, why = grade(folder, ["Junk"], delivery_s, slow_after, spam_fails)
    assert got == kind
    assert f"delivered to {folder} in {delivery_s:.1f}s" in why


def test_hostile_headers_give_valid_utf8_and_bounded_hops() -> None:
    """A server on the path writes the headers: bytes that are not UTF-8 and a flood of hops
    still make a result that encodes, with the newest MAX_HOPS hops."""
    raw = (
        b"Received: from h\xfcst by mx; Thu, 01 Jan 2026 12:00:01 +0000\r\n"
        + b"".join(
            b"Received: by relay%d.example; Thu, 01 Jan 2026 12:00:02 +0000\r\n" % i
            for i in range(100)
        )
        + b"Authentication-Results: m\xe4x; spf=pass\r\n\r\n"
    )
    message = BytesHeaderParser().parsebytes(raw)
    found = hops(message)
    assert len(found) == MAX_HOPS
    assert found[-1].by == "mx" and found[-1].sender == "h\ufffdst"
    results = auth_results(message)
    assert results is not None and results.authserv_id == "m\ufffdx"
    encode_result = msgspec.json.encode((found, results))
    assert b"\\ud" not in encode_result


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        (b"Subject: x\r\n\r\n", None),
        (
            b"ARC-Seal: i=1; a=rsa-sha256; cv=none; d=a.test; s=s; b=x\r\n"
            b"ARC-Authentication-Results: i=1; mx.a.test; spf=pass\r\n\r\n",
            ArcResults(instances=1, cv="none", authentication_results="i=1; mx.a.test; spf=pass"),
        ),
        (  # the topmost set is the highest instance, wherever it stands
            b"ARC-Authentication-Results: i=1; mx.a.test; spf=pass\r\n"
            b"ARC-Seal: i=1; cv=none; b=x\r\n"
            b"ARC-Seal: i=2; cv=pass; b=y\r\n"
            b"ARC-Authentication-Results: i=2; mx.b.test; dkim=pass\r\n\r\n",
            ArcResults(instances=2, cv="pass", authentication_results="i=2; mx.b.test; dkim=pass"),
        ),
        (  # a seal without results, an instance out of range
            b"ARC-Seal: i=99999; cv=fail\r\n\r\n",
            ArcResults(instances=0, cv="fail", authentication_results=None),
        ),
        (
            b"ARC-Seal: i=70; cv=pass\r\n\r\n",
            ArcResults(instances=ARC_INSTANCES_MAX, cv="pass", authentication_results=None),
        ),
    ],
)
def test_arc_results(raw: bytes, want: ArcResults | None) -> None:
    assert arc_results(BytesHeaderParser().parsebytes(raw)) == want


def test_arc_results_are_bounded() -> None:
    raw = b"ARC-Authentication-Results: i=1; " + b"x" * 10_000 + b"\r\n\r\n"
    found = arc_results(BytesHeaderParser().parsebytes(raw))
    assert found is not None and len(found.authentication_results or "") == ARC_TEXT_MAX
