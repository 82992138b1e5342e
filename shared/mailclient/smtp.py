"""An SMTP session on aiosmtplib, connected on a socket the caller opened: the OAuth2 AUTH
exchange (XOAUTH2, OAUTHBEARER) that keeps the server's error challenge, a password login
that tries a second mechanism only when the server refused the first one itself, and an EHLO
reply parsed once per distinct list of extensions."""

import socket
import ssl
from collections import OrderedDict
from dataclasses import dataclass

import aiosmtplib
from aiosmtplib import SMTPAuthenticationError, SMTPException, SMTPResponse, SMTPStatus
from aiosmtplib.esmtp import parse_esmtp_extensions

# Sent in EHLO/HELO. Computed once: aiosmtplib's default, socket.getfqdn(), may query DNS.
EHLO_NAME = socket.gethostname() or "mailprobe"
# RFC 4954 4: an AUTH command with its initial response may be 12288 octets long; a longer
# one sends the response after the server's empty 334 instead.
AUTH_LINE_MAX = 12288
# Replies that say the mechanism is not usable here, not that the credentials are wrong: the
# next mechanism may be tried (RFC 4954: 504 unrecognised, 534 too weak, 538 needs encryption).
MECHANISM_REFUSED = frozenset({504, 534, 538})


# EHLO replies whose parse is kept, and the longest list of extensions kept, in characters and
# in lines (a real one is a few hundred characters on a dozen lines; aiosmtplib bounds a reply
# at 32 KiB): a server that varies its reply on every session costs the parse it costs without
# the memo, and holds at most ~10 MB here (tests/unit/test_smtp_ehlo_memo.py).
EHLO_MEMO_MAX = 256
EHLO_MEMO_TEXT_MAX = 2048
EHLO_MEMO_LINES_MAX = 64


@dataclass(frozen=True, slots=True)
class Extensions:
    """What an EHLO reply's lines after the first say, as aiosmtplib parses them."""

    pairs: tuple[tuple[str, str], ...]  # (keyword in lower case, parameters), as advertised
    auth_methods: tuple[str, ...]
    advertised: tuple[str, ...]  # "keyword parameters" of each pair


class Client(aiosmtplib.SMTP):
    """aiosmtplib's SMTP whose EHLO reply is parsed by aiosmtplib once per distinct list of
    extensions (a server advertises the same list on every session; the first line, which
    may name the client, is not part of it): the session's state after an EHLO is what
    aiosmtplib's own `last_ehlo_response` leaves (tests/unit/test_smtp_ehlo_memo.py)."""

    _parsed: tuple[SMTPResponse, Extensions] | None = None

    @property
    def extensions(self) -> Extensions | None:
        """The extensions of the EHLO reply in force (None after a reset, as aiosmtplib's
        `esmtp_extensions` is then empty)."""
        parsed = self._parsed
        if parsed is None or parsed[0] is not self.last_ehlo_response:
            return None
        return parsed[1]

    @property
    def last_ehlo_response(self) -> SMTPResponse | None:
        return self._last_ehlo_response

    @last_ehlo_response.setter
    def last_ehlo_response(self, response: SMTPResponse) -> None:
        found = _extensions(response.message)
        # The state aiosmtplib's own setter leaves (5.1), from its parse.
        self._last_ehlo_response = response
        self.esmtp_extensions = dict(found.pairs)
        self.server_auth_methods = list(found.auth_methods)
        self.supports_esmtp = True
        self._parsed = (response, found)


_EHLO_MEMO: OrderedDict[str, Extensions] = OrderedDict()


def _extensions(message: str) -> Extensions:
    """aiosmtplib's parse of the EHLO reply `message`, kept by its lines after the first
    (which the parse skips) while they are within the memo's bounds."""
    text = message.partition("\n")[2]
    found = _EHLO_MEMO.get(text)
    if found is not None:
        _EHLO_MEMO.move_to_end(text)
        return found
    extensions, auth_methods = parse_esmtp_extensions(message)
    found = Extensions(
        pairs=tuple(extensions.items()),
        auth_methods=tuple(auth_methods),
        advertised=tuple(f"{k} {v}" for k, v in extensions.items()),
    )
    if len(text) <= EHLO_MEMO_TEXT_MAX and text.count("\n") < EHLO_MEMO_LINES_MAX:
        _EHLO_MEMO[text] = found
        if len(_EHLO_MEMO) > EHLO_MEMO_MAX:
            _EHLO_MEMO.popitem(last=False)
    return found


def client(
    sock: socket.socket, server_name: str, ctx: ssl.SSLContext, implicit_tls: bool
) -> Client:
    """A client for the connected `sock`: `server_name` is only the name for SNI and the
    certificate check (aiosmtplib passes it as server_hostname); no timeout of its own, the
    caller owns the deadline. `connect()` reads the greeting (after the handshake with
    `implicit_tls`)."""
    return Client(
        sock=sock,
        hostname=server_name,
        use_tls=implicit_tls,
        start_tls=False,
        tls_context=ctx,
        local_hostname=EHLO_NAME,
        timeout=None,
    )


class SaslRefused(SMTPAuthenticationError):
    """AUTH refused: the server's final reply, and the error challenge it sent before it
    (base64, as sent), which aiosmtplib's own auth_xoauth2 drops."""

    def __init__(self, code: int, message: str, challenge: str | None) -> None:
        super().__init__(code, message)
        self.challenge = challenge


async def authenticate(smtp: aiosmtplib.SMTP, mechanism: str, initial: str, dummy: str) -> None:
    """AUTH `mechanism` with the `initial` response (base64) on the command line when it fits,
    else after the server's empty 334; an error challenge is answered with `dummy`. A refusal
    raises SaslRefused."""
    name = mechanism.encode()
    response = initial.encode()
    if len(b"AUTH " + name + b" " + response + b"\r\n") <= AUTH_LINE_MAX:
        reply = await smtp.execute_command(b"AUTH", name, response)
    else:
        reply = await smtp.execute_command(b"AUTH", name)
        if reply.code == SMTPStatus.auth_continue:
            reply = await smtp.execute_command(response)
    challenge: str | None = None
    if reply.code == SMTPStatus.auth_continue:
        challenge = reply.message
        reply = await smtp.execute_command(dummy.encode())
    if reply.code != SMTPStatus.auth_successful:
        raise SaslRefused(reply.code, reply.message, challenge)


async def login_once(smtp: aiosmtplib.SMTP, user: str, password: str) -> None:
    """Log in with the first mechanism both sides support, moving on only when the server
    refuses the mechanism itself: aiosmtplib's `login` tries every mechanism after a rejection,
    so one check with a wrong password would be two or three failed logins, and lockout
    policies (fail2ban, mailcow) count each."""
    if not smtp.supports_extension("auth"):
        await smtp.login(user, password)  # raises its "AUTH not supported" SMTPException
        return
    refused: SMTPAuthenticationError | None = None
    for name in smtp.supported_auth_methods:
        try:
            await getattr(smtp, f"auth_{name.replace('-', '')}")(user, password)
        except SMTPAuthenticationError as exc:
            if exc.code not in MECHANISM_REFUSED:
                raise
            refused = exc
        else:
            return
    raise refused or SMTPException("No suitable authentication method found.")
