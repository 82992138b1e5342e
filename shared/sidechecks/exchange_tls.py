"""The Exchange Online TLS 1.0/1.1 retirement on the wire (Microsoft MC1293480): the TLS version
an IMAP or POP3 monitor's round negotiated with its server, asked on the DNS cadence of every
IMAP/POP3 monitor; the controller judges whether the server is Microsoft 365's
(controller/sidechecks/exchange_tls)."""

from typing import Final

import msgspec

from shared.sidechecks import SideCheckWire


class ExchangeTlsAsk(msgspec.Struct, kw_only=True, rename="camel"):
    """Nothing to say: the round's own TLS session is what is read."""


class ExchangeTls(msgspec.Struct, kw_only=True, rename="camel"):
    """The round's TLS session with the server the job names (`host`): the protocol version
    negotiated (`TLSv1`, `TLSv1.1`, ... as OpenSSL names it; the core check's, or its second
    look's when the server refused TLS 1.2) and how TLS was reached (`implicit`, `starttls`)."""

    host: str
    version: str | None = None
    mode: str | None = None
    # The DNS names of the server's certificate when a trusted chain vouches for it (whether
    # or not it names `host`): a server behind a name of its own that holds Microsoft's
    # certificate is Microsoft's. [] when the chain did not verify, and from older agents.
    cert_names: list[str] = msgspec.field(default_factory=list)


WIRE: Final = SideCheckWire("exchange_tls", ExchangeTlsAsk, ExchangeTls)

HOST_CHARS_MAX: Final = 253  # RFC 1035 2.3.4, as text without the final dot
WORD_CHARS_MAX: Final = 16  # a version's or a mode's name
NAMES_MAX: Final = 20  # a certificate's names kept


def bounded(t: ExchangeTls) -> ExchangeTls:
    """`t` within the bounds an agent keeps (applied again by the controller at ingest: an agent
    could send more): the host at most HOST_CHARS_MAX characters, the version and the mode
    WORD_CHARS_MAX, the certificate's first NAMES_MAX names of HOST_CHARS_MAX (`t` itself when
    nothing was cut)."""
    out = ExchangeTls(
        host=t.host[:HOST_CHARS_MAX],
        version=None if t.version is None else t.version[:WORD_CHARS_MAX],
        mode=None if t.mode is None else t.mode[:WORD_CHARS_MAX],
        cert_names=[n[:HOST_CHARS_MAX] for n in t.cert_names[:NAMES_MAX]],
    )
    return t if out == t else out
