"""The monitor API's own rules around the write model (`controller.monitors.write_model`, its
request bodies): strict bodies, public ids, how a moved secret is refused; and a `Monitor` →
the response.

What a write's values must be is decided in `controller.monitors.write_values`, not here.
Shared by every kind's resource; `Kind` (controller.monitors.kinds) holds what differs between
them.
"""

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

import msgspec
from msgspec import UNSET

from controller.monitors import config as monitor_config
from controller.monitors import kinds, oauth2_grants
from controller.monitors.errors import SecretMoved
from controller.monitors.kinds import ROUNDTRIP, SMTP, Kind
from controller.monitors.model import MonitorCommon
from controller.monitors.write_model import MonitorUpdate, config_sent
from controller.web.api.errors import ApiError, strict_body_error
from controller.web.api.monitor_schemas import (
    MASK,
    ImapPopMonitor,
    ReputationOut,
    RoundTripMonitor,
    SmtpMonitor,
)
from controller.web.request_types import AnyRequest
from shared.messages import RoundTripConfig
from shared.secret import masked_hook
from shared.timefmt import iso_ms, iso_ms_or_none

if TYPE_CHECKING:  # the type only: these rules read no store
    from controller.monitors.store import Monitor

BodyT = TypeVar("BodyT", bound=msgspec.Struct)


def _integral(value: object) -> object:
    """`value` with every integral float (`74.0`) as an int: JSON has one kind of number."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_integral(item) for item in value]
    if isinstance(value, dict):
        return {key: _integral(item) for key, item in value.items()}
    return value


async def strict_body(request: AnyRequest, data: BodyT) -> BodyT:
    """`data` re-checked strictly against the JSON types of the seeds.

    Litestar converts bodies leniently (`"60"` → 60, `1` → true, `"false"` → false); a monitor's
    fields and config keys are typed, so those are 400s naming the field. The JSON is cached.
    A number with no fraction (`74.0`) is an integer, as JSON Schema's `integer` says.
    """
    try:
        return msgspec.convert(_integral(await request.json()), type(data), strict=True)
    except msgspec.ValidationError as exc:
        raise strict_body_error(exc) from None


def public_id(kind: Kind, raw: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError:
        raise ApiError(
            400,
            f"{kind.label} public ID (UUID) required",
            code="invalid_public_id",
            fields=["publicId"],
        ) from None


def secret_required(field: str, moved: list[str], *more: tuple[str, list[str]]) -> ApiError:
    """The 400 for a change that moves a kept secret; `more`: other secrets it moves, as
    (field, moved) pairs (a round trip has one per leg), all named in `fields`."""
    each = [(field, moved), *more]
    said = "; ".join(f"{f} must be sent again to change {', '.join(m)}" for f, m in each)
    return ApiError(
        400,
        f"{said}: a stored secret is only sent to the server, port, TLS settings and user name"
        " it was given with (a round trip's send password also only mails the recipient and"
        f" sender it was given with), and the mask {MASK!r} keeps it only while none of those"
        " change",
        code="secret_required",
        fields=[f for f, _ in each],
    )


def secret_refusal(write: MonitorUpdate, moved: SecretMoved) -> ApiError:
    """The 400 naming each secret (as this request spells the config) that a change moves
    without sending it again (`moved.each`: secret path → the fields that moved it), the
    password by where the monitor's type after the change keeps it."""
    kind, monitor_type, each = write.KIND, moved.monitor_type, moved.each
    sent = config_sent(write)
    key = kind.config_key if sent is None else sent[0]
    if kind is ROUNDTRIP:
        outside = {"hostname": f"{key}.send.hostname", "port": f"{key}.send.port"}
    else:
        # The password named by where the (possibly new) type keeps it; a grant's by its path.
        password = kinds.of_type(monitor_type).secrets[0]
        each = {(password if p in kind.secrets else p): m for p, m in each.items()}
        outside = {"hostname": "hostname", "port": "port", "type": f"{key}.protocol"}
    named = [
        (f"{key}.{path}", [outside.get(m, f"{key}.{m}") for m in moved])
        for path, moved in each.items()
    ]
    return secret_required(*named[0], *named[1:])


def roundtrip_shown(
    hostname: str,
    port: int | None,
    config: object,
    grants: Mapping[str, oauth2_grants.Grant] | None = None,
) -> dict[str, Any]:
    """A round trip's config as responses show it: as the agent uses it (defaults spelt out,
    secrets masked), the send leg's server (the monitor's hostname and port) in `send`, each
    leg's OAuth2 grant (`grants`, or those of a stored config) with its secrets masked."""
    if not isinstance(config, RoundTripConfig):  # as stored
        if grants is None and isinstance(config, Mapping):
            grants = monitor_config.grants_of(ROUNDTRIP.types[0], config)
        config = monitor_config.decode_config(ROUNDTRIP.types[0], config)
    shown: dict[str, Any] = msgspec.to_builtins(config, enc_hook=masked_hook)
    ROUNDTRIP.drop_job_only(shown)
    for path, grant in (grants or {}).items():
        *legs, key = path.split(".")
        holder = shown
        for leg in legs:
            holder = holder.get(leg) or {}
        holder[key] = oauth2_grants.as_stored(grant)
    shown = ROUNDTRIP.masked(shown)
    send = shown["send"]
    shown["send"] = {
        "hostname": hostname,
        "port": port,
        **(send if isinstance(send, Mapping) else {}),
    }
    return shown


MonitorOut = SmtpMonitor | ImapPopMonitor | RoundTripMonitor


def _shown(monitor: "Monitor", config: dict[str, object]) -> dict[str, Any]:
    """What every kind shows: `MonitorCommon`'s fields as stored, then `_MonitorOut`'s own."""
    return {
        **{name: getattr(monitor, name) for name in MonitorCommon.__struct_fields__},
        "secret_env": monitor.secret_env,
        "last_checked_at": iso_ms_or_none(monitor.last_checked_at),
        "created_at": iso_ms(monitor.created_at),
        "updated_at": iso_ms(monitor.updated_at),
        "config": config,
    }


def present(monitor: "Monitor") -> MonitorOut:
    """The API's response for a monitor, of its kind's shape."""
    kind = kinds.of_type(monitor.type)
    if kind is ROUNDTRIP:
        config = roundtrip_shown(monitor.hostname, monitor.port, monitor.config, monitor.grants)
        return RoundTripMonitor(**_shown(monitor, config), roundtrip_config=config)
    # The keys as sent, as the seeds show them: the one reader of `config_as_sent` outside the
    # write path (`monitors.store.Monitor`).
    config = kind.masked(monitor.config_as_sent)
    if kind is SMTP:
        listed = monitor.reputation
        reputation = ReputationOut(listed["ips"], listed["domains"]) if listed else UNSET
        return SmtpMonitor(**_shown(monitor, config), smtp_config=config, reputation=reputation)
    return ImapPopMonitor(**_shown(monitor, config), imap_pop_config=config)
