"""One mail server of the verdict campaign in a process of its own, so the harness can kill it
(an outage) or SIGSTOP it (a freeze) by PID.

`python -m bench.verdict_server KIND HOST PORT CERT KEY`: KIND is one of `SERVERS` (the loopback
peers of tests/peers/, plain, STARTTLS/STLS or implicit TLS with CERT and KEY, PEM files).
"""

import asyncio
import ssl
import sys
from collections.abc import Callable

from tests.peers.imap import ImapPeer
from tests.peers.pop3 import Pop3Peer
from tests.peers.smtp import SmtpPeer

Make = Callable[[ssl.SSLContext], SmtpPeer | ImapPeer | Pop3Peer]
SERVERS: dict[str, Make] = {
    "smtp": lambda tls: SmtpPeer(backlog=512),
    "smtp-starttls": lambda tls: SmtpPeer(starttls=tls, backlog=512),
    "smtps": lambda tls: SmtpPeer(implicit_tls=tls, backlog=512),
    "imap": lambda tls: ImapPeer(),
    "imap-starttls": lambda tls: ImapPeer(starttls=tls),
    "imaps": lambda tls: ImapPeer(ssl_context=tls),
    "pop3": lambda tls: Pop3Peer(),
    "pop3s": lambda tls: Pop3Peer(ssl_context=tls),
}


async def serve(kind: str, host: str, port: int, cert: str, key: str) -> None:
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    async with SERVERS[kind](tls).at(host, port):
        await asyncio.Event().wait()


if __name__ == "__main__":
    kind, host, port, cert, key = sys.argv[1:6]
    asyncio.run(serve(kind, host, int(port), cert, key))
