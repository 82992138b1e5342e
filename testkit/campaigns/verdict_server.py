"""One mail server of the verdict campaign in a process of its own, so the harness can kill it
(an outage) or SIGSTOP it (a freeze) by PID.

`python -m testkit.campaigns.verdict_server KIND HOST PORT CERT KEY [PORT2]`: KIND is one of
`SERVERS` (the loopback peers of testkit/peers/, plain, STARTTLS/STLS or implicit TLS with CERT and
KEY, PEM files; the `-auth` ones take logins, user `USER`, password `PASSWORD`), one of `PAIRS` (a
round trip's two sides over one mailbox, testkit/peers/mailstore.py: SMTP on PORT, the mailbox on
PORT2; SIGUSR1 takes the SMTP side away or brings it back on its port, SIGUSR2 the mailbox's),
`tarpit` (accepts connections and never says a word, as an overloaded or hostile server does),
or one of `FORWARDED` (every connection passed on to 127.0.0.1:PORT2, where Dovecot serves IMAPS
with its OAuth2 passdb, testkit/oauth2/dovecot.py: killing or freezing this process is the
server's outage or freeze, Dovecot runs on).
"""

import asyncio
import signal
import ssl
import sys
from collections.abc import Callable

from testkit.peers.base import LoopbackServer
from testkit.peers.imap import ImapPeer
from testkit.peers.mailstore import DeliveringHandler, MailboxImapPeer, MailboxPop3Peer, Mailstore
from testkit.peers.pop3 import Pop3Peer
from testkit.peers.smtp import SmtpPeer

USER, PASSWORD = "alice", "s3cret"
BOX = "probe@mail.test"  # a round trip's mailbox (`to` and `receive.user`)
SENDER = "sender"  # a round trip's SMTP login

Make = Callable[[ssl.SSLContext], SmtpPeer | LoopbackServer]
LOGINS = {USER: PASSWORD}
SERVERS: dict[str, Make] = {
    "smtp": lambda tls: SmtpPeer(backlog=512),
    "smtp-starttls": lambda tls: SmtpPeer(starttls=tls, backlog=512),
    "smtps": lambda tls: SmtpPeer(implicit_tls=tls, backlog=512),
    "smtp-auth": lambda tls: SmtpPeer(starttls=tls, users=LOGINS, backlog=512),
    "imap": lambda tls: ImapPeer(),
    "imap-starttls": lambda tls: ImapPeer(starttls=tls),
    "imaps": lambda tls: ImapPeer(ssl_context=tls),
    "imap-auth": lambda tls: ImapPeer(LOGINS, ssl_context=tls),
    "pop3": lambda tls: Pop3Peer(),
    "pop3s": lambda tls: Pop3Peer(ssl_context=tls),
    "pop3-auth": lambda tls: Pop3Peer(LOGINS, ssl_context=tls),
}
PAIRS: dict[str, Callable[[Mailstore], LoopbackServer]] = {
    "rt-imap": MailboxImapPeer,
    "rt-pop3": MailboxPop3Peer,
}


FORWARDED = frozenset({"imap-oauth2"})


class Forwarder(LoopbackServer):
    """Each connection passed on, both ways, to 127.0.0.1:`upstream`."""

    def __init__(self, upstream: int) -> None:
        super().__init__()
        self.upstream = upstream

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            up_writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


class Tarpit(LoopbackServer):
    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up


async def serve(kind: str, host: str, port: int, cert: str, key: str) -> None:
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    server = Tarpit() if kind == "tarpit" else SERVERS[kind](tls)
    async with server.at(host, port):
        await asyncio.Event().wait()


async def forward(host: str, port: int, upstream: int) -> None:
    server = Forwarder(upstream)
    async with server.at(host, port):
        await asyncio.Event().wait()


async def serve_pair(kind: str, host: str, port: int, mailbox_port: int) -> None:
    """A round trip's SMTP side and mailbox, each of which a signal takes away or brings back."""
    store = Mailstore()
    smtp = SmtpPeer(
        handler=DeliveringHandler(store), users={SENDER: PASSWORD}, auth_in_clear=True
    ).at(host, port)
    mailbox = PAIRS[kind](store).at(host, mailbox_port)
    mailbox.users[BOX] = PASSWORD  # type: ignore[attr-defined]
    sides: dict[signal.Signals, SmtpPeer | LoopbackServer] = {
        signal.SIGUSR1: smtp,
        signal.SIGUSR2: mailbox,
    }
    up = {sig: True for sig in sides}
    lock = asyncio.Lock()

    async def toggle(sig: signal.Signals) -> None:
        async with lock:
            if up[sig]:
                await sides[sig].__aexit__(None, None, None)
            else:
                await sides[sig].__aenter__()
            up[sig] = not up[sig]

    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    def on_signal(sig: signal.Signals) -> None:
        task = loop.create_task(toggle(sig))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    for sig in sides:
        loop.add_signal_handler(sig, on_signal, sig)
    async with smtp, mailbox:
        await asyncio.Event().wait()


if __name__ == "__main__":
    kind, host, port, cert, key = sys.argv[1:6]
    if kind in PAIRS:
        asyncio.run(serve_pair(kind, host, int(port), int(sys.argv[6])))
    elif kind in FORWARDED:
        asyncio.run(forward(host, int(port), int(sys.argv[6])))
    else:
        asyncio.run(serve(kind, host, int(port), cert, key))
