"""What every monitor has, declared once: `MonitorCommon`, the fields the typed row
(`controller.monitors.store.Monitor`) and the API's response (`controller.web.api.
monitor_schemas`) share, each named as its column and, on the wire, as the API spells it.

A field here is a column of `monitors` of the same name, read into `Monitor` and shown by the
API as it is stored; the write model (`controller.monitors.write_model`) sets it through its
field of the same name. Adding one: docs/architecture.md, "Adding a field to a monitor kind".
"""

from typing import Final
from uuid import UUID

import msgspec
from msgspec import field


class MonitorCommon(msgspec.Struct, kw_only=True, frozen=True, rename="camel"):
    """A monitor's identity and the fields every kind shares, in the order the API shows
    them; one with a default (None) only when it is not."""

    id: int
    public_id: UUID
    organization_id: int
    customer_id: int
    name: str
    hostname: str  # a round trip's send leg's server
    port: int | None
    status: str
    check_interval: int
    timeout_seconds: int
    allowed_country_codes: list[str] | None = field(name="allowedCheckCountryCodes")
    notification_email: str | None
    notification_phone_number: str | None
    # Shown only when they hold something (the seeds' shape otherwise); None: none.
    mail_domain: str | None = None  # the domain whose mail DNS the agents check
    depends_on: list[str] | None = None  # monitor public ids and host names (alerting.flows)
    dkim_selectors: list[str] | None = None  # for the readiness side check


# Not written through the write model's fields: the row's identity and its customer (which
# the write path resolves from the request's `customerId`).
_OWN: Final = frozenset({"id", "public_id", "organization_id", "customer_id"})
# The API's name of each of `MonitorCommon`'s fields a write sets, by column.
SHOWN_AS: Final[dict[str, str]] = {
    f.name: f.encode_name for f in msgspec.structs.fields(MonitorCommon) if f.name not in _OWN
}
# The columns a write sets from the write model's field of the same name, in the order their
# rules check them: `MonitorCommon`'s, then those the API shows its own way (SMTP's
# `reputation`, monitors-as-code's `secretEnv`).
COMMON_COLUMNS: Final[tuple[str, ...]] = (*SHOWN_AS, "reputation", "secret_env")
