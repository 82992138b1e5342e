"""The floor of a check's CPU in Python (issue 70): the cheapest client Python's `ssl` allows for
the exporter benchmark's exchanges, so that the agent's figure can be read against what any
Python client on this host's OpenSSL must pay.

A session is the exchange alone: a non-blocking TCP connect to the address, the dialogue's
lines in the clear, the STARTTLS command when the protocol has one, a fully verified handshake
on the context the agent uses (`SSLContext.wrap_socket` straight on the socket: no memory BIOs,
no transport), the dialogue's lines over TLS, close_notify, close. A reply is read until a line
starts with what the exporter's `expect` matches; nothing is parsed beyond that, timed, logged
or built into a result. Sessions run CONCURRENCY at a time on one edge-triggered epoll (one
`epoll_ctl` per connection, no loop, no tasks): each is a generator that tries its next socket
operation and yields only when the kernel or OpenSSL says it would block.
"""

import contextlib
import select
import socket
import ssl
from collections.abc import Generator
from dataclasses import dataclass

Step = tuple[bytes, bytes]  # a command to send (b"": none), then the line its reply ends with
_WOULD_BLOCK = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)
_EVENTS = select.EPOLLIN | select.EPOLLOUT | select.EPOLLET
_READ_MAX = 65536
REPLY_MAX = 1 << 20  # bytes of one reply before the session fails
SILENCE_S = 10.0  # seconds without an event on any session before all left fail


@dataclass(frozen=True)
class Dialogue:
    """`clear` in the clear, then TLS when `tls` (at once when `implicit`, else after `clear`,
    whose last step is the STARTTLS command), then `secured` over it."""

    clear: tuple[Step, ...] = ()
    tls: bool = False
    implicit: bool = False
    secured: tuple[Step, ...] = ()


class Refused(Exception):
    """A reply that ended the connection before the expected line."""


Session = Generator[None, None, None]


def session(
    sock: socket.socket, dialogue: Dialogue, ctx: ssl.SSLContext, server_name: str
) -> Session:
    """One exchange on `sock`, whose connect is under way; the caller resumes it on any event
    of its descriptor. The socket (or the TLS socket that took it over) is closed at the end."""
    conn = sock
    try:
        yield  # the connect: writable (edge-triggered epoll reports it even if done already)
        if dialogue.tls and dialogue.implicit:
            conn = yield from _handshake(ctx, sock, server_name)
        for step in dialogue.clear:
            yield from _step(conn, step)
        if dialogue.tls and not dialogue.implicit:
            conn = yield from _handshake(ctx, sock, server_name)
        for step in dialogue.secured:
            yield from _step(conn, step)
        if isinstance(conn, ssl.SSLSocket):
            with contextlib.suppress(*_WOULD_BLOCK, OSError):
                conn.unwrap()  # sends close_notify; does not wait for the server's
    finally:
        conn.close()  # the descriptor leaves the epoll set with it


def _handshake(
    ctx: ssl.SSLContext, sock: socket.socket, server_name: str
) -> Generator[None, None, ssl.SSLSocket]:
    """The TLS socket, which now holds the descriptor: closed here when the handshake fails."""
    tls = ctx.wrap_socket(sock, server_hostname=server_name, do_handshake_on_connect=False)
    try:
        while True:
            try:
                tls.do_handshake()
            except _WOULD_BLOCK:
                yield
            else:
                return tls
    except BaseException:
        tls.close()
        raise


def _step(conn: socket.socket, step: Step) -> Session:
    command, last = step
    while command:
        try:
            sent = conn.send(command)
        except _WOULD_BLOCK:
            yield
        else:
            command = command[sent:]
    reply = b""
    while not (reply.endswith(b"\n") and (reply.startswith(last) or b"\n" + last in reply)):
        try:
            data = conn.recv(_READ_MAX)
        except _WOULD_BLOCK:
            yield
            continue
        if not data:
            raise Refused(f"closed before {last!r}: {reply[-200:]!r}")
        reply += data
        if len(reply) > REPLY_MAX:
            raise Refused(f"no {last!r} in the first {REPLY_MAX:,} bytes")


def run(
    dialogue: Dialogue,
    ctx: ssl.SSLContext,
    port: int,
    server_name: str,
    checks: int,
    concurrency: int,
) -> list[str]:
    """`checks` sessions with 127.0.0.1:`port`, `concurrency` at a time; what failed (when
    nothing happens for SILENCE_S, every session left fails and no more start)."""
    poll = select.epoll()
    live: dict[int, Session] = {}
    failed: list[str] = []
    started = 0

    def start() -> None:
        nonlocal started
        started += 1
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        sock.connect_ex(("127.0.0.1", port))
        gen = session(sock, dialogue, ctx, server_name)
        next(gen)
        poll.register(sock, _EVENTS)
        live[sock.fileno()] = gen

    try:
        while started < min(checks, concurrency):
            start()
        while live:
            events = poll.poll(SILENCE_S)
            if not events:
                failed += [f"no answer within {SILENCE_S:g} s"] * len(live)
                break
            for fd, _ in events:
                try:
                    next(live[fd])
                    continue
                except StopIteration:
                    pass
                except Exception as exc:
                    failed.append(f"{type(exc).__name__}: {exc}")
                del live[fd]
                if started < checks:
                    start()
    finally:
        for gen in live.values():
            gen.close()
        poll.close()
    return failed
