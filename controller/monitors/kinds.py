"""The monitor kinds: the one list every surface iterates.

A kind is what the API, the console and monitors-as-code offer as one resource (`imap-pop` covers
the stored types `imap` and `pop3`). Each surface keys what it does per kind on these objects and
builds its routes, pages, forms and file formats by iterating `KINDS`; a test over the registry
(tests/api/test_kind_surfaces.py) fails for a kind some surface lacks. Where a kind's credentials
sit in its stored config is declared here too: secret binding, the SQL trigger that ends a login
back-off on new credentials, and monitors-as-code read them.

Pure: imports only the wire types.
"""

from dataclasses import dataclass
from typing import Final

from shared.messages import (
    ImapPopConfig,
    JobConfig,
    MonitorType,
    RoundTripConfig,
    SmtpConfig,
)


@dataclass(frozen=True)
class Login:
    """One login a check of the kind makes: the stored config's paths (dotted, as the API
    spells the keys) of its user name and of its secret (stored sealed)."""

    user: str
    secret: str


@dataclass(frozen=True, eq=False)
class Kind:
    """`name`: the API's name of the kind (`/api/{name}-monitors`); `types`: the stored types it
    covers, the first being a new monitor's default, each with its label; `config`: the wire
    Struct its stored config is read as; `logins`: where its credentials sit, a round trip's
    send leg first."""

    name: str
    label: str
    config_key: str
    types: tuple[MonitorType, ...]
    type_labels: tuple[str, ...]
    config: type[JobConfig]
    logins: tuple[Login, ...]
    hostname: bool = True  # its own `hostname`/`port` fields (a round trip's are in its config)

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(login.secret for login in self.logins)

    @property
    def credentials(self) -> tuple[str, ...]:
        """Every config path that says as whom the kind logs in: users, then secrets."""
        return tuple(login.user for login in self.logins) + self.secrets


SMTP: Final = Kind(
    name="smtp",
    label="SMTP Monitor",
    config_key="smtpConfig",
    types=("smtp",),
    type_labels=("SMTP",),
    config=SmtpConfig,
    logins=(Login("auth.user", "auth.pass"),),
)
IMAP_POP: Final = Kind(
    name="imap-pop",
    label="IMAP/POP Monitor",
    config_key="imapPopConfig",
    types=("imap", "pop3"),
    type_labels=("IMAP", "POP3"),
    config=ImapPopConfig,
    logins=(Login("user", "password"),),
)
ROUNDTRIP: Final = Kind(
    name="roundtrip",
    label="Round-trip Monitor",
    config_key="roundtripConfig",
    types=("roundtrip",),
    type_labels=("Round-trip",),
    config=RoundTripConfig,
    logins=(Login("send.auth.user", "send.auth.pass"), Login("receive.user", "receive.password")),
    hostname=False,
)

KINDS: Final[tuple[Kind, ...]] = (SMTP, IMAP_POP, ROUNDTRIP)
ALL_TYPES: Final[tuple[MonitorType, ...]] = tuple(t for k in KINDS for t in k.types)
TYPE_LABELS: Final[dict[str, str]] = {
    t: label for k in KINDS for t, label in zip(k.types, k.type_labels, strict=True)
}
_BY_TYPE: Final[dict[str, Kind]] = {t: k for k in KINDS for t in k.types}
_BY_NAME: Final[dict[str, Kind]] = {k.name: k for k in KINDS}


def of_type(monitor_type: str) -> Kind:
    """The kind of a stored type; KeyError for none."""
    return _BY_TYPE[monitor_type]


def named(name: str) -> Kind:
    """The kind the API calls `name` (`/api/{name}-monitors`); KeyError for none."""
    return _BY_NAME[name]


def secrets_of(monitor_type: str) -> tuple[str, ...]:
    """Where the secrets of a stored type sit in its config."""
    return of_type(monitor_type).secrets
