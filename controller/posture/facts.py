"""The posture facts of one stored result: what the server advertised and the TLS it spoke.

Built from a stored result as posture reads it (`StoredFacts`, from `check_results`: its jsonb
`tls` and capability columns decoded, with its side checks' facts), so a result of an older
agent, without these fields, simply has fewer facts (None: not known).
"""

from datetime import datetime
from typing import Any

import msgspec

# The keyword a server advertises when it offers an upgrade to TLS on a plain connection.
UPGRADE = {"smtp": "STARTTLS", "imap": "STARTTLS", "pop3": "STLS"}
TLS_RANK = {"SSLv2": 0, "SSLv3": 1, "TLSv1": 2, "TLSv1.1": 3, "TLSv1.2": 4, "TLSv1.3": 5}


class StoredFacts(msgspec.Struct, kw_only=True, frozen=True):
    """What posture reads of one stored result that ran (`controller.posture.store`)."""

    scheduled_at: datetime
    country: str
    tls: dict[str, Any] | None = None
    capabilities: list[str] | None = None
    capabilities_before_tls: list[str] | None = None
    banner: str | None = None
    address: str | None = None
    # Each side check's facts of the same result, by name (JSON values, typed by the side
    # check's wire): a reader selects them with `controller.sidechecks.facts_store.side_of`.
    side: dict[str, object] = msgspec.field(default_factory=dict)


# What a reader selects of `check_results` for StoredFacts (`side` as `side_of(job_id)`).
COLUMNS = StoredFacts.__struct_fields__


class Observation(msgspec.Struct, frozen=True):
    """What posture observed of one stored result (`observe`). A Struct, not a dataclass: one
    is made per result judged, and a frozen dataclass's construction cost several times as
    much."""

    country: str
    starttls: bool | None = None  # offered on the plain connection; None: implicit TLS or unread
    auth: frozenset[str] | None = None  # SASL mechanisms on the connection the check used
    tls_version: str | None = None
    cipher: str | None = None
    cert_sha256: str | None = None
    key_type: str | None = None
    key_bits: int | None = None
    signature: str | None = None
    chain_verified: bool | None = None
    name_matched: bool | None = None
    days_left: int | None = None
    cert_spki_sha256: str | None = None
    # The logins a plain connection offers where the server offers no upgrade to TLS either
    # (SMTP `AUTH` mechanisms, IMAP `LOGIN` unless LOGINDISABLED and `AUTH=`, POP3 `USER` and
    # `SASL`): frozenset() when there is none or TLS was reached; None: not known.
    clear_logins: frozenset[str] | None = None

    @property
    def tls_rank(self) -> int | None:
        return None if self.tls_version is None else TLS_RANK.get(self.tls_version)


def _auth(capabilities: list[str]) -> frozenset[str]:
    """SASL mechanisms: SMTP `AUTH PLAIN LOGIN` (and the old `AUTH=PLAIN`), IMAP `AUTH=PLAIN`,
    POP3 `SASL PLAIN LOGIN`."""
    found: set[str] = set()
    for cap in capabilities:
        head, _, rest = cap.partition(" ")
        if head in ("AUTH", "SASL"):
            found.update(rest.split())
        elif head.startswith("AUTH="):
            found.add(head.removeprefix("AUTH="))
    return frozenset(found)


def _clear_logins(
    monitor_type: str, mode: object, capabilities: list[str] | None, before: list[str] | None
) -> frozenset[str] | None:
    """What a client can log in with on the plain connection `capabilities` came from when the
    server offers no STARTTLS/STLS there: its password goes over that connection or nowhere."""
    if mode in ("implicit", "starttls") or before is not None:
        return frozenset()  # TLS from the first byte, or an upgrade was offered
    if capabilities is None or mode is not None:
        return None
    heads = {c.split(" ", 1)[0] for c in capabilities}
    if UPGRADE.get(monitor_type, "STARTTLS") in heads:
        return frozenset()
    logins = set(_auth(capabilities))
    if monitor_type == "imap" and "LOGINDISABLED" not in heads:
        logins.add("LOGIN")  # RFC 3501 6.2.3: the LOGIN command, unless LOGINDISABLED
    if monitor_type == "pop3" and "USER" in heads:
        logins.add("USER")  # RFC 2449 6.3: USER/PASS
    return frozenset(logins)


def observe(monitor_type: str, row: StoredFacts) -> Observation:
    """The facts of one stored result of a monitor of `monitor_type`."""
    tls: dict[str, Any] = row.tls or {}
    caps, before = row.capabilities, row.capabilities_before_tls
    upgrade = UPGRADE.get(monitor_type, "STARTTLS")
    mode = tls.get("mode")
    starttls: bool | None = None
    if mode == "starttls":
        starttls = True
    elif before is not None:
        starttls = any(c.split(" ", 1)[0] == upgrade for c in before)
    elif mode is None and caps is not None:
        starttls = any(c.split(" ", 1)[0] == upgrade for c in caps)
    return Observation(
        country=row.country,
        starttls=starttls,
        auth=None if caps is None else _auth(caps),
        tls_version=tls.get("version"),
        cipher=tls.get("cipher"),
        cert_sha256=tls.get("certSha256"),
        key_type=tls.get("certKeyType"),
        key_bits=tls.get("certKeyBits"),
        signature=tls.get("certSignature"),
        chain_verified=tls.get("chainVerified"),
        name_matched=tls.get("nameMatched"),
        days_left=tls.get("certDaysLeft"),
        cert_spki_sha256=tls.get("certSpkiSha256"),
        clear_logins=_clear_logins(monitor_type, mode, caps, before),
    )
