"""HTTP endpoints for operators: `GET /metrics` (Prometheus text format), `GET /health` (the
process answers: liveness) and `GET /ready` (the caller's readiness check: 200, or 503 with its
reason).

The agent serves them on AGENT_METRICS_PORT, a controller without the `api` role on
CONTROLLER_METRICS_PORT (with it, the API serves them). A few lines of HTTP/1.0 on
`asyncio.start_server`: one request per connection, no keep-alive, nothing a probe or a
Prometheus scrape does not need.
"""

import asyncio
import contextlib
import errno
import inspect
import json
import random
import socket
from collections.abc import Awaitable, Callable

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY
from prometheus_client.exposition import generate_latest

from shared import __version__

log = structlog.get_logger(__name__)

READ_TIMEOUT_S = 5.0
MAX_HEAD_BYTES = 8192
# None when ready, else why not (for a person reading the probe's answer); may be a coroutine
# function when the check asks a server.
Readiness = Callable[[], str | None] | Callable[[], Awaitable[str | None]]
Answer = tuple[int, bytes, str]

# A port held by no listener can still refuse a listen: two processes listening at the same
# instant can each see the other listening and both be refused, and a probe's brief bind
# (without SO_REUSEADDR) refuses every other bind. A refused port is tried once more after a
# pause drawn from this range, so a port nobody keeps goes to one of them.
RELISTEN_S = (0.02, 0.2)

_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}
_JSON = "application/json"


async def start(
    host: str, port: int, readiness: Readiness, *, setting: str = "the metrics port's setting"
) -> asyncio.Server | None:
    """Listen; None (with one error line, naming `setting`, which moves the port) when the port
    cannot be had: the process's work matters more than its metrics, so that does not stop it."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _serve_one(reader, writer, readiness)

    try:
        sock = await _listening_socket(host, port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            log.error(
                "ops_port_taken",
                host=host,
                port=port,
                setting=setting,
                hint=f"another process listens there (a second agent on this host?): set {setting}"
                " to a free port for each, or 0 for none; this one works on without metrics",
            )
        else:
            log.error("ops_server_failed", host=host, port=port, error=repr(exc))
        return None
    try:
        server = await asyncio.start_server(handle, sock=sock, limit=MAX_HEAD_BYTES)
    except OSError as exc:
        sock.close()
        log.error("ops_server_failed", host=host, port=port, error=repr(exc))
        return None
    bound = sock.getsockname()
    log.info("ops_server_listening", host=bound[0], port=bound[1])
    return server


async def _listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound and listening on host:port; OSError when either step fails.

    Done here, not by start_server: when two processes bind the same port at once, both binds
    succeed (SO_REUSEADDR, neither listening yet) and the second listen() fails, which uvloop
    does not raise but reports by handing back a server without a socket. A port in use is
    tried again once (RELISTEN_S)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    family, _, _, _, address = infos[0]
    try:
        return socket.create_server(address, family=family)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
    await asyncio.sleep(random.uniform(*RELISTEN_S))
    return socket.create_server(address, family=family)


async def _serve_one(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, readiness: Readiness
) -> None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
        method, _, rest = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
        path = rest.partition(" ")[0].partition("?")[0]
        status, body, content_type = await answer(method, path, readiness)
        writer.write(
            f"HTTP/1.0 {status} {_REASONS[status]}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        )
        if method != "HEAD":
            writer.write(body)
        await writer.drain()
    except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        pass  # a client that sends no request, too much of one, or goes away: just close
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def answer(method: str, path: str, readiness: Readiness) -> Answer:
    if path not in ("/metrics", "/health", "/ready"):
        return 404, _json({"status": "not found"}), _JSON
    if method not in ("GET", "HEAD"):
        return 405, _json({"status": "method not allowed"}), _JSON
    if path == "/metrics":
        return 200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    if path == "/health":
        return 200, _json({"status": "ok", "version": __version__}), _JSON
    try:
        reason = readiness()
        if inspect.isawaitable(reason):
            reason = await reason
    except Exception:
        # Whoever probes needs no credentials: the error (hosts, users, paths) goes to the log.
        log.exception("readiness_check_failed")
        reason = "readiness check failed"
    if reason is None:
        return 200, _json({"status": "ready"}), _JSON
    return 503, _json({"status": "not ready", "reason": reason}), _JSON


def _json(body: dict[str, str]) -> bytes:
    return json.dumps(body).encode()
