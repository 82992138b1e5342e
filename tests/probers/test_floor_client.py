"""The exporter benchmark's floor client (testkit/floor.py) against a real aiosmtpd server on
loopback: it completes each exchange, verifies as the agent's context does, and reports a
session that fails instead of hanging on it."""

import asyncio
import socket
import ssl

import pytest

from agent.probers.tls import SslContexts
from testkit import floor
from testkit.peers.smtp import SmtpPeer

EHLO = (b"EHLO floor\r\n", b"250 ")
QUIT = (b"QUIT\r\n", b"221 ")
STARTTLS = floor.Dialogue(
    ((b"", b"220 "), EHLO, (b"STARTTLS\r\n", b"220 ")), tls=True, secured=(EHLO, QUIT)
)
SMTPS = floor.Dialogue(tls=True, implicit=True, secured=((b"", b"220 "), EHLO, QUIT))
PLAIN = floor.Dialogue(((b"", b"220 "), EHLO, QUIT))


async def _run(
    dialogue: floor.Dialogue, ctx: ssl.SSLContext, port: int, name: str = "localhost"
) -> list[str]:
    # The floor blocks on its own epoll: in a thread, while the peer serves on this loop.
    return await asyncio.to_thread(floor.run, dialogue, ctx, port, name, 30, 7)


async def test_the_floor_completes_plain_starttls_and_implicit_tls_exchanges(
    ssl_contexts: SslContexts, server_tls: ssl.SSLContext
) -> None:
    ctx = ssl_contexts.verified
    async with SmtpPeer(starttls=server_tls) as peer:
        assert await _run(PLAIN, ctx, peer.port) == []
        assert await _run(STARTTLS, ctx, peer.port) == []
    async with SmtpPeer(implicit_tls=server_tls) as peer:
        assert await _run(SMTPS, ctx, peer.port) == []


async def test_the_floor_refuses_a_certificate_for_another_name_or_from_an_unknown_ca(
    ssl_contexts: SslContexts, server_tls: ssl.SSLContext, untrusted_tls: ssl.SSLContext
) -> None:
    async with SmtpPeer(implicit_tls=server_tls) as peer:
        failed = await _run(SMTPS, ssl_contexts.verified, peer.port, "wrong.invalid")
    assert len(failed) == 30 and all("CERTIFICATE_VERIFY_FAILED" in f for f in failed)
    async with SmtpPeer(starttls=untrusted_tls) as peer:
        failed = await _run(STARTTLS, ssl_contexts.verified, peer.port)
    assert len(failed) == 30 and all("CERTIFICATE_VERIFY_FAILED" in f for f in failed)


async def test_a_session_the_server_ends_early_is_a_failure_not_a_hang(
    ssl_contexts: SslContexts,
) -> None:
    never = floor.Dialogue(((b"", b"220 "), (b"QUIT\r\n", b"999 ")))
    async with SmtpPeer() as peer:
        failed = await _run(never, ssl_contexts.verified, peer.port)
    assert len(failed) == 30 and all(f.startswith("Refused: closed before b'999 '") for f in failed)


async def test_a_refused_connection_is_a_failure(ssl_contexts: SslContexts) -> None:
    async with SmtpPeer() as peer:
        port = peer.port
    failed = await _run(PLAIN, ssl_contexts.verified, port)
    assert len(failed) == 30 and all(f.startswith("ConnectionRefusedError") for f in failed)


async def test_a_server_that_says_nothing_fails_every_session_left_after_the_silence(
    ssl_contexts: SslContexts, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(floor, "SILENCE_S", 0.3)
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)  # accepts, never answers
    with listener:
        port = listener.getsockname()[1]
        failed = await _run(PLAIN, ssl_contexts.verified, port)
    assert failed == ["no answer within 0.3 s"] * 7
