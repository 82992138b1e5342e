"""The round-trip address and sending rules (controller.roundtrips.rules) as tables: which `to`
is the receive leg's own mailbox, which `from` the send leg may use (issue 22: both were checked
only for syntax), and how delivery moves a monitor's cap of messages."""

from datetime import UTC, datetime, timedelta

import pytest

from controller.monitors import roundtrip_addresses
from controller.roundtrips import rules

T0 = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("to", "login", "host", "ok"),
    [
        ("probe@example.com", "probe@example.com", "imap.example.com", True),
        ("probe+rt@example.com", "probe@example.com", "imap.other.example", True),
        ("Monitor@EXAMPLE.com", "probe@example.com.", "imap.example.com", True),
        ("probe@bücher.example", "probe@xn--bcher-kva.example", "imap.example.com", True),
        ("victim@victim.example", "probe@example.com", "imap.example.com", False),
        ("probe@sub.example.com", "probe@example.com", "imap.example.com", False),
        ("probe@example.com", "probe", "imap.example.com", True),
        ("probe@imap.example.com", "probe", "imap.example.com", True),
        ("probe@example.com", "probe", "example.com", True),
        ("victim@ample.com", "probe", "imap.example.com", False),
        ("victim@com", "probe", "imap.example.com", False),
        ("victim@victim.example", "probe", "imap.example.com", False),
        ("probe@example.com", "probe", "192.0.2.1", False),
        ("probe@example.com", "probe", "2001:db8::1", False),
        ("probe@example.com", "probe@example.com", "192.0.2.1", True),
    ],
)
def test_recipient_is_the_mailbox_the_receive_leg_reads(
    to: str, login: str, host: str, ok: bool
) -> None:
    assert (roundtrip_addresses.recipient_problem(to, login, host) is None) is ok


@pytest.mark.parametrize(
    ("sender", "login", "to", "ok"),
    [
        ("probe@example.com", "probe@example.com", "probe@example.net", True),
        ("PROBE@example.com", "probe@example.com", "probe@example.net", True),
        ("alerts@example.com", "probe@example.com", "probe@example.net", True),
        ("probe@example.net", "probe@example.com", "probe@example.net", False),
        ("ceo@bank.example", "probe@example.com", "probe@example.net", False),
        ("probe@example.net", None, "probe@example.net", True),
        ("probe@example.net", "", "box@example.net", True),
        ("probe@example.net", "relay", "box@example.net", True),
        ("ceo@bank.example", None, "probe@example.net", False),
        ("ceo@bank.example", "relay", "probe@example.net", False),
    ],
)
def test_sender_is_one_the_send_leg_may_use(
    sender: str, login: str | None, to: str, ok: bool
) -> None:
    assert (roundtrip_addresses.sender_problem(sender, login, to) is None) is ok


D, N = "delivered", "not_delivered"


@pytest.mark.parametrize(
    ("seen", "state", "per_hour"),
    [
        ([], "unconfirmed", 3),
        ([None, None], "unconfirmed", 3),
        ([N, N], "unconfirmed", 3),
        ([N, N, N], "backed_off", 1),
        ([D], "confirmed", None),
        ([D, N, N], "confirmed", None),
        ([D, N, None, N, N], "backed_off", 1),
        ([N, N, N, D], "confirmed", None),
        ([D, N, N, N, N, D, N], "confirmed", None),
    ],
)
def test_delivery_moves_the_monitor_cap(
    seen: list[rules.Outcome], state: str, per_hour: int | None
) -> None:
    d = rules.Delivery()
    for i, outcome in enumerate(seen):
        d = rules.after_round(d, outcome, T0 + timedelta(minutes=i))
    assert (d.state, d.per_hour) == (state, per_hour)


@pytest.mark.parametrize(
    ("up", "kinds", "outcome"),
    [
        (True, [], D),
        (False, ["spam"], D),
        (False, ["slow_delivery", "not_delivered"], D),
        (False, ["not_delivered", "auth"], N),
        (False, ["auth", "refused"], None),
        (False, [None], None),
    ],
)
def test_a_round_outcome(up: bool, kinds: list[str | None], outcome: rules.Outcome) -> None:
    assert rules.outcome(up, kinds) == outcome


@pytest.mark.parametrize(
    ("d", "sent", "size", "held"),
    [
        (rules.Delivery(), 2, 1, None),
        (rules.Delivery(), 3, 1, rules.UNCONFIRMED),
        (rules.Delivery(T0), 500, 2, None),
        (rules.Delivery(T0, 3), 0, 1, None),
        (rules.Delivery(T0, 3), 1, 1, rules.BACKED_OFF),
        (rules.Delivery(None, 5), 1, 1, rules.BACKED_OFF),
        # A round goes whole or not at all: 2 sent and a round of 2 would make 4 of 3.
        (rules.Delivery(), 0, 2, None),
        (rules.Delivery(), 1, 2, None),
        (rules.Delivery(), 2, 2, rules.UNCONFIRMED),
        # The first round of the hour goes whatever its size, one round only.
        (rules.Delivery(), 0, 5, None),
        (rules.Delivery(), 1, 5, rules.UNCONFIRMED),
        (rules.Delivery(T0, 3), 0, 2, None),
        (rules.Delivery(T0, 3), 2, 2, rules.BACKED_OFF),
    ],
)
def test_may_send(d: rules.Delivery, sent: int, size: int, held: str | None) -> None:
    assert rules.may_send(d, sent, size) == held


@pytest.mark.parametrize(
    ("kind", "country_looks", "looks"),
    [
        # The monitor's own holds look, sending nothing, where every live agent can.
        (rules.BACKED_OFF, True, True),
        (rules.UNCONFIRMED, True, True),
        # An older agent would send the look's message: held as before.
        (rules.BACKED_OFF, False, False),
        (rules.UNCONFIRMED, False, False),
        # A recipient domain's cap is no hold a delivered round ends.
        (rules.DOMAIN_CAPPED, True, False),
        (rules.DOMAIN_CAPPED, False, False),
    ],
)
def test_a_held_round_looks(kind: str, country_looks: bool, looks: bool) -> None:
    assert rules.looks(kind, country_looks) is looks


# A look's result as the alerter sees the round: (some country up, failure kinds); a look that
# found nothing is a missed row (held), no failure.
LOOK_FOUND: tuple[bool, list[str]] = (True, [])
LOOK_FOUND_SLOW: tuple[bool, list[str]] = (False, ["slow_delivery"])
LOOK_NOTHING: tuple[bool, list[str]] = (False, [])


@pytest.mark.parametrize(
    ("before", "looks", "after"),
    [
        # Backed off: a look that found an earlier message ends it; one that found none, or
        # whose mailbox login failed, changes nothing (and sends nothing: the cap holds).
        (rules.Delivery(T0, 3, True), [LOOK_FOUND], ("confirmed", None)),
        (rules.Delivery(T0, 3, True), [LOOK_FOUND_SLOW], ("confirmed", None)),
        (rules.Delivery(T0, 3, True), [LOOK_NOTHING] * 5, ("backed_off", 1)),
        (rules.Delivery(T0, 4, True), [(False, ["refused"])], ("backed_off", 1)),
        # Unconfirmed over its cap: a late message found confirms the mailbox.
        (rules.Delivery(), [LOOK_NOTHING, LOOK_FOUND], ("confirmed", None)),
        (rules.Delivery(), [LOOK_NOTHING], ("unconfirmed", 3)),
    ],
)
def test_what_a_look_does_to_the_record(
    before: rules.Delivery, looks: list[tuple[bool, list[str | None]]], after: tuple[str, int]
) -> None:
    d = before
    for i, (up, kinds) in enumerate(looks):
        d = rules.after_round(d, rules.outcome(up, kinds), T0 + timedelta(minutes=i + 1))
    assert (d.state, d.per_hour) == after
    # With 3 messages of the hour out, only a confirmed mailbox gets the next round's.
    assert (rules.may_send(d, 3) is None) is (after[0] == "confirmed")


@pytest.mark.parametrize(
    ("status", "message", "submit_ms", "accepted"),
    [
        ("up", "", 12.0, True),
        # A look (`lookOnly`) sent nothing: it was never counted, whatever it found.
        ("down", "delivery_backoff: this round sent nothing; no message", None, False),
        ("down", "mailbox leg: connection refused by imap.example.net", 12.0, True),
        ("down", "not in INBOX of imap.example.net within 10s of being accepted", 9.0, True),
        # The message never left: nothing a server holds.
        ("down", "send leg: connection refused by smtp.example.net", None, False),
        ("down", "send leg: cannot resolve smtp.example.net", None, False),
        ("down", "send leg: authentication failed", None, False),
        ("down", "no answer within 10s (during greeting)", None, False),
        ("down", "send leg: message refused: 554 no", None, False),
        ("down", "send leg: recipient refused: (550, 'unknown user')", None, False),
        ("missed", "started after its expiresAt", None, False),
        ("inconclusive", "port 25 canaries fail: handed back unrun", None, False),
        # Broken off during the submission without an answer: the server may have taken it.
        ("down", "no answer within 10s (during submit)", None, True),
        ("down", "send leg: connection lost during submit", None, True),
    ],
)
def test_a_message_counts_unless_its_result_says_no_server_took_it(
    status: str, message: str, submit_ms: float | None, accepted: bool
) -> None:
    assert rules.accepted(status, message, submit_ms) is accepted


CONFIRMED = rules.Delivery(confirmed_at=T0)
BACKED_OFF = rules.Delivery(confirmed_at=T0, not_delivered=3, notified=True)


@pytest.mark.parametrize(
    ("d", "arrived_at", "seen"),
    [
        (rules.Delivery(), None, rules.Delivery()),
        (rules.Delivery(), T0, CONFIRMED),
        (CONFIRMED, T0, CONFIRMED),
        (CONFIRMED, T0 - timedelta(minutes=5), CONFIRMED),
        (CONFIRMED, T0 + timedelta(minutes=5), rules.Delivery(T0 + timedelta(minutes=5))),
        (BACKED_OFF, T0, BACKED_OFF),
        (BACKED_OFF, None, BACKED_OFF),
        (BACKED_OFF, T0 + timedelta(minutes=5), rules.Delivery(T0 + timedelta(minutes=5))),
    ],
)
def test_a_result_ahead_of_the_record(
    d: rules.Delivery, arrived_at: datetime | None, seen: rules.Delivery
) -> None:
    """A result that showed the message arriving, of a round later than the record's
    confirmation, is that round delivered before the alerter judges it (issue 66): the
    mailbox is confirmed, a back-off ends; one the record has taken in changes nothing."""
    assert rules.seen(d, arrived_at) == seen
    assert rules.may_send(rules.seen(d, arrived_at), 9, 2) == (
        None if seen.state == "confirmed" else rules.may_send(d, 9, 2)
    )
