"""POP3 prober: greeting, USER/PASS and STAT when credentials are set, QUIT (RFC 1939).

STAT is valid only in the TRANSACTION state, after a successful login: servers answer -ERR to it
before (Dovecot: "-ERR Unknown command"), so a check without credentials stops at the greeting.
"""

import asyncio
import time

from agent.probers.base import (
    ProbeFailure,
    Recorder,
    Target,
    connect_socket,
    goodbye,
    refuse_line_breaks,
)
from agent.probers.tls import tls_info
from shared.messages import CheckJob, ErrorKind, Pop3CheckJob

LINE_LIMIT = 8192


async def probe_pop3(target: Target, job: CheckJob, rec: Recorder) -> None:
    if not isinstance(job, Pop3CheckJob):
        raise TypeError(f"probe_pop3 got a {job.monitor_type} job")
    config = job.config
    sock = await connect_socket(target, rec)
    rec.current = "tls" if config.tls else "greeting"
    start = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection(
            sock=sock,
            ssl=target.ssl_context if config.tls else None,
            server_hostname=target.hostname if config.tls else None,
            limit=LINE_LIMIT,
        )
    except BaseException:
        sock.close()
        raise
    try:
        if config.tls:
            rec.record("tls", time.perf_counter() - start)
            rec.tls = tls_info(writer.get_extra_info("ssl_object"))
        await _converse(reader, writer, config.user, config.password, rec)
    except BaseException:
        writer.transport.abort()
        raise
    writer.close()


async def _converse(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    user: str,
    password: str,
    rec: Recorder,
) -> None:
    with rec.phase("greeting"):
        greeting = await _read_line(reader)
    rec.set_banner(greeting.removeprefix("+OK").strip() or greeting)
    if not greeting.startswith("+OK"):
        raise ProbeFailure("protocol", f"bad greeting: {greeting[:200]}")
    if user and password:
        refuse_line_breaks(user, password)
        with rec.phase("auth"):
            await _command(reader, writer, f"USER {user}", "USER", "auth")
            await _command(reader, writer, f"PASS {password}", "PASS", "auth")
        rec.current = "stat"
        await _command(reader, writer, "STAT", "STAT", "protocol")
    rec.current = "quit"
    await goodbye(rec, lambda: _command(reader, writer, "QUIT", "QUIT", "protocol"), ProbeFailure)


async def _command(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    line: str,
    name: str,
    kind_on_err: ErrorKind,
) -> str:
    """Send one command; `name` is what a message may show (never the argument of PASS)."""
    writer.write(line.encode() + b"\r\n")
    reply = await _read_line(reader)
    if not reply.startswith("+OK"):
        raise ProbeFailure(kind_on_err, f"{name} failed: {reply[:200]}")
    return reply


async def _read_line(reader: asyncio.StreamReader) -> str:
    try:
        raw = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        raise ProbeFailure("protocol", "connection closed by the server") from exc
    except asyncio.LimitOverrunError as exc:
        raise ProbeFailure("protocol", f"reply line longer than {LINE_LIMIT} bytes") from exc
    return raw.decode("utf-8", "replace").rstrip("\r\n")
