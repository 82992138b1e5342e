"""Mail received by an agent's receiver (agent.receiver): the receiving addresses it takes mail
for, and what it says of each message that arrived, on the wire.

The controller keeps one entry per receiving monitor in the KV bucket `RECEIVERS` (key: the
address's local part, `hb-<random>`; value: a `ReceivingAddress`); every agent with a receiver
watches the bucket and refuses at `RCPT` any local part it does not hold. Each message taken is
one `Arrival` on `mon.arrivals.CC.MONITOR` (stream ARRIVALS, `Nats-Msg-Id` = `arrivalId`): what
the result says, never the message itself.

Evolution as shared.messages: a new field always gets a default, no field changes type, and
decoders never forbid unknown fields.
"""

import base64
import hashlib
import re
import secrets
import uuid
from typing import Annotated, Final

import msgspec

RECEIVERS_BUCKET: Final = "RECEIVERS"
# `hb-` and 26 characters of base32 (130 bits): unguessable, one DNS-safe lower-case token.
ADDRESS_PREFIX: Final = "hb-"
_LOCAL_PART: Final = re.compile(r"hb-[a-z2-7]{26}")
# The receiver's test twins, each a listener of its own (agent.settings): no STARTTLS offered,
# only TLS 1.0 offered, a certificate expired and for another name.
LISTENERS: Final = ("plain", "tls_1_0", "bad_cert")
# The listener of an arrival read from a mailbox (a heartbeat's, agent.probers.heartbeat_box):
# counted as the address's own, never graded.
MAILBOX_LISTENER: Final = "mailbox"
# What an arrival carries of the strangers' text it read, at most (characters).
TEXT_MAX: Final = 255


def new_local_part() -> str:
    """A fresh receiving address's local part: `hb-` and 130 random bits in base32."""
    token = secrets.token_bytes(17)
    return ADDRESS_PREFIX + base64.b32encode(token).decode().lower().rstrip("=")[:26]


# The namespace of arrival ids (`arrival_id_of`).
_ARRIVALS_NS: Final = uuid.UUID("5d0f6c52-8a83-4f55-9d2b-2b1b7f0c8383")


def arrival_id_of(
    message_id: str, monitor_id: str, country: str, listener: str = "", recipients: str = ""
) -> str:
    """An arrival's id, from the message's Message-ID, its monitor, the receiving country, the
    listener that took it ("" the address's own port, else the test twin: a twin's copy of a
    message is an arrival of its own) and the recipients it was taken for: a
    message taken again (its sender retrying after a `451`, say once one of several
    recipients' arrivals failed to publish) is the same arrival, stored once and counted once.
    A message without a Message-ID gets a random id (each copy counts)."""
    if not message_id:
        return str(uuid.uuid4())
    key = "\n".join((country, monitor_id, listener, recipients.lower(), message_id))
    digest = hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()
    return str(uuid.uuid5(_ARRIVALS_NS, digest))


def is_local_part(value: str) -> bool:
    """Whether `value` is shaped as a receiving address's local part (a KV key as well)."""
    return bool(_LOCAL_PART.fullmatch(value))


class ReceivingAddress(msgspec.Struct, kw_only=True, rename="camel"):
    """A receiving monitor's address, as the bucket holds it under its local part."""

    monitor_id: Annotated[str, msgspec.Meta(max_length=64)]
    # The organization, as the opaque key jobs carry (`tenant`): one organization's messages
    # hold at most half the receiver's parsers and their queue.
    tenant: Annotated[str, msgspec.Meta(max_length=64)] = ""


class Verdicts(msgspec.Struct, kw_only=True, rename="camel"):
    """The receiver's own authentication verdicts (RFC 8601 words: `pass`, `fail`, `none`,
    `neutral`, `softfail`, `temperror`, `permerror`), null for one not evaluated. `dkimDomains`:
    the `d=` of each DKIM signature that verified (at most 4). `dmarcPolicy`: the From
    domain's `p=` ("" without a record)."""

    spf: str | None = None
    dkim: str | None = None
    dkim_domains: list[str] = msgspec.field(default_factory=list)
    dmarc: str | None = None
    dmarc_policy: str = ""
    arc: str | None = None


class Arrival(msgspec.Struct, kw_only=True, rename="camel"):
    """One message the receiver took (its `250` after DATA was sent only once this is
    stored). Times are ISO-8601 UTC with milliseconds; `tlsVersion` and `tlsCipher` are null for
    a message sent in the clear. The recipient is left out (the address is the monitor's
    secret: `monitorId` says whose it is). `mailFrom`, `helo`, `headerFrom` and `subject` are
    cut to `TEXT_MAX` characters, hidden characters dropped (shared.strangers)."""

    v: int = 1
    arrival_id: str
    monitor_id: str
    country: str
    agent_id: str
    arrived_at: str
    peer: str
    helo: str = ""
    mail_from: str = ""
    tls_version: str | None = None
    tls_cipher: str | None = None
    # Whether the listener offered STARTTLS (false: the plain port, the senders' test; null
    # from an agent that predates it).
    starttls_offered: bool | None = None
    # The listener that took it: "" the address's own port, else the senders' test twin it
    # reached (`LISTENERS`); "" from an agent that predates it.
    listener: str = ""
    size: int = 0
    header_from: str = ""
    subject: str = ""
    verdicts: Verdicts = msgspec.field(default_factory=Verdicts)


_encoder: Final = msgspec.json.Encoder()
_arrival_decoder: Final = msgspec.json.Decoder(Arrival)
_address_decoder: Final = msgspec.json.Decoder(ReceivingAddress)


def encode(value: Arrival | ReceivingAddress) -> bytes:
    return _encoder.encode(value)


def decode_arrival(data: bytes) -> Arrival:
    """Raises msgspec.DecodeError (not JSON) or msgspec.ValidationError (wrong shape)."""
    return _arrival_decoder.decode(data)


def decode_address(data: bytes) -> ReceivingAddress:
    """Raises msgspec.DecodeError (not JSON) or msgspec.ValidationError (wrong shape)."""
    return _address_decoder.decode(data)
