"""controller/arrivals/grading.py as a table: what a country's latest arrivals say of the sender
(True: the finding holds, False: it does not, absent: not judged)."""

from datetime import UTC, datetime, timedelta
from typing import Final

import pytest

from controller.arrivals.grading import SETTLE, Latest, verdicts
from controller.posture.notices import title
from controller.posture.rules import CODES

T: Final = datetime(2026, 11, 28, 12, tzinfo=UTC)
NE, NU, OUT = "sender_tls_not_enforced", "sender_tls_not_used", "sender_tls_outdated"
DK, DM = "sender_dkim_missing", "sender_dmarc_fail"


@pytest.mark.parametrize(
    ("seen", "want"),
    [
        (Latest(), {}),
        (Latest(normal_tls="TLSv1.3"), {NU: False, OUT: False}),
        (Latest(normal_tls=""), {NU: True}),
        (Latest(normal_tls="TLSv1"), {NU: False, OUT: True}),
        (Latest(normal_tls="TLSv1.1"), {NU: False, OUT: True}),
        (Latest(dkim="pass", dmarc="pass"), {DK: False, DM: False}),
        (Latest(dkim="none", dmarc="fail"), {DK: True, DM: True}),
        (Latest(dkim="fail", dmarc="none"), {DK: True, DM: False}),
        # the plain twin took its mail: it fell back
        (Latest(plain_at=T), {NE: True}),
        # a test message that reached only the normal address: it refused the twin
        (Latest(enforced_at=T), {NE: False}),
        (Latest(plain_at=T, enforced_at=T - SETTLE - timedelta(seconds=1)), {NE: True}),
        # fixed after falling back
        (Latest(plain_at=T - timedelta(days=1), enforced_at=T), {NE: False}),
        (Latest(plain_at=T, enforced_at=T - SETTLE), {NE: False}),
    ],
)
def test_what_a_countrys_latest_arrivals_say_of_the_sender(
    seen: Latest, want: dict[str, bool]
) -> None:
    got = verdicts("DE", seen)
    assert {code: f is not None for (code, _), f in got.items()} == want
    assert all(cc == "DE" for _, cc in got)
    assert all(f.severity == CODES[f.code][0] for f in got.values() if f is not None)


@pytest.mark.parametrize(
    ("code", "said"),
    [
        (NE, "Sender TLS not enforced"),
        (OUT, "Sender TLS outdated"),
        (DK, "Sender DKIM missing"),
        (DM, "Sender DMARC fail"),
    ],
)
def test_a_grading_finding_is_titled_as_people_write_it(code: str, said: str) -> None:
    assert title(code) == said
