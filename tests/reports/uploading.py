"""A client that sends a request body over a raw (TLS) socket until the server stops taking it,
then reads the answer; and how many bytes of the body the server's side of the connection took
(`acked`: what its kernel acknowledged, read by the server or still in its socket buffer).
Blocking: run it with `asyncio.to_thread` next to the served app."""

import socket
import ssl
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

MIB = 1 << 20
# Linux `struct tcp_info`: `tcpi_bytes_acked` (u64) follows 104 bytes of counters and
# `tcpi_pacing_rate`, `tcpi_max_pacing_rate` (linux/tcp.h, since 4.1).
_BYTES_ACKED_AT = 120


@dataclass(frozen=True)
class Upload:
    status: int  # 0: no answer (the connection closed, or none within 30 s)
    headers: dict[str, str]
    acked: int  # bytes of request (head and body) the server's side acknowledged
    sent: int  # body bytes the client's socket accepted


def blocks(mib: int, byte: bytes = b"\0") -> Iterable[bytes]:
    block = byte * MIB
    return (block for _ in range(mib))


def buffer_slack() -> int:
    """What the server's kernel may hold unread for one connection: the largest TCP receive
    buffer (net.ipv4.tcp_rmem's third field)."""
    return int(Path("/proc/sys/net/ipv4/tcp_rmem").read_text().split()[2])


def upload(
    url: str,
    ctx: ssl.SSLContext | None,
    headers: dict[str, str],
    body: Iterable[bytes],
    *,
    chunked: bool = False,
    unended: str | None = None,
) -> Upload:
    """POST `body` to `url` (Content-Length as `headers` say, or chunks when `chunked`); with
    `unended`, the head never ends: `body` is the value of a header of that name."""
    parts = urlsplit(url)
    raw = socket.create_connection((parts.hostname or "", parts.port or 443), timeout=30)
    conn = ctx.wrap_socket(raw, server_hostname=parts.hostname) if ctx else raw
    with conn:
        fields = {"Host": parts.netloc, **headers}
        if chunked:
            fields["Transfer-Encoding"] = "chunked"
        head = "".join(f"{k}: {v}\r\n" for k, v in fields.items())
        end = f"{unended}: " if unended else "\r\n"
        conn.sendall(f"POST {parts.path} HTTP/1.1\r\n{head}{end}".encode())
        sent = 0
        try:
            for block in body:
                conn.sendall(b"%x\r\n%s\r\n" % (len(block), block) if chunked else block)
                sent += len(block)
            if chunked:
                conn.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server closed the connection: what it answered is still to read
        info = conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 232)
        acked = struct.unpack_from("Q", info, _BYTES_ACKED_AT)[0]
        answer = _answer(conn)
    if not answer:
        return Upload(0, {}, acked, sent)
    status_line, *lines = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    return Upload(
        int(status_line.split()[1]),
        {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)},
        acked,
        sent,
    )


def _answer(conn: socket.socket, got: bytes = b"") -> bytes:
    while b"\r\n\r\n" not in got:
        try:
            data = conn.recv(65536)
        except (ssl.SSLError, OSError):
            break
        if not data:
            break
        got += data
    return got


@dataclass(frozen=True)
class Trickle:
    status: int  # 0: the connection closed unanswered (or still open when the trickle ended)
    sent: int  # bytes of the trickled head the client sent
    closed: bool  # whether the server closed the connection before the trickle ended


def trickle(
    url: str,
    ctx: ssl.SSLContext | None,
    every_s: float,
    most: int,
    *,
    after: int,
    silent: bool = False,
) -> Trickle:
    """On one connection, `after` whole GET requests (each answer read whole), then a head that
    never ends sent a byte every `every_s` (each wait one for the server's answer or close), at
    most `most` bytes; `silent`: none of them sent (one wait, for the answer or close)."""
    parts = urlsplit(url)
    raw = socket.create_connection((parts.hostname or "", parts.port or 443), timeout=30)
    conn = ctx.wrap_socket(raw, server_hostname=parts.hostname) if ctx else raw
    with conn:
        got = b""
        for _ in range(after):
            conn.sendall(f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode())
            got = _whole_answer(conn, got)
        head = f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nX-Padding: ".encode()
        head += b"a" * most
        sent, answer = 0, b""
        conn.settimeout(every_s)
        for byte in (head[i : i + 1] for i in range(min(most, len(head)))):
            try:
                if not silent:
                    conn.sendall(byte)
                    sent += 1
                answer = conn.recv(65536)  # the wait between two bytes: for an answer or a close
            except TimeoutError:
                continue
            except OSError:
                pass  # reset
            break
        else:
            return Trickle(0, sent, False)
        conn.settimeout(30)
        answer = _answer(conn, got + answer)
    status = int(answer.split()[1]) if answer else 0
    return Trickle(status, sent, True)


def _whole_answer(conn: socket.socket, got: bytes) -> bytes:
    """Read one answer whole (its head and its Content-Length body); what follows it is returned."""
    while b"\r\n\r\n" not in got:
        data = conn.recv(65536)
        if not data:
            raise ConnectionError("closed before an answer")
        got += data
    head, rest = got.split(b"\r\n\r\n", 1)
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.lower().split(b"\r\n")
        if line.startswith(b"content-length:")
    )
    while len(rest) < length:
        data = conn.recv(65536)
        if not data:
            raise ConnectionError("closed within an answer")
        rest += data
    return rest[length:]


@dataclass(frozen=True)
class AfterAnswer:
    status: int  # what the server answered the request
    cut_after: float | None  # seconds of sending after the answer until the server cut; None: never
    sent: int  # bytes sent after the answer


def send_after_answer(url: str, ctx: ssl.SSLContext, mib_per_s: int, seconds: float) -> AfterAnswer:
    """A whole GET of `url` asking the server to close, its answer read; then `mib_per_s` MiB a
    second on the same connection for at most `seconds`, until the server cuts it."""
    parts = urlsplit(url)
    raw = socket.create_connection((parts.hostname or "", parts.port or 443), timeout=30)
    conn = ctx.wrap_socket(raw, server_hostname=parts.hostname)
    with conn:
        head = f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n"
        conn.sendall(head.encode())
        answer = _answer(conn)
        status = int(answer.split(b" ", 2)[1]) if answer else 0
        began = time.monotonic()
        sent = 0
        try:
            while time.monotonic() - began < seconds:
                conn.sendall(b"x" * MIB)
                sent += MIB
                time.sleep(1 / mib_per_s)
        except OSError:
            return AfterAnswer(status, time.monotonic() - began, sent)
    return AfterAnswer(status, None, sent)
