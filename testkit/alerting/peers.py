"""Real peers on loopback: an aiosmtpd relay that keeps what it receives, and a tiny HTTP
server standing in for an SMS gateway's webhook."""

import asyncio
import json
import ssl
from email import message_from_bytes, policy
from email.message import EmailMessage
from types import TracebackType
from typing import Any, Self

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


class _Keep:
    """Keeps what it accepts. `refuse`: address → the RCPT reply that refuses it; `script`:
    replies for the next DATA commands, each given once its event (if any) is set (`holding`
    is set while one waits)."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.raw: list[bytes] = []
        self.refuse: dict[str, str] = {}
        self.script: list[tuple[asyncio.Event | None, str]] = []
        self.holding = asyncio.Event()

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        if self.script:
            event, reply = self.script.pop(0)
            if event is not None:
                self.holding.set()
                await event.wait()
                self.holding.clear()
            if not reply.startswith("250"):
                return reply
        self.raw.append(envelope.content)
        msg = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append(msg)
        return "250 OK queued"


class Relay:
    """An SMTP relay on `port` (a free one by default); `starttls` offers STARTTLS, `tls`
    speaks TLS from the first byte (smtps), `users` requires AUTH. `start()` and `stop()` may be
    called repeatedly on the same port."""

    def __init__(
        self,
        port: int,
        *,
        starttls: ssl.SSLContext | None = None,
        tls: ssl.SSLContext | None = None,
        users: dict[str, str] | None = None,
    ) -> None:
        self.port = port
        self.starttls = starttls
        self.tls = tls
        self.users = users
        self.keep = _Keep()
        self.logins: list[str] = []
        self._server: asyncio.Server | None = None
        self._protocols: list[SMTP] = []

    @property
    def messages(self) -> list[EmailMessage]:
        return self.keep.messages

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and self.users is not None
            and self.users.get(data.login.decode()) == data.password.decode()
        )
        if ok:
            self.logins.append(data.login.decode())
        return AuthResult(success=ok, handled=False)

    def _protocol(self) -> SMTP:
        proto = SMTP(
            self.keep,
            hostname="relay.test",
            tls_context=self.starttls,
            authenticator=self._authenticate if self.users is not None else None,
            auth_require_tls=self.starttls is not None,
            loop=asyncio.get_running_loop(),
        )
        self._protocols.append(proto)
        return proto

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol, "127.0.0.1", self.port, ssl=self.tls
        )

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for proto in self._protocols:
            if proto.transport is not None:
                proto.transport.close()
            if proto._handler_coroutine is not None:
                proto._handler_coroutine.cancel()
        await self._server.wait_closed()
        self._server = None


class SmsGateway:
    """Answers every POST with `status` and keeps (path, headers, JSON body); with `body_mib`,
    the answer carries that many MiB, sent until the client goes (`sent` counts them)."""

    def __init__(self, status: int = 200, body_mib: int = 0) -> None:
        self.status = status
        self.body_mib = body_mib
        self.sent = 0
        self.requests: list[tuple[str, dict[str, str], Any]] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    @property
    def bodies(self) -> list[Any]:
        return [body for _, _, body in self.requests]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            _, path, _ = lines[0].split(" ", 2)
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(":") for line in lines[1:] if line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append((path, headers, json.loads(body)))
            reason = "OK" if self.status < 400 else "Error"
            writer.write(
                f"HTTP/1.1 {self.status} {reason}\r\nContent-Length: {self.body_mib << 20}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            await writer.drain()
            block = b"x" * (1 << 20)
            for _ in range(self.body_mib):
                writer.write(block)
                await writer.drain()
                self.sent += len(block)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went
        finally:
            writer.close()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/sms"
