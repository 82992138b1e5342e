"""The round-trip address and sending rules (controller.roundtrips.rules) as tables: which `to`
is the receive leg's own mailbox, which `from` the send leg may use (issue 22: both were checked
only for syntax), and how delivery moves a monitor's cap of messages."""

from datetime import UTC, datetime, timedelta

import pytest

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
    assert (rules.recipient_problem(to, login, host) is None) is ok


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
    assert (rules.sender_problem(sender, login, to) is None) is ok


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
    ("d", "sent", "held"),
    [
        (rules.Delivery(), 2, None),
        (rules.Delivery(), 3, rules.UNCONFIRMED),
        (rules.Delivery(T0), 500, None),
        (rules.Delivery(T0, 3), 0, None),
        (rules.Delivery(T0, 3), 1, rules.BACKED_OFF),
        (rules.Delivery(None, 5), 1, rules.BACKED_OFF),
    ],
)
def test_may_send(d: rules.Delivery, sent: int, held: str | None) -> None:
    assert rules.may_send(d, sent) == held
