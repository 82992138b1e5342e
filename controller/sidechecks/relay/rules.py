"""The open relay rule, pure: an SMTP server's answers to the agent's relay attempt from a
session that did not log in (`RelayTest`) → the verdict on `open_relay`.

A recipient of a foreign domain taken (2xx to RCPT TO) is an open relay; refused (5xx), or the
sender refused outright (5xx to MAIL FROM: it takes nothing from strangers), is not. A 4xx
(greylisting, a busy server) or a test cut short says nothing, so it judges nothing.
"""

from typing import Final

from controller.sidechecks.findings import Verdicts, declare, judge
from shared.sidechecks.relay import RelayTest

CODES: Final = declare(
    {
        "open_relay": (
            "critical",
            "The server took a recipient of a foreign domain from a session that had not logged "
            "in: it relays mail for anyone, and spammers will use it (and get it blocklisted). "
            "Relay only for authenticated users and your own networks (Postfix "
            "smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, "
            "reject_unauth_destination, with a mynetworks of your own hosts only).",
        ),
    }
)


def open_relay(seen: RelayTest, cc: str) -> Verdicts:
    v: Verdicts = {}
    mail, rcpt = _code(seen.mail_from), _code(seen.rcpt_to)
    if rcpt is not None and rcpt // 100 in (2, 5):
        detail = f"RCPT TO:<{seen.recipient}> from a session that did not log in: {seen.rcpt_to}"
        judge(v, "open_relay", cc, rcpt // 100 == 2, detail)
    elif rcpt is None and mail is not None and mail // 100 == 5:
        judge(v, "open_relay", cc, False, f"MAIL FROM refused: {seen.mail_from}")
    return v


def _code(reply: str | None) -> int | None:
    head = (reply or "")[:3]
    return int(head) if len(head) == 3 and head.isdigit() else None
