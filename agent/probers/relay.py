"""The open relay test (issue 58): does an SMTP server take a recipient of a foreign domain
from a session that has not logged in? MAIL FROM, RCPT TO, then RSET: DATA is never sent, so
nothing is relayed even when the server would (MXToolbox's SMTP test asks the same).

The addresses are of RFC 2606's reserved domains: the server has no business with them, and no
mail could ever reach them. The controller judges the replies (controller/sidechecks/relay);
this is the side check's session part (agent/sidechecks/relay.py asks for it).
"""

import asyncio
from typing import Final

import aiosmtplib
from aiosmtplib import SMTPException

from agent.probers.base import BANNER_MAX, Recorder
from shared.sidechecks.relay import RelayTest

SENDER: Final = "mailprobe-relay-test@example.org"
RECIPIENT: Final = "mailprobe-relay-test@example.net"
# At most this much of what is left of the check's time: the check's own result never waits
# on the test, and the goodbye still has its time after it.
SHARE: Final = 0.5


async def relay_test(smtp: aiosmtplib.SMTP, rec: Recorder) -> RelayTest:
    """The test on `smtp`, a greeted session that has not logged in, within its share of the
    check's time; the session is left reset (or closed when the test ran out of time)."""
    out = RelayTest(sender=SENDER, recipient=RECIPIENT)
    rec.current = "relay test"
    budget = (rec.deadline - asyncio.get_running_loop().time()) * SHARE
    try:
        async with asyncio.timeout(max(budget, 0.0)):
            reply = await smtp.execute_command(b"MAIL", f"FROM:<{SENDER}>".encode())
            out.mail_from = _said(reply)
            if 200 <= reply.code < 300:
                reply = await smtp.execute_command(b"RCPT", f"TO:<{RECIPIENT}>".encode())
                out.rcpt_to = _said(reply)
            await smtp.execute_command(b"RSET")
    except TimeoutError:
        out.error = "no answer within its share of the check's time"
        smtp.close()
    except (SMTPException, OSError) as exc:
        out.error = f"{type(exc).__name__}: {exc}"[:BANNER_MAX]
    return out


def _said(reply: aiosmtplib.SMTPResponse) -> str:
    return f"{reply.code} {reply.message}".strip()[:BANNER_MAX]
