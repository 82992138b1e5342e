"""IMAP prober: greeting, CAPABILITY, LOGIN when credentials are set, LOGOUT.

It drives aioimaplib's protocol class over a transport it opens itself: `IMAP4(host=...)`
resolves the name again and cannot send a different SNI name than the host it dials, while
`create_connection(sock=..., server_hostname=...)` connects to the resolved IP and still checks
the certificate against the monitor's hostname. It also lets the TLS handshake and the greeting
be timed apart.
"""

import asyncio
import time
from typing import Any

from aioimaplib import IMAP4ClientProtocol, quoted

from agent.probers.base import (
    ProbeFailure,
    Recorder,
    Target,
    connect_socket,
    goodbye,
    refuse_line_breaks,
)
from agent.probers.tls import tls_info
from shared.messages import CheckJob, ErrorKind, ImapCheckJob


class _ProbeProtocol(IMAP4ClientProtocol):  # type: ignore[misc]
    """Exposes the greeting line, and the outcome of the greeting + CAPABILITY exchange that
    aioimaplib runs in a background task, as futures the prober can await."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop, self._lost)
        self.greeting: asyncio.Future[bytes] = loop.create_future()
        # None when ready, else what went wrong (kept as a value: no unretrieved exceptions).
        self.ready: asyncio.Future[BaseException | None] = loop.create_future()

    def _lost(self, exc: Exception | None) -> None:
        for fut in (self.greeting, self.ready):
            if not fut.done():
                fut.set_exception(exc or ConnectionResetError("connection closed by the server"))
                fut.exception()  # mark retrieved: the prober may be past this point

    async def welcome(self, command: bytes) -> None:
        if not self.greeting.done():
            self.greeting.set_result(command)
        try:
            await super().welcome(command)
        except Exception as exc:  # a bad greeting or a CAPABILITY without IMAP4rev1
            if not self.ready.done():
                self.ready.set_result(exc)
        else:
            if not self.ready.done():
                self.ready.set_result(None)


async def probe_imap(target: Target, job: CheckJob, rec: Recorder) -> None:
    if not isinstance(job, ImapCheckJob):
        raise TypeError(f"probe_imap got a {job.monitor_type} job")
    config = job.config
    sock = await connect_socket(target, rec)
    loop = asyncio.get_running_loop()
    proto = _ProbeProtocol(loop)
    rec.current = "tls" if config.tls else "greeting"
    start = time.perf_counter()
    try:
        transport, _ = await loop.create_connection(
            lambda: proto,
            sock=sock,
            ssl=target.ssl_context if config.tls else None,
            server_hostname=target.hostname if config.tls else None,
        )
    except BaseException:
        sock.close()
        raise
    try:
        if config.tls:
            rec.record("tls", time.perf_counter() - start)
            rec.tls = tls_info(transport.get_extra_info("ssl_object"))
        await _converse(proto, config.user, config.password, rec)
    finally:
        for task in list(proto.tasks):
            task.cancel()
        transport.close()


async def _converse(proto: _ProbeProtocol, user: str, password: str, rec: Recorder) -> None:
    with rec.phase("greeting"):
        line = await proto.greeting
    rec.set_banner(line.decode("utf-8", "replace").removeprefix("* "))
    rec.current = "capability"
    failure = await proto.ready
    if failure is not None:
        kind: ErrorKind = "temporary" if line.upper().startswith(b"* BYE") else "protocol"
        raise ProbeFailure(kind, f"bad greeting or CAPABILITY: {failure}")
    if user and password and proto.state == "NONAUTH":
        refuse_line_breaks(user, password)
        with rec.phase("auth"):
            # aioimaplib quotes the password but sends the user as it is: a space or a `"` in
            # it would make the command malformed (BAD), so quote it as the password is.
            response = await proto.login(quoted(user), password)
        _check_login(response)
    rec.current = "logout"
    # The server may also hang up right after its BYE.
    await goodbye(rec, proto.logout, asyncio.IncompleteReadError)


def _check_login(response: Any) -> None:
    if response.result == "OK":
        return
    text = b" ".join(response.lines).decode("utf-8", "replace")
    kind: ErrorKind = "auth" if response.result == "NO" else "protocol"
    raise ProbeFailure(kind, f"LOGIN failed: {response.result} {text}".strip())
