"""The one write model of a monitor: what a create or an update asks for, typed.

Every surface translates its request into a `MonitorWrite`: the native API
(`controller.web.api.monitor_rules.write_of`), and through it the console's forms, AlertSite's
bodies (`/api/v3`) and monitors-as-code files, which are spelt as the API's bodies. The write path
(`controller.monitors.writes`) takes only this model; `controller.monitors.write_values` checks
it (`controller.monitors.errors.Invalid`, naming the field as the request spells it) and turns
it into the columns to store.

A field left UNSET is not part of the write (a PATCH keeps it; a create takes its default); None
is null (none). The kind's config is a tagged union, one Struct per kind, its keys spelt as the
stored config spells them (camelCase, `pass`, `from`). A secret is its new text, `KEEP` (the
stored one, as the API's mask says) or None (none).

Adding a field: docs/architecture.md, "Adding a field to a monitor kind".
"""

from typing import Final

import msgspec
from msgspec import UNSET, UnsetType, field

from shared.secret import SECRET_MASK

KEEP: Final = SECRET_MASK  # a secret's value that keeps the stored one


class _Part(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """Base of the model's parts: keys as the stored config spells them."""


class TlsOptionsWrite(_Part):
    reject_unauthorized: bool | UnsetType = UNSET
    ca: str | None | UnsetType = UNSET  # PEM certificates; null: the system trust store
    servername: str | None | UnsetType = UNSET  # null: the hostname


class OAuth2Write(_Part):
    """An OAuth2 login instead of the password (controller.oauth2.grants checks it)."""

    mechanism: str | UnsetType = UNSET
    grant: str | UnsetType = UNSET
    provider: str | UnsetType = UNSET
    tenant: str | None | UnsetType = UNSET
    token_url: str | None | UnsetType = UNSET
    client_id: str | UnsetType = UNSET
    scopes: list[str] | None | UnsetType = UNSET
    subject: str | None | UnsetType = UNSET
    client_secret: str | None | UnsetType = UNSET  # a secret
    refresh_token: str | None | UnsetType = UNSET  # a secret
    private_key: str | None | UnsetType = UNSET  # a secret


class SmtpAuthWrite(_Part):
    user: str | None | UnsetType = UNSET
    password: str | None | UnsetType = field(default=UNSET, name="pass")  # a secret
    oauth2: OAuth2Write | None | UnsetType = UNSET


class SmtpLegWrite(_Part):
    """What an SMTP monitor and a round trip's send leg share (nodemailer's options)."""

    secure: bool | UnsetType = UNSET
    ignore_tls: bool | UnsetType = UNSET
    require_tls: bool | UnsetType = UNSET
    auth: SmtpAuthWrite | None | UnsetType = UNSET
    tls_options: TlsOptionsWrite | UnsetType = UNSET
    allow_plaintext_auth: bool | UnsetType = UNSET


class ImapPopLegWrite(_Part):
    """What an IMAP/POP monitor and a round trip's receive leg share; `protocol` is imap or
    pop3 (its spelling is checked by the rules)."""

    protocol: str | UnsetType = UNSET
    user: str | None | UnsetType = UNSET
    password: str | None | UnsetType = UNSET  # a secret
    oauth2: OAuth2Write | None | UnsetType = UNSET
    tls: bool | UnsetType = UNSET
    tls_options: TlsOptionsWrite | UnsetType = UNSET
    allow_plaintext_auth: bool | UnsetType = UNSET


class SmtpWrite(SmtpLegWrite, tag_field="kind", tag="smtp"):
    """An SMTP monitor's config."""

    relay_check: bool | UnsetType = UNSET


class ImapPopWrite(ImapPopLegWrite, tag_field="kind", tag="imap-pop"):
    """An IMAP/POP monitor's config."""


class RoundTripSendWrite(SmtpLegWrite):
    """A round trip's send leg: its server (stored as the monitor's `hostname`/`port`) and
    its sender."""

    hostname: str | UnsetType = UNSET
    port: int | None | UnsetType = UNSET
    sender: str | UnsetType = field(default=UNSET, name="from")


class RoundTripReceiveWrite(ImapPopLegWrite):
    """A round trip's receive leg: the mailbox's server and the folders to look in."""

    hostname: str | UnsetType = UNSET
    port: int | None | UnsetType = UNSET
    folders: list[str] | UnsetType = UNSET
    spam_folders: list[str] | UnsetType = UNSET


class RoundTripWrite(_Part, tag_field="kind", tag="roundtrip"):
    """A round trip's config: both legs and the recipient are required (the rules say so)."""

    send: RoundTripSendWrite | UnsetType = UNSET
    to: str | UnsetType = UNSET
    receive: RoundTripReceiveWrite | UnsetType = UNSET
    slow_after_seconds: float | None | UnsetType = UNSET
    spam_is_failure: bool | UnsetType = UNSET


ConfigWrite = SmtpWrite | ImapPopWrite | RoundTripWrite
# The config Struct of each kind (`controller.monitors.kinds.Kind.name`).
CONFIG_WRITES: Final[dict[str, type[ConfigWrite]]] = {
    "smtp": SmtpWrite,
    "imap-pop": ImapPopWrite,
    "roundtrip": RoundTripWrite,
}


class ReputationWrite(_Part):
    """What an SMTP monitor's mail goes out from, for the blocklists."""

    ips: list[str] | UnsetType = UNSET
    domains: list[str] | UnsetType = UNSET


class MonitorWrite(msgspec.Struct, kw_only=True):
    """A create or an update of a monitor of the kind named `kind`.

    `config_field`: how the request names the config (`smtpConfig`, or its alias `config`), the
    prefix of the fields the rules name in a refusal; `secret_env`: which environment variable
    monitors-as-code read each secret from, by the secret's config path.
    """

    kind: str
    name: str | UnsetType = UNSET
    hostname: str | UnsetType = UNSET  # a round trip's is in its config's `send`
    port: int | None | UnsetType = UNSET
    status: str | UnsetType = UNSET
    check_interval: int | UnsetType = UNSET
    timeout_seconds: int | UnsetType = UNSET
    allowed_country_codes: list[str] | None | UnsetType = UNSET
    notification_email: str | None | UnsetType = UNSET
    notification_phone_number: str | None | UnsetType = UNSET
    mail_domain: str | None | UnsetType = UNSET
    depends_on: list[str] | None | UnsetType = UNSET
    dkim_selectors: list[str] | None | UnsetType = UNSET
    reputation: ReputationWrite | None | UnsetType = UNSET  # SMTP monitors only
    secret_env: dict[str, str] | None | UnsetType = UNSET
    config: ConfigWrite | UnsetType = UNSET
    config_field: str = ""

    def sent(self) -> set[str]:
        """The model's fields this write sets (its kind and naming aside)."""
        return {
            f
            for f in self.__struct_fields__
            if f not in ("kind", "config_field") and getattr(self, f) is not UNSET
        }
