"""The open relay test on the wire (issue 58): an SMTP server's answers to a relay attempt from
a session that has not logged in. Asked on the DNS cadence of an SMTP monitor that opted in
(`relayCheck`); run inside the core check's own SMTP session (agent/probers/relay.py)."""

from typing import Final

import msgspec

from shared.sidechecks import SideCheckWire


class RelayAsk(msgspec.Struct, kw_only=True, rename="camel"):
    """Nothing to say: the sender and recipient are the agent's (RFC 2606 reserved domains)."""


class RelayTest(msgspec.Struct, kw_only=True, rename="camel"):
    """An SMTP server's answers to a relay attempt from a session that has not logged in (a
    job whose config has `relayCheck`): `MAIL FROM:<sender>`, then `RCPT TO:<recipient>`, an
    address of a reserved domain (RFC 2606) the server has no business taking mail for, then
    RSET and QUIT; DATA is never sent, so nothing is relayed even by an open relay.
    `mailFrom`, `rcptTo`: the replies as sent (code and text, at most 512 characters), null
    when not reached; `error`: why the test ended before an answer (a lost connection, its
    time budget)."""

    sender: str
    recipient: str
    mail_from: str | None = None
    rcpt_to: str | None = None
    error: str = ""


WIRE: Final = SideCheckWire("relay", RelayAsk, RelayTest)

REPLY_CHARS_MAX: Final = 512  # agent.probers.base.BANNER_MAX
ADDRESS_CHARS_MAX: Final = 254  # RFC 5321 4.5.3.1.3: a path's address


def bounded(t: RelayTest) -> RelayTest:
    """`t` within the bounds an agent keeps (applied again by the controller at ingest: an agent
    could send more): each reply and the error at most REPLY_CHARS_MAX characters, the
    addresses ADDRESS_CHARS_MAX (`t` itself when nothing was cut)."""
    out = RelayTest(
        sender=t.sender[:ADDRESS_CHARS_MAX],
        recipient=t.recipient[:ADDRESS_CHARS_MAX],
        mail_from=None if t.mail_from is None else t.mail_from[:REPLY_CHARS_MAX],
        rcpt_to=None if t.rcpt_to is None else t.rcpt_to[:REPLY_CHARS_MAX],
        error=t.error[:REPLY_CHARS_MAX],
    )
    return t if out == t else out
