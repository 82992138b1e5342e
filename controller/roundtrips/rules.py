"""Round trips that mail only their own mailbox: pure rules, no I/O.

Addresses: controller.monitors.roundtrip_addresses (the write model's rules).

Sends (one message per country and round; a round's messages go all together or none of them,
its countries' later logins included, so no round is ever half sent):
- `unconfirmed`: no round has shown the message arriving (`delivered`) since the monitor was made
  or its mailbox (`mailbox`) changed: at most `UNCONFIRMED_PER_HOUR` messages an hour;
- `confirmed`: a round delivered: no cap of its own;
- `backed_off`: `BACK_OFF_AFTER` rounds in a row were `not_delivered` and none arrived: at most
  `BACKED_OFF_PER_HOUR` an hour, and the owners are told once; a delivered round ends it.
A monitor's first round of the hour goes whatever its size (a monitor of more countries than its
cap still gets to show its mailbox receives). Every message also counts against its recipient
domain's cap per minute over all organizations. A message counts from when it is sent until its
result says no server took it (`accepted`): an outage of the send server uses up no cap.

Looks (`looks`): a round held back by its monitor's own record (`unconfirmed` over its cap,
`backed_off`) still goes where every live agent of the country can look without sending: its
job (`lookOnly`, the hold) sends nothing and looks in the mailbox once for the messages of
earlier rounds. One that arrived late makes the round `up` (or `spam`, `slow_delivery`): a
delivered round (`outcome`), which confirms the mailbox and ends a back-off, so the round after
it sends again; none is the hold's missed round, as a round held without looking is. Looks
send nothing, so the caps above hold whatever they find. A recipient domain's cap is no hold of
the monitor's (a delivered round would not end it): such a round never looks.

Results ahead of the record (`seen`): the alerter moves the record when it judges a round, a
while after its results are in. A result that showed the message arriving (`arrived`) after the
record's latest confirmation counts as the delivered round it will be judged, so the round
after it is not held: a look then would find nothing, that round having deleted its message.

Rounds in flight (`in_flight`): a round trip's round that went out is in flight until each of
its countries has a result of it, or until it `ends` (its last job's start, the timeout and a
grace). A check-now meanwhile joins it instead of sending a second round: that round would
spend the cap, or look while the first round's message is on its way and find nothing.
"""

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal

UNCONFIRMED_PER_HOUR: Final = 3
BACK_OFF_AFTER: Final = 3
BACKED_OFF_PER_HOUR: Final = 1
# Missed kinds of a message not sent (stored like `login_capped`: the check did not run).
UNCONFIRMED: Final = "mailbox_unconfirmed"
BACKED_OFF: Final = "delivery_backoff"
DOMAIN_CAPPED: Final = "domain_capped"
# The holds under which a round still looks (where its country's agents can).
LOOKS: Final = frozenset({UNCONFIRMED, BACKED_OFF})
# A round's result kinds that show the message arrived in the mailbox (in a watched folder,
# spam, or late) and the one that shows it did not.
ARRIVED: Final = frozenset({"spam", "slow_delivery"})
NOT_DELIVERED: Final = "not_delivered"
# After its last job starts, a round lasts its timeout and this (a round's close has as much).
ROUND_GRACE: Final = timedelta(seconds=5)

State = Literal["unconfirmed", "confirmed", "backed_off"]
Outcome = Literal["delivered", "not_delivered"] | None


def mailbox(config: Mapping[str, object]) -> dict[str, object]:
    """What a round trip's delivery confirmation is of, from its config as stored or shown:
    `to`, the receive leg's protocol, server, port, login and OAuth2 `subject`, defaults applied
    and names in lower case (a trailing dot dropped). Two configs with the same mailbox keep the
    confirmation; a new one starts over. The twin of SQL `roundtrip_mailbox` (migration 0044),
    which the trigger that drops the confirmation calls: one table of cases holds them to the
    same values."""
    receive = config.get("receive")
    leg: Mapping[str, object] = receive if isinstance(receive, Mapping) else {}
    protocol = str(leg.get("protocol") or "imap")
    tls = leg.get("tls") is True
    port = leg.get("port")
    if isinstance(port, bool) or not isinstance(port, int):  # the protocol's own for its TLS
        port = (995 if tls else 110) if protocol == "pop3" else (993 if tls else 143)
    grant = leg.get("oauth2")
    subject = grant.get("subject") if isinstance(grant, Mapping) else None
    return {
        "to": str(config.get("to") or "").lower(),
        "protocol": protocol,
        "hostname": str(leg.get("hostname") or "").rstrip(".").lower(),
        "port": port,
        "user": str(leg.get("user") or ""),
        "subject": str(subject or ""),
    }


@dataclass(frozen=True, slots=True)
class Delivery:
    """A monitor's delivery record: when a round last showed the message arriving, how many
    rounds in a row since were `not_delivered`, whether the owners were told of the back-off."""

    confirmed_at: datetime | None = None
    not_delivered: int = 0
    notified: bool = False

    @property
    def state(self) -> State:
        if self.not_delivered >= BACK_OFF_AFTER:
            return "backed_off"
        return "unconfirmed" if self.confirmed_at is None else "confirmed"

    @property
    def per_hour(self) -> int | None:
        """The monitor's own cap of messages an hour (None: none)."""
        return {"unconfirmed": UNCONFIRMED_PER_HOUR, "backed_off": BACKED_OFF_PER_HOUR}.get(
            self.state
        )


def outcome(up: bool, kinds: Sequence[str | None]) -> Outcome:
    """What a round says of delivery: `up` (some country passed) or a kind in ARRIVED is
    `delivered`; else a `not_delivered` is; else (the send or the login failed) nothing."""
    if up or ARRIVED.intersection(k for k in kinds if k):
        return "delivered"
    return "not_delivered" if NOT_DELIVERED in kinds else None


def after_round(d: Delivery, seen: Outcome, at: datetime) -> Delivery:
    """The record after a round scheduled `at` with outcome `seen`."""
    if seen == "delivered":
        return Delivery(confirmed_at=at)
    if seen == "not_delivered":
        return Delivery(d.confirmed_at, d.not_delivered + 1, d.notified)
    return d


def arrived(status: str, kind: str | None) -> bool:
    """Whether a round trip's result shows its message arrived: `up` (a look's too: it found
    an earlier round's), or a kind in ARRIVED. The twin of SQL `roundtrip_arrived` (migration
    0100); tests/pipeline/test_roundtrip_first_rules.py holds the two to one table."""
    return status == "up" or kind in ARRIVED


def seen(d: Delivery, arrived_at: datetime | None) -> Delivery:
    """The record as the caps read it: a result of a round scheduled `arrived_at` that showed
    the message arriving (`arrived`), later than the record's confirmation, is that round
    delivered ahead of its judgment (None: no such result)."""
    if arrived_at is None or (d.confirmed_at is not None and arrived_at <= d.confirmed_at):
        return d
    return after_round(d, "delivered", arrived_at)


def ends(last_start: datetime, timeout_s: float) -> datetime:
    """When a round whose last job starts at `last_start` is over at the latest."""
    return last_start + timedelta(seconds=timeout_s) + ROUND_GRACE


def in_flight(
    countries: Collection[str], answered: Collection[str], ends_at: datetime, at: datetime
) -> bool:
    """Whether a round sent to `countries`, of which `answered` have a result of it (or of a
    later round), is in flight `at`: before it `ends_at`, and some country has no result. The
    twin of SQL `roundtrip_in_flight` (migration 0100); tests/pipeline/
    test_roundtrip_first_rules.py holds the two to one table."""
    return at < ends_at and not set(countries) <= set(answered)


def may_send(d: Delivery, sent_last_hour: int, size: int = 1) -> str | None:
    """The missed kind that holds back a round of `size` messages, all of them (None: they
    all go), `sent_last_hour` being the monitor's messages of the hour before that count."""
    cap = d.per_hour
    if cap is None or within(sent_last_hour, size, cap):
        return None
    return BACKED_OFF if d.state == "backed_off" else UNCONFIRMED


def looks(kind: str, country_looks: bool) -> bool:
    """Whether a round's job held back for `kind` still goes, sending nothing, to look for
    earlier rounds' messages (`lookOnly`): for the monitor's own holds, in a country whose
    every live agent looks without sending (`FEATURE_LOOK_ONLY`: an older agent would send
    the message, so elsewhere the round is held as before)."""
    return country_looks and kind in LOOKS


def within(sent: int, size: int, cap: int) -> bool:
    """Whether a round of `size` messages fits a cap of `cap` after `sent`: it does when all
    of it fits, and the first round of the period does whatever its size."""
    return sent == 0 or sent + size <= cap


def accepted(status: str, message: str, submit_ms: float | None) -> bool:
    """Whether a round trip's result says its message may be in a server's hands, so it goes
    on counting against the caps: yes when the send server accepted it (`submitMs`, and any
    passing round), or when the submission broke off without an answer (a timeout or a lost
    connection `during submit`: the server may have taken it); no when the message never left
    (a job not run: `expired`, handed back `inconclusive`; a send leg that failed connecting,
    in TLS, at the greeting or the login) or the server refused it with a reply."""
    if submit_ms is not None or status in ("up", "degraded"):
        return True
    return "during submit" in message


def held_why(kind: str, per_domain: int) -> str:
    """The message of a round not sent for `kind`."""
    if kind == DOMAIN_CAPPED:
        return (
            f"over ROUNDTRIP_MAILS_PER_DOMAIN_PER_MINUTE ({per_domain} messages to the recipient"
            " domain in a minute, over all organizations; a round's countries all or none):"
            " not sent"
        )
    if kind == BACKED_OFF:
        return (
            f"{BACK_OFF_AFTER} rounds in a row were not delivered: at most"
            f" {BACKED_OFF_PER_HOUR} message an hour (or one round) until one arrives or the"
            " mailbox changes; not sent"
        )
    return (
        "the mailbox has not yet shown it receives the probe: at most"
        f" {UNCONFIRMED_PER_HOUR} messages an hour until a round is delivered (a round's"
        " countries all or none, counting only messages a server took); not sent"
    )
