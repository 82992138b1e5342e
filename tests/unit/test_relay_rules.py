"""The open relay rule as a table: the server's replies to MAIL FROM and RCPT TO → the verdict
on `open_relay`; a temporary or missing answer judges nothing."""

import pytest

from controller.posture.rules import CODES
from controller.sidechecks.relay.rules import open_relay
from shared.sidechecks.relay import RelayTest


def relay(mail_from: str | None, rcpt_to: str | None, error: str = "") -> RelayTest:
    return RelayTest(
        sender="s@example.org",
        recipient="r@example.net",
        mail_from=mail_from,
        rcpt_to=rcpt_to,
        error=error,
    )


@pytest.mark.parametrize(
    ("seen", "verdict"),
    [
        (relay("250 2.1.0 Ok", "250 2.1.5 Ok"), True),
        (relay("250 2.1.0 Ok", "251 User not local; will forward"), True),
        (relay("250 2.1.0 Ok", "554 5.7.1 <r@example.net>: Relay access denied"), False),
        (relay("250 2.1.0 Ok", "550 5.7.1 Unable to relay"), False),
        (relay("530 5.7.0 Must issue a STARTTLS command first", None), False),
        (relay("250 2.1.0 Ok", "450 4.7.1 greylisted, try later"), None),
        (relay("451 4.3.0 try later", None), None),
        (relay("250 2.1.0 Ok", None, error="no answer within its share of the check's time"), None),
        (relay(None, None, error="no session for the test: refused"), None),
        (relay("250 ok", "gibberish"), None),
    ],
    ids=[
        "taken",
        "will-forward",
        "denied",
        "unable",
        "mail-refused",
        "greylisted",
        "mail-busy",
        "cut-short",
        "no-session",
        "garbled",
    ],
)
def test_open_relay_verdicts(seen: RelayTest, verdict: bool | None) -> None:
    verdicts = open_relay(seen, "DE")
    if verdict is None:
        assert verdicts == {}
        return
    finding = verdicts[("open_relay", "DE")]
    assert (finding is not None) is verdict
    if finding is not None:
        assert finding.severity == "critical" and "r@example.net" in finding.detail


def test_open_relay_is_critical_with_advice() -> None:
    severity, advice = CODES["open_relay"]
    assert severity == "critical" and "reject_unauth_destination" in advice
