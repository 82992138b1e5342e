"""SMTP sessions at their edges, against real servers on loopback: replies split into single
bytes, EHLO replies too long to keep or to read, a server that stalls or hangs up during the
STARTTLS handshake, EHLO and HELO both refused, and a server whose EHLO list changes between
checks (the client keeps a parse per distinct list: the next check reports the new one)."""

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import TypedDict, Unpack

import pytest
import trustme

from agent.probers.base import CAPABILITIES_MAX
from agent.probers.run import run_check
from agent.probers.tls import SslContexts
from shared.clock import WALL
from shared.mailclient import smtp as client
from shared.messages import CheckResult, SmtpConfig, TlsOptions
from testkit.peers.base import LoopbackServer
from testkit.peers.jobs import make_job

Talk = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Dialogue(LoopbackServer):
    """Runs `talk` on each connection."""

    def __init__(self, talk: Talk) -> None:
        super().__init__()
        self.talk = talk

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.talk(reader, writer)


async def _say(writer: asyncio.StreamWriter, data: bytes, one_byte_at_a_time: bool = False) -> None:
    if not one_byte_at_a_time:
        writer.write(data)
        await writer.drain()
        return
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for i in range(len(data)):
        writer.write(data[i : i + 1])
        await writer.drain()
        await asyncio.sleep(0.001)  # paces the bytes into segments of their own


def _ehlo(lines: list[str]) -> bytes:
    *head, last = lines
    return b"".join(f"250-{x}\r\n".encode() for x in head) + f"250 {last}\r\n".encode()


def _server(
    ehlo: Callable[[], bytes],
    split: bool = False,
    on_starttls: Talk | None = None,
    greet: bool = True,
) -> Talk:
    """Greets (unless `greet` is false: a session just secured), answers EHLO with `ehlo()`,
    STARTTLS with 220 then `on_starttls`, QUIT with 221, anything else with 502."""

    async def talk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if greet:
            await _say(writer, b"220 edge.test ESMTP\r\n", split)
        while line := await reader.readline():
            verb = line.split()[0].upper() if line.split() else b""
            if verb == b"EHLO":
                await _say(writer, ehlo(), split)
            elif verb == b"STARTTLS" and on_starttls is not None:
                await _say(writer, b"220 2.0.0 go ahead\r\n")
                await on_starttls(reader, writer)
                return
            elif verb == b"QUIT":
                await _say(writer, b"221 2.0.0 bye\r\n", split)
                return
            else:
                await _say(writer, b"502 5.5.2 no\r\n")

    return talk


class _Flags(TypedDict, total=False):
    """SmtpConfig's switches."""

    secure: bool
    ignore_tls: bool
    require_tls: bool
    allow_plaintext_auth: bool
    relay_check: bool


async def _check(
    port: int, contexts: SslContexts, seconds: float = 5.0, **config: Unpack[_Flags]
) -> CheckResult:
    job = make_job("smtp", port, SmtpConfig(**config), hostname="127.0.0.1", timeout=seconds)
    return await run_check(job, "agent-t", True, contexts, clock=WALL)


async def test_replies_split_into_single_bytes_give_the_same_facts(
    ssl_contexts: SslContexts,
) -> None:
    lines = ["edge.test hello", "PIPELINING", "SIZE 1000", "x-split a b"]
    results = []
    for split in (False, True):
        async with Dialogue(_server(lambda: _ehlo(lines), split)) as peer:
            results.append(await _check(peer.port, ssl_contexts))
    whole, split_up = results
    assert whole.status == split_up.status == "up", (whole.message, split_up.message)
    assert whole.banner == split_up.banner == "edge.test ESMTP"
    assert whole.capabilities == split_up.capabilities == ["PIPELINING", "SIZE 1000", "X-SPLIT A B"]


async def test_a_long_ehlo_list_is_bounded_in_the_result_and_not_kept(
    ssl_contexts: SslContexts,
) -> None:
    """~24 KB of extensions (aiosmtplib reads up to 32 KiB): the result keeps
    CAPABILITIES_MAX, and the client's memo keeps nothing of it."""
    lines = ["edge.test"] + [f"X-EXT-{i:04d} {'p' * 4}" for i in range(1500)]
    async with Dialogue(_server(lambda: _ehlo(lines))) as peer:
        result = await _check(peer.port, ssl_contexts)
    assert result.status == "up", result.message
    assert result.capabilities is not None and len(result.capabilities) == CAPABILITIES_MAX
    assert result.capabilities[0] == "X-EXT-0000 PPPP"
    assert not any("X-EXT-0000" in text for text in client._EHLO_MEMO)


async def test_an_ehlo_reply_past_the_librarys_bound_is_a_protocol_failure(
    ssl_contexts: SslContexts,
) -> None:
    """An endless multi-line reply is cut at aiosmtplib's 32 KiB, well within the deadline."""
    endless = _ehlo(["edge.test"] + [f"X-{i:05d} {'p' * 40}" for i in range(2000)])
    async with Dialogue(_server(lambda: endless)) as peer:
        result = await _check(peer.port, ssl_contexts, seconds=30)
    assert result.error_kind == "protocol", result.message
    assert "Response too long" in result.message


async def test_a_server_that_stalls_after_starttls_220_is_a_timeout_during_tls(
    ssl_contexts: SslContexts,
) -> None:
    answered = asyncio.Event()

    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        answered.set()
        await reader.read(65536)  # the ClientHello, never answered
        await asyncio.Event().wait()

    ehlo = _ehlo(["edge.test", "STARTTLS", "SIZE 10"])
    async with Dialogue(_server(lambda: ehlo, on_starttls=stall)) as peer:
        result = await _check(peer.port, ssl_contexts, seconds=0.8)
    assert answered.is_set()
    assert (result.error_kind, result.message) == ("timeout", "no answer within 0.8s (during tls)")
    assert result.capabilities_before_tls == ["SIZE 10", "STARTTLS"]
    assert result.tls is None


async def test_a_server_that_hangs_up_mid_handshake_fails_the_check_at_once(
    ssl_contexts: SslContexts,
) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(5)  # the start of the ClientHello
        writer.transport.abort()

    ehlo = _ehlo(["edge.test", "STARTTLS"])
    async with Dialogue(_server(lambda: ehlo, on_starttls=hang_up)) as peer:
        result = await _check(peer.port, ssl_contexts, seconds=30)
    assert (result.error_kind, result.message) == (
        "tls",
        f"connection lost during the TLS handshake with 127.0.0.1 port {peer.port}:"
        " Connection reset while upgrading transport",
    )
    assert result.tls is None and result.phases.tls_ms is None


async def test_ehlo_and_helo_both_refused_is_protocol(ssl_contexts: SslContexts) -> None:
    async def talk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _say(writer, b"220 old.test\r\n")
        while line := await reader.readline():
            await _say(writer, b"554 5.7.1 go away\r\n" if line[:4].upper() != b"QUIT" else b"")

    async with Dialogue(talk) as peer:
        result = await _check(peer.port, ssl_contexts)
    assert result.error_kind == "protocol"
    assert result.message == "HELO refused: 554 5.7.1 go away"


async def test_a_server_that_changes_its_extensions_is_reported_anew(
    ssl_contexts: SslContexts, ca: trustme.CA
) -> None:
    """The same list under another first line is the same list; a changed list is parsed
    again, both before and after STARTTLS."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    said = {"before": ["edge.test", "STARTTLS", "SIZE 10"], "after": ["edge.test", "SIZE 10"]}

    async def secured(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await writer.start_tls(server_ctx)
        await _server(lambda: _ehlo(said["after"]), greet=False)(reader, writer)

    async def talk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _server(lambda: _ehlo(said["before"]), on_starttls=secured)(reader, writer)

    async with Dialogue(talk) as peer:
        first = await _check(peer.port, ssl_contexts)
        said["before"] = ["other.test greets you", "STARTTLS", "SIZE 10"]
        renamed = await _check(peer.port, ssl_contexts)
        said["before"] = ["edge.test", "STARTTLS", "SIZE 20", "8BITMIME"]
        said["after"] = ["edge.test", "SIZE 20", "AUTH PLAIN"]
        changed = await _check(peer.port, ssl_contexts)
    for result in (first, renamed, changed):
        assert result.status == "up", result.message
        assert result.tls is not None and result.tls.mode == "starttls"
    assert first.capabilities_before_tls == renamed.capabilities_before_tls
    assert first.capabilities_before_tls == ["SIZE 10", "STARTTLS"]
    assert first.capabilities == renamed.capabilities == ["SIZE 10"]
    assert changed.capabilities_before_tls == ["8BITMIME", "SIZE 20", "STARTTLS"]
    assert changed.capabilities == ["AUTH PLAIN", "SIZE 20"]


class _Secured(LoopbackServer):
    """TLS from the first byte (a certificate for `mail.example.test`); then runs `talk`."""

    def __init__(self, ctx: ssl.SSLContext, talk: Talk) -> None:
        super().__init__(ctx)
        self.talk = talk

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.talk(reader, writer)


async def _hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.transport.abort()


@pytest.mark.parametrize(
    ("how", "talk", "phase"),
    [
        ("hangs up after the handshake", _hang_up, "greeting"),
        ("refuses the connection", None, "connect"),
    ],
)
async def test_an_smtps_failure_names_the_host_and_port_dialled_and_the_name_checked(
    how: str, talk: Talk | None, phase: str, ca: trustme.CA, ssl_contexts: SslContexts
) -> None:
    """The server's certificate is checked for `mail.example.test` (tlsOptions.servername)
    while 127.0.0.1 is dialled: a failure names both, and the port, never aiosmtplib's
    "Error connecting to <the name checked> on port None" (it is handed a connected socket)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("mail.example.test").configure_cert(ctx)
    config = SmtpConfig(secure=True, tls_options=TlsOptions(servername="mail.example.test"))
    if talk is None:
        with socket.socket() as closed:  # a port nobody listens on: connections refused
            closed.bind(("127.0.0.1", 0))
            port = closed.getsockname()[1]
        result = await _run(port, config, ssl_contexts)
    else:
        async with _Secured(ctx, talk) as peer:
            port = peer.port
            result = await _run(port, config, ssl_contexts)
    assert result.status == "down", how
    assert "None" not in result.message and "Error connecting" not in result.message
    assert f"127.0.0.1 port {port}" in result.message, result.message
    # The name checked is named once a connection stands (none was checked on a refusal).
    named = "certificate name mail.example.test" in result.message
    assert named == (phase != "connect"), result.message
    assert phase in result.message or result.error_kind == "refused", result.message


async def _run(port: int, config: SmtpConfig, contexts: SslContexts) -> CheckResult:
    job = make_job("smtp", port, config, hostname="127.0.0.1", timeout=5)
    return await run_check(job, "agent-t", True, contexts, clock=WALL)
