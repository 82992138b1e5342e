"""What a server that answers and closes still takes from a client that keeps sending, on each
event loop (asyncio's, uvloop) and transport (plain TCP, TLS): the bare loop, no product code.

    python -m bench.close_reads [--mib 512]

The server answers after its first MiB and closes the transport; a client in a thread sends `--mib`
MiB in 1 MiB blocks until the connection fails. A loop that stops reading at the close makes the
client fail after a few MiB; one that reads on (uvloop's TLS shutdown does, until its timeout)
lets it send them all. bench/results/suite.md has the figures.
"""

import argparse
import asyncio
import socket
import ssl
import time
from collections.abc import Callable, Coroutine
from typing import Any, cast

import trustme
import uvloop

ANSWER = b"HTTP/1.1 413 Content Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
MIB = 1 << 20


class _Refusing(asyncio.Protocol):
    """Answers once a MiB has come and closes."""

    def __init__(self) -> None:
        self.got = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.got += len(data)
        t = self.transport
        if t is not None and self.got > MIB and not t.is_closing():
            t.write(ANSWER)
            t.close()


def _send(port: int, ctx: ssl.SSLContext | None, mib: int, out: dict[str, Any]) -> None:
    raw = socket.create_connection(("127.0.0.1", port))
    conn = ctx.wrap_socket(raw, server_hostname="localhost") if ctx else raw
    block = b"x" * MIB
    sent = 0
    with conn:
        try:
            conn.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n")
            for _ in range(mib):
                conn.sendall(block)
                sent += 1
        except OSError as exc:
            out["error"] = type(exc).__name__
    out["sent_mib"] = sent


async def _one(tls: bool, mib: int) -> dict[str, Any]:
    server_ctx = client_ctx = None
    if tls:
        ca = trustme.CA()
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("localhost").configure_cert(server_ctx)
        client_ctx = ssl.create_default_context()
        ca.configure_trust(client_ctx)
    server = await asyncio.get_running_loop().create_server(
        _Refusing, "127.0.0.1", 0, ssl=server_ctx
    )
    port = server.sockets[0].getsockname()[1]
    out: dict[str, Any] = {}
    began = time.monotonic()
    await asyncio.to_thread(_send, port, client_ctx, mib, out)
    out["seconds"] = round(time.monotonic() - began, 2)
    server.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=512, help="MiB the client tries to send")
    args = parser.parse_args()
    runners: dict[str, Callable[[Coroutine[Any, Any, dict[str, Any]]], dict[str, Any]]] = {
        "asyncio": asyncio.run,
        "uvloop": uvloop.run,
    }
    print("| loop | transport | client sent | its error | seconds |")
    print("|---|---|---|---|---|")
    for name, run in runners.items():
        for tls in (False, True):
            got = run(_one(tls, args.mib))
            print(
                f"| {name} | {'TLS' if tls else 'plain TCP'} | {got['sent_mib']} MiB"
                f" | {got.get('error', 'none')} | {got['seconds']} |"
            )


if __name__ == "__main__":
    main()
