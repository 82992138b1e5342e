"""controller/arrivals/grading.py as a table: what a country's latest arrivals say of the sender
(True: the finding holds, False: it does not, absent: not judged)."""

from datetime import UTC, datetime, timedelta
from typing import Final

import pytest

from controller.arrivals.grading import SETTLE, Latest, Twin, verdicts
from controller.posture.notices import title
from controller.posture.rules import CODES
from shared.arrivals import LISTENERS, arrival_id_of

T: Final = datetime(2026, 11, 28, 12, tzinfo=UTC)
NE, NU, OUT = "sender_tls_not_enforced", "sender_tls_not_used", "sender_tls_outdated"
DK, DM = "sender_dkim_missing", "sender_dmarc_fail"
T10, UV = "sender_tls_1_0_accepted", "sender_tls_unverified"


def plain(at: datetime | None = None, refused_at: datetime | None = None) -> Latest:
    return Latest(twins={"plain": Twin(at, refused_at)})


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
        (plain(at=T), {NE: True}),
        # a test message that reached only the address: it refused the twin
        (plain(refused_at=T), {NE: False}),
        (plain(at=T, refused_at=T - SETTLE - timedelta(seconds=1)), {NE: True}),
        # fixed after falling back
        (plain(at=T - timedelta(days=1), refused_at=T), {NE: False}),
        (plain(at=T, refused_at=T - SETTLE), {NE: False}),
        # each twin its own finding
        (
            Latest(twins={"tls_1_0": Twin(at=T), "bad_cert": Twin(refused_at=T)}),
            {T10: True, UV: False},
        ),
        (
            Latest(twins={"bad_cert": Twin(at=T), "plain": Twin(refused_at=T)}),
            {UV: True, NE: False},
        ),
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
        (T10, "Sender TLS 1.0 accepted"),
        (UV, "Sender TLS unverified"),
    ],
)
def test_a_grading_finding_is_titled_as_people_write_it(code: str, said: str) -> None:
    assert title(code) == said


def test_a_twins_copy_of_a_message_is_an_arrival_of_its_own() -> None:
    """One test message to an address and its twins: one arrival each listener; taken again at
    the same listener, the same arrival (the address's own id as it was before twins)."""
    ids = {tw: arrival_id_of("<1@sender.test>", "m", "DE", tw) for tw in ("", *LISTENERS)}
    assert len(set(ids.values())) == 1 + len(LISTENERS)
    assert ids[""] == arrival_id_of("<1@sender.test>", "m", "DE")
    assert ids["plain"] == arrival_id_of("<1@sender.test>", "m", "DE", "plain")
