"""Reporters that send all of a report's body but its last byte and hold it there, in a process
of their own: `python -m tests.reports.holding URL CA ADDRESS N BYTES [SENT]` opens N connections
from ADDRESS (a loopback address), on each POSTs a TLS-RPT body of BYTES bytes (its
Content-Length said whole) all but its last byte (or only its first SENT bytes: a slow sender),
prints one line `sent`, then waits for its standard input to
close; then it sends each body's last byte and prints each connection's answer's status as
JSON (an answer that came before the body was sent counts as that answer; 0: none). CA is the
PEM file the server's certificate chains to, `-` for plain HTTP."""

import contextlib
import json
import socket
import ssl
import sys
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

BLOCK = 1 << 20


@dataclass
class Held:
    conn: socket.socket | None
    status: int = 0  # an answer that came before the body was sent


def _open(url: str, ctx: ssl.SSLContext | None, address: str, size: int, sent: int) -> Held:
    parts = urlsplit(url)
    try:
        raw = socket.create_connection(
            (parts.hostname or "", parts.port or 443), timeout=120, source_address=(address, 0)
        )
        conn = ctx.wrap_socket(raw, server_hostname=parts.hostname) if ctx else raw
    except OSError:
        return Held(None)
    head = (
        f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Content-Type: application/tlsrpt+json\r\nContent-Length: {size}\r\n\r\n"
    )
    try:
        conn.sendall(head.encode())
        left = sent
        while left:
            n = min(BLOCK, left)
            conn.sendall(b" " * n)
            left -= n
    except OSError:  # answered (and closed) before the body was whole
        return Held(None, _answer(conn))
    return Held(conn)


def _answer(conn: socket.socket) -> int:
    got = b""
    try:
        while b"\r\n" not in got:
            data = conn.recv(65536)
            if not data:
                break
            got += data
    except OSError:
        pass
    finally:
        conn.close()
    return int(got.split()[1]) if got else 0


def _status(held: Held) -> int:
    if held.conn is None:
        return held.status
    with contextlib.suppress(OSError):
        held.conn.sendall(b"{")  # the last byte: a body that is not a report
    return _answer(held.conn)


def main(url: str, ca: str, address: str, n: int, size: int, sent: int) -> None:
    ctx = ssl.create_default_context(cafile=ca) if ca != "-" else None
    conns: list[Held] = [Held(None)] * n

    def opened(i: int) -> None:
        conns[i] = _open(url, ctx, address, size, sent)

    threads = [threading.Thread(target=opened, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("sent", flush=True)
    sys.stdin.read()
    print(json.dumps([_status(c) for c in conns]), flush=True)


if __name__ == "__main__":
    size = int(sys.argv[5])
    sent = int(sys.argv[6]) if len(sys.argv) > 6 else size - 1
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), size, sent)
