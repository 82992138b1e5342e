"""An aiosmtpd server in the test's own event loop (no thread): plain, STARTTLS or SMTPS."""

import asyncio
import ssl
from collections.abc import Callable
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Lockout:
    """A lockout policy as fail2ban or mailcow run one: `max_failures` rejected logins within
    `window` ban the account for `ban`; while banned every login is refused, right or wrong.
    Times come from `clock`, so a test can play an hour of rounds in seconds."""

    def __init__(
        self,
        clock: Callable[[], datetime],
        max_failures: int,
        window: timedelta = timedelta(minutes=10),
        ban: timedelta = timedelta(minutes=30),
    ) -> None:
        self.clock = clock
        self.max_failures, self.window, self.ban = max_failures, window, ban
        self.failures: list[datetime] = []
        self.bans: list[datetime] = []
        self.logins: list[tuple[datetime, bool]] = []  # (when, accepted)

    def banned(self, now: datetime) -> bool:
        return any(at <= now < at + self.ban for at in self.bans)

    def login(self, ok: bool) -> bool:
        """A login attempt with right (`ok`) or wrong credentials; whether it is accepted."""
        now = self.clock()
        if self.banned(now):
            self.logins.append((now, False))
            return False
        self.logins.append((now, ok))
        if not ok:
            self.failures.append(now)
            if sum(now - at < self.window for at in self.failures) >= self.max_failures:
                self.bans.append(now)
        return ok


class _Handler:
    """No hooks needed: the SMTP probes never send mail."""


class _RecordingSMTP(SMTP):  # type: ignore[misc,unused-ignore]
    """Notes every AUTH command line it receives, and whether TLS protected it."""

    def __init__(self, auths: list[tuple[bool, str]], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.auths = auths

    async def smtp_AUTH(self, arg: str) -> None:
        transport = self.transport
        assert transport is not None
        self.auths.append((transport.get_extra_info("ssl_object") is not None, arg))
        await super().smtp_AUTH(arg)


class SmtpPeer:
    """`implicit_tls` serves SMTPS; `starttls` offers STARTTLS; `users` enables AUTH, which
    aiosmtpd offers only over TLS unless `auth_in_clear`. `auths` holds (over TLS?, arguments)
    of each AUTH command the server received, whether it accepted it or not."""

    def __init__(
        self,
        *,
        starttls: ssl.SSLContext | None = None,
        implicit_tls: ssl.SSLContext | None = None,
        users: dict[str, str] | None = None,
        auth_in_clear: bool = False,
        handler: object | None = None,
        backlog: int = 100,
        lockout: Lockout | None = None,
    ) -> None:
        self.starttls = starttls
        self.implicit_tls = implicit_tls
        self.users = users if users is not None else {"alice": "s3cret"}
        self.auth_in_clear = auth_in_clear
        # What takes the mail (testkit.peers.mailstore.DeliveringHandler delivers it).
        self.handler = handler if handler is not None else _Handler()
        self.backlog = backlog  # the listen queue: benches connecting hundreds at once raise it
        self.lockout = lockout
        self.auths: list[tuple[bool, str]] = []
        self.host = "127.0.0.1"
        self.port = 0
        self._server: asyncio.Server | None = None
        self._protocols: list[SMTP] = []

    def at(self, host: str, port: int = 0) -> Self:
        """Listen on `host`:`port` instead of a free loopback port (testkit/netns.py)."""
        self.host, self.port = host, port
        return self

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (
            self.users.get(data.login.decode()) == data.password.decode()
        )
        if self.lockout is not None:
            ok = self.lockout.login(ok)
        return AuthResult(success=ok, handled=False)

    def _protocol(self) -> SMTP:
        proto = _RecordingSMTP(
            self.auths,
            self.handler,
            hostname="mail.test",
            tls_context=self.starttls,
            authenticator=self._authenticate,
            # aiosmtpd only sees STARTTLS as TLS; with implicit TLS allow AUTH anyway.
            auth_require_tls=self.implicit_tls is None and not self.auth_in_clear,
            loop=asyncio.get_running_loop(),
        )
        self._protocols.append(proto)
        return proto

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol, self.host, self.port, ssl=self.implicit_tls, backlog=self.backlog
        )
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
        for proto in self._protocols:
            if proto.transport is not None:
                proto.transport.close()
            if proto._handler_coroutine is not None:
                proto._handler_coroutine.cancel()
        await self._server.wait_closed()
