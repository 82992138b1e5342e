"""Probers against hostile servers on loopback: answers without end (a line, a literal, lines
forever), answers the session cannot parse, refusals echoing a secret at a cut's edge, servers
silent, dripping a byte at a time, hanging up or stalling after STARTTLS, a chain of hundreds of
certificates. Each check ends by its deadline with a result carrying an error kind, the bytes
the agent took stay bounded (counted at the server: what it managed to write before the agent
hung up), and the result's message is at most MESSAGE_MAX characters. RSS and event-loop lag
beside normal servers: `python -m bench hostile-mail`."""

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec
import pytest
import trustme

from agent.probers.certs import SANS_MAX
from agent.probers.imap import BOUNDS, MAILBOX_BOUNDS
from agent.probers.roundtrip import IMAP_NEWEST, TOP_MAX
from agent.probers.run import MESSAGE_MAX, run_check
from agent.probers.tls import SslContexts, build_ssl_contexts
from shared.clock import WALL
from shared.mailclient.sasl import oauth2_initial
from shared.messages import (
    CheckResult,
    ImapPopConfig,
    MonitorType,
    RoundTripConfig,
    RoundTripReceive,
    SmtpAuth,
    SmtpConfig,
)
from shared.secret import SECRET_MASK, Secret
from testkit.peers.base import LoopbackServer
from testkit.peers.imap import ImapPeer
from testkit.peers.jobs import make_job

Talk = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
CHUNK = b"A" * 65536


def _socket_slack() -> int:
    """What the kernel's socket buffers may hold beyond what the agent read: the agent's
    receive buffer and the server's send buffer at their autotuning maxima."""
    most = [
        int(Path(f"/proc/sys/net/ipv4/{name}").read_text().split()[2])
        for name in ("tcp_rmem", "tcp_wmem")
    ]
    return sum(most)


SOCKET_SLACK = _socket_slack()


class Hostile(LoopbackServer):
    """Runs `talk` on each connection; `sent` counts the bytes it wrote."""

    def __init__(
        self,
        talk: Callable[["Hostile", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(ssl_context)
        self.talk = talk
        self.sent = 0
        self.protocol = "imap"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.talk(self, reader, writer)

    async def say(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        self.sent += len(data)
        await writer.drain()

    async def forever(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        while True:
            await self.say(writer, data)


async def _check(
    protocol: MonitorType, port: int, contexts: SslContexts, seconds: float = 20.0, **config: object
) -> CheckResult:
    job = make_job(
        protocol,
        port,
        ImapPopConfig(protocol=protocol, **config),  # type: ignore[arg-type]
        timeout=seconds,
    )
    return await run_check(job, "agent-t", True, contexts, clock=WALL)


HostileTalk = Callable[["Hostile", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _pop3(reply: Callable[[bytes], bytes | None]) -> HostileTalk:
    """A POP3 server: greets, answers each line with `reply(line)`, else CAPA with -ERR and
    anything else with +OK."""

    async def talk(peer: Hostile, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await peer.say(w, b"+OK hi\r\n")
        while line := await r.readline():
            said = reply(line)
            if said is None:
                said = b"-ERR no\r\n" if line.upper().startswith(b"CAPA") else b"+OK\r\n"
            await peer.say(w, said)

    return talk


async def _look(protocol: str, port: int, contexts: SslContexts, seconds: float) -> CheckResult:
    """A round trip's look (`lookOnly`: nothing sent) in the mailbox at `port`."""
    receive = RoundTripReceive(
        protocol=protocol,  # type: ignore[arg-type]
        hostname="127.0.0.1",
        port=port,
        user="probe",
        password=Secret("s3cret"),
        allow_plaintext_auth=True,
    )
    cfg = RoundTripConfig(to="probe@mail.test", receive=receive)
    job = make_job("roundtrip", port, cfg, timeout=seconds, look_only="delivery_backoff")
    return await run_check(job, "agent-t", True, contexts, clock=WALL)


async def _endless_greeting(
    peer: Hostile, _: asyncio.StreamReader, w: asyncio.StreamWriter
) -> None:
    await peer.say(w, b"* OK ")
    await peer.forever(w, CHUNK)


async def _endless_literal(peer: Hostile, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    await peer.say(w, b"* OK hi\r\n")
    await r.readline()  # CAPABILITY
    await peer.say(w, b"* CAPABILITY {4294967295}\r\n")
    await peer.forever(w, CHUNK)


async def _endless_lines(peer: Hostile, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    await peer.say(w, b"* OK hi\r\n")
    await r.readline()  # CAPABILITY
    await peer.forever(w, b"* OK x\r\n" * 8192)


@pytest.mark.parametrize(
    "talk", [_endless_greeting, _endless_literal, _endless_lines], ids=lambda t: t.__name__[1:]
)
async def test_an_imap_answer_without_end_is_cut_at_the_session_budget(
    talk: Callable[[Hostile, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    ssl_contexts: SslContexts,
) -> None:
    """A greeting line without CRLF, a literal of 4 GiB, untagged lines that never end: the
    agent drops the connection past BOUNDS.answer_max bytes, a `protocol` failure, long before the
    deadline, instead of buffering what the server sends until then."""
    async with Hostile(talk) as peer:
        result = await _check("imap", peer.port, ssl_contexts, tls=False)
    print(f"\n{talk.__name__}: server wrote {peer.sent} bytes; {result.message!r}")
    assert result.error_kind == "protocol", result.message
    assert " than " in result.message  # "a line longer than", "more than ... in one answer"
    assert peer.sent <= BOUNDS.answer_max + SOCKET_SLACK


async def _one_long_line(peer: Hostile, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    await peer.say(w, b"* OK hi\r\n")
    tag = (await r.readline()).split(b" ")[0]  # CAPABILITY
    long = b"* CAPABILITY IMAP4rev1 " + b"X" * (2 * BOUNDS.line_max) + b"\r\n"
    await peer.say(w, long + tag + b" OK done\r\n")
    await r.read()


@pytest.mark.parametrize("repeat", range(5))
async def test_an_imap_line_past_its_bound_is_cut_however_it_was_read(
    repeat: int, ssl_contexts: SslContexts
) -> None:
    """One CAPABILITY line of 128 KiB, written at once and ended: within the answer's byte
    bound, past the line bound. Whether it reaches the agent in one read or several, the check
    is a `protocol` failure naming the line bound (five times, as reads are cut anew)."""
    async with Hostile(_one_long_line) as peer:
        result = await _check("imap", peer.port, ssl_contexts, tls=False)
    assert result.error_kind == "protocol", result.message
    assert result.message.endswith(f"a line longer than {BOUNDS.line_max} bytes"), result.message


async def _imap_login(
    peer: Hostile, r: asyncio.StreamReader, w: asyncio.StreamWriter
) -> bytes | None:
    """Greets with its capabilities, answers CAPABILITY; the tag of the LOGIN that follows."""
    await peer.say(w, b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n")
    while line := await r.readline():
        tag, verb = line.split()[:2]
        if verb.upper() == b"LOGIN":
            return bytes(tag)
        await peer.say(w, b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + b" OK done\r\n")
    return None


async def test_imap_a_fin_in_the_middle_of_an_answer_is_a_protocol_failure(
    ssl_contexts: SslContexts,
) -> None:
    """The server hangs up in the middle of its answer to LOGIN: the check says so at once,
    not `timeout` at its deadline."""

    async def talk(peer: Hostile, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await _imap_login(peer, r, w)
        await peer.say(w, b"* OK half")
        w.close()

    async with Hostile(talk) as peer:
        result = await _check(
            "imap",
            peer.port,
            ssl_contexts,
            seconds=60,
            tls=False,
            user="alice",
            password=Secret("s3cret"),
            allow_plaintext_auth=True,
        )
    assert result.error_kind == "protocol", result.message
    assert (result.response_time_ms or 0) < 60_000


async def test_imap_a_refusal_of_megabytes_gives_a_message_of_at_most_message_max(
    ssl_contexts: SslContexts,
) -> None:
    """Untagged lines of bidi overrides and escapes, then a NO of 50 KB (an answer within the
    IMAP bounds): the message is cut at MESSAGE_MAX characters."""

    async def talk(peer: Hostile, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        tag = await _imap_login(peer, r, w)
        assert tag is not None
        for _ in range(4):
            await peer.say(w, b"* NO " + b"\xe2\x80\xae\x1b[31m\x00" * 2000 + b"\r\n")
        await peer.say(w, tag + b" NO " + b"x" * 50_000 + b"\r\n")
        await r.readline()

    async with Hostile(talk) as peer:
        result = await _check(
            "imap",
            peer.port,
            ssl_contexts,
            tls=False,
            user="alice",
            password=Secret("s3cret"),
            allow_plaintext_auth=True,
        )
    assert result.error_kind == "auth", result.message[:200]
    assert len(result.message) <= MESSAGE_MAX


@pytest.mark.parametrize("stat", [b"+OK", b"+OK " + b"9" * 5000 + b" 1", b"+OK many"])
async def test_pop3_a_stat_reply_without_a_count_fails_the_mailbox_leg_as_protocol(
    stat: bytes, ssl_contexts: SslContexts
) -> None:
    """A round trip's look reads STAT's count: `+OK` with none, a count of 5,000 digits or a
    word are the server's fault (`protocol`), not the agent's (`internal`)."""

    talk = _pop3(lambda line: stat + b"\r\n" if line.upper().startswith(b"STAT") else None)
    async with Hostile(talk) as peer:
        result = await _look("pop3", peer.port, ssl_contexts, 10)
    assert result.error_kind == "protocol", result.message[:200]
    assert result.message.startswith("mailbox leg: STAT"), result.message[:200]


async def test_pop3_a_refusal_echoing_the_password_across_a_cut_shows_none_of_it(
    ssl_contexts: SslContexts,
) -> None:
    """The password echoed where the message used to be cut before masking: no part of it."""
    password = "Zq7-unguessable-Wx9"

    def echo(line: bytes) -> bytes | None:
        if not line.upper().startswith(b"PASS"):
            return None
        return b"-ERR " + b"p" * 190 + b" " + line.split()[1] + b"\r\n"

    talk = _pop3(echo)
    async with Hostile(talk) as peer:
        result = await _check(
            "pop3",
            peer.port,
            ssl_contexts,
            tls=False,
            user="alice",
            password=Secret(password),
            allow_plaintext_auth=True,
        )
    assert result.error_kind == "auth", result.message
    assert password[:4] not in result.message, result.message


async def test_smtp_an_error_challenge_echoing_the_xoauth2_response_shows_none_of_the_token(
    ssl_contexts: SslContexts,
) -> None:
    """The server sends back the client's XOAUTH2 initial response (base64 of the user and the
    token) as its error challenge: the result shows no part of it, masked whole before any
    cut (it was cut to 120 characters first, leaving the token's first ~60 bytes readable)."""
    token = "ya29." + "Tk3n" * 60
    initial = oauth2_initial("XOAUTH2", "alice@example.test", token)

    async def talk(peer: Hostile, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await peer.say(w, b"220 hostile ESMTP\r\n")
        while line := await r.readline():
            verb = line.split()[0].upper() if line.split() else b""
            if verb == b"EHLO":
                await peer.say(w, b"250-hostile\r\n250 AUTH XOAUTH2\r\n")
            elif verb == b"AUTH":
                await peer.say(w, b"334 " + line.split()[2] + b"\r\n")
                await r.readline()
                await peer.say(w, b"535 5.7.8 no\r\n")
            else:
                await peer.say(w, b"221 bye\r\n")
                return

    auth = SmtpAuth(user="alice@example.test", mechanism="XOAUTH2", access_token=Secret(token))
    config = SmtpConfig(auth=auth, allow_plaintext_auth=True)
    async with Hostile(talk) as peer:
        job = make_job("smtp", peer.port, config, timeout=10)
        result = await run_check(job, "agent-t", True, ssl_contexts, clock=WALL)
    assert result.error_kind == "auth", result.message
    assert SECRET_MASK in result.message, result.message
    assert initial[40:56] not in result.message, result.message
    assert token[5:21] not in result.message


async def test_imap_a_search_finding_5000_messages_fetches_the_newest_imap_newest(
    ssl_contexts: SslContexts,
) -> None:
    """A round trip's look whose SEARCH answers 5,000 UIDs fetches the headers of the newest
    IMAP_NEWEST only (100,000, a line past MAILBOX_BOUNDS, is a `protocol` failure)."""
    fetched: list[bytes] = []

    async def talk(peer: Hostile, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await peer.say(w, b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n")
        while line := await r.readline():
            tag, verb = line.split()[:2]
            verb = verb.upper()
            if verb == b"UID" and line.split()[2].upper() == b"SEARCH":
                uids = " ".join(str(u) for u in range(1, 5001)).encode()
                await peer.say(w, b"* SEARCH " + uids + b"\r\n")
            elif verb == b"UID":
                fetched.append(line.split()[3])
            elif verb == b"LOGOUT":
                await peer.say(w, b"* BYE\r\n" + tag + b" OK bye\r\n")
                return
            elif verb == b"CAPABILITY":
                await peer.say(w, b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n")
            await peer.say(w, tag + b" OK done\r\n")

    async with Hostile(talk) as peer:
        result = await _look("imap", peer.port, ssl_contexts, 10)
    assert result.error_kind == "delivery_backoff", result.message
    assert len(fetched) == 1, fetched
    uids = fetched[0].split(b",")
    assert len(uids) == IMAP_NEWEST and uids[-1] == b"5000", uids[:3]


GREETINGS = {"smtp": b"220 slow.test ESMTP\r\n", "imap": b"* OK slow\r\n", "pop3": b"+OK slow\r\n"}


async def _silent(peer: Hostile, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    await r.read()  # accepts, reads, never speaks


async def _fin_in_greeting(peer: Hostile, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    await peer.say(w, GREETINGS[peer.protocol][:5])
    w.close()


async def _drip(peer: Hostile, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    """One byte of a greeting at a time, within any read's time, never done by the deadline."""
    for byte in GREETINGS[peer.protocol][:-2] + b"x" * 1000:
        await peer.say(w, bytes([byte]))
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "implicit-tls"])
@pytest.mark.parametrize(
    ("talk", "kind"),
    [(_silent, "timeout"), (_drip, "timeout"), (_fin_in_greeting, None)],
    ids=["silent", "slowloris", "fin"],
)
@pytest.mark.parametrize("protocol", ["smtp", "imap", "pop3"])
async def test_a_server_silent_slow_or_hanging_up_ends_the_check_with_a_kind(
    protocol: MonitorType,
    talk: Callable[[Hostile, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    kind: str | None,
    tls: bool,
    ssl_contexts: SslContexts,
    server_tls: ssl.SSLContext,
) -> None:
    """Accepting and never speaking (with implicit TLS: a handshake never finished, the server
    never answering the ClientHello), a greeting one byte at a time past the deadline, a FIN
    in the middle of the greeting: a result with an error kind by the deadline."""
    over = server_tls if tls and talk is not _silent else None
    async with Hostile(talk, over) as peer:
        peer.protocol = protocol
        if protocol == "smtp":
            job = make_job(
                "smtp", peer.port, SmtpConfig(secure=tls), hostname="localhost", timeout=0.5
            )
        else:
            config = ImapPopConfig(protocol=protocol, tls=tls)  # type: ignore[arg-type]
            job = make_job(protocol, peer.port, config, hostname="localhost", timeout=0.5)
        result = await run_check(job, "agent-t", True, ssl_contexts, clock=WALL)
    expected = kind or "protocol"  # a FIN after the handshake is no TLS failure
    assert result.error_kind == expected, (result.error_kind, result.message)


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
async def test_a_stall_after_the_ok_to_starttls_ends_the_check_at_its_deadline(
    protocol: MonitorType, ssl_contexts: SslContexts
) -> None:
    """The server agrees to STARTTLS / STLS and then never answers the ClientHello."""

    async def talk(peer: Hostile, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        if protocol == "imap":
            await peer.say(w, b"* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n")
        else:
            await peer.say(w, b"+OK hi\r\n")
        while line := await r.readline():
            words = line.split()
            if protocol == "pop3" and words[0].upper() == b"CAPA":
                await peer.say(w, b"+OK\r\nSTLS\r\nUSER\r\n.\r\n")
            elif protocol == "pop3" and words[0].upper() == b"STLS":
                await peer.say(w, b"+OK go\r\n")
                await r.read()
            elif words[1].upper() == b"CAPABILITY":
                await peer.say(w, b"* CAPABILITY IMAP4rev1 STARTTLS\r\n" + words[0] + b" OK\r\n")
            elif words[1].upper() == b"STARTTLS":
                await peer.say(w, words[0] + b" OK go\r\n")
                await r.read()

    async with Hostile(talk) as peer:
        config = ImapPopConfig(protocol=protocol, tls=False)  # type: ignore[arg-type]
        job = make_job(protocol, peer.port, config, hostname="localhost", timeout=0.5)
        result = await run_check(job, "agent-t", True, ssl_contexts, clock=WALL)
    assert result.error_kind == "timeout", result.message
    assert "(during tls)" in result.message


def _chain_context(tmp_path: Path, names: int, junk: int) -> tuple[ssl.SSLContext, str]:
    """A server context whose certificate lists `names` names, its chain followed by `junk`
    unrelated CA certificates; and the root to trust."""
    root = trustme.CA()
    leaf = root.issue_cert("localhost", *(f"n{i}.example.test" for i in range(names)))
    chain = b"".join(pem.bytes() for pem in leaf.cert_chain_pems)
    chain += b"".join(trustme.CA().cert_pem.bytes() for _ in range(junk))
    (tmp_path / "chain.pem").write_bytes(chain)
    (tmp_path / "key.pem").write_bytes(leaf.private_key_pem.bytes())
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tmp_path / "chain.pem", tmp_path / "key.pem")
    return ctx, root.cert_pem.bytes().decode()


@pytest.mark.parametrize(("names", "junk", "kind"), [(2000, 60, None), (10, 400, "tls")])
async def test_a_chain_of_hundreds_of_certificates_or_thousands_of_names_is_bounded(
    names: int, junk: int, kind: str | None, tmp_path: Path
) -> None:
    """2,000 names and 60 certificates more (100 KB): the result keeps SANS_MAX names; a chain
    of 400 certificates (400 KB): OpenSSL refuses it past its 100 KB (`tls`). Either way the
    encoded result stays small."""
    ctx, root = _chain_context(tmp_path, names, junk)
    async with ImapPeer(ssl_context=ctx) as peer:
        config = ImapPopConfig(protocol="imap", tls=True)
        job = make_job("imap", peer.port, config, hostname="localhost", timeout=5)
        result = await run_check(job, "agent-t", True, build_ssl_contexts(cadata=root), clock=WALL)
    assert result.error_kind == kind, result.message
    if kind is None:
        assert result.tls is not None and len(result.tls.cert_sans or []) == SANS_MAX
    assert len(msgspec.json.encode(result)) < 8 * 1024


async def _pop3_top_forever(
    peer: Hostile, r: asyncio.StreamReader, w: asyncio.StreamWriter
) -> None:
    """A mailbox of 100,000 messages whose TOP answer has no final "."."""
    await peer.say(w, b"+OK hi\r\n")
    while line := await r.readline():
        verb = line.split()[0].upper()
        if verb == b"CAPA":
            await peer.say(w, b"-ERR no\r\n")
        elif verb == b"STAT":
            await peer.say(w, b"+OK 100000 999999999\r\n")
        elif verb == b"TOP":
            await peer.say(w, b"+OK\r\n")
            await peer.forever(w, b"X-Header: " + b"h" * 100 + b"\r\n")
        else:
            await peer.say(w, b"+OK\r\n")


async def _imap_fetch_forever(
    peer: Hostile, r: asyncio.StreamReader, w: asyncio.StreamWriter
) -> None:
    """A SEARCH finding one message, whose FETCH answer is a literal of 4 GiB."""
    await peer.say(w, b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n")
    while line := await r.readline():
        tag, verb = line.split()[:2]
        command = line.split()[2].upper() if verb.upper() == b"UID" else verb.upper()
        if command == b"SEARCH":
            await peer.say(w, b"* SEARCH 7\r\n")
        elif command == b"FETCH":
            await peer.say(w, b"* 1 FETCH (UID 7 BODY[HEADER] {4294967295}\r\n")
            await peer.forever(w, CHUNK)
        elif command == b"CAPABILITY":
            await peer.say(w, b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n")
        await peer.say(w, tag + b" OK done\r\n")


@pytest.mark.parametrize(
    ("protocol", "talk", "bound"),
    [
        ("pop3", _pop3_top_forever, TOP_MAX),
        ("imap", _imap_fetch_forever, MAILBOX_BOUNDS.answer_max),
    ],
    ids=["pop3-top-without-end", "imap-fetch-literal-4gib"],
)
async def test_a_round_trips_mailbox_answer_without_end_is_cut(
    protocol: str,
    talk: Callable[[Hostile, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    bound: int,
    ssl_contexts: SslContexts,
) -> None:
    """The mailbox leg reads a message's header: an answer without end is cut at its bound,
    the leg a `protocol` failure, the bytes taken bounded."""
    async with Hostile(talk) as peer:
        result = await _look(protocol, peer.port, ssl_contexts, 20)
    print(f"\n{protocol}: server wrote {peer.sent} bytes; {result.message!r}")
    assert result.error_kind == "protocol", result.message
    assert result.message.startswith("mailbox leg: "), result.message
    assert peer.sent <= bound + SOCKET_SLACK


async def test_imap_an_answer_tagged_for_no_command_logs_no_password(
    ssl_contexts: SslContexts, caplog: pytest.LogCaptureFixture
) -> None:
    """A server answering LOGIN with another tag: aioimaplib raised from data_received an
    Abort naming the command waiting (the LOGIN, password and all), which asyncio logged at
    ERROR with its traceback. The check ends `protocol`, and no log line holds the password."""
    password = "Zq7-unguessable-Wx9"

    async def talk(peer: Hostile, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await _imap_login(peer, r, w)
        await peer.say(w, b"ZZZ9 NO nope\r\n")
        await r.read()

    with caplog.at_level(logging.DEBUG):
        async with Hostile(talk) as peer:
            result = await _check(
                "imap",
                peer.port,
                ssl_contexts,
                seconds=10,
                tls=False,
                user="alice",
                password=Secret(password),
                allow_plaintext_auth=True,
            )
    logged = caplog.text + " ".join(str(r.exc_info) for r in caplog.records)
    assert password not in logged, logged[:2000]
    assert result.error_kind == "protocol", result.message
