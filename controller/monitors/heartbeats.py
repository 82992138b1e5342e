"""Heartbeat monitors' columns (issue 83): the rule a user sets (`HeartbeatRule`, bounded by
construction), the receiving address's local part the controller makes (never the client's), and
the address as the monitor's host name, so monitors sharing an address never share a flow
incident. Pure: the writes go through controller.monitors.writes."""

from typing import Annotated, Final, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from controller.monitors.write_model import CustomerIdIn
from shared.arrivals import new_local_part
from shared.messages import HeartbeatConfig

MAX_EVERY_MINUTES: Final = 31 * 24 * 60
MAX_GRACE_MINUTES: Final = 7 * 24 * 60
MAX_EXPECTED: Final = 1000
MAX_MATCH_CHARS: Final = 200
# A heartbeat monitor's columns that say nothing for it (it runs no checks), as the table needs.
_UNUSED_COLUMNS: Final = {"port": 25, "check_interval": 60, "timeout_seconds": 30}


class HeartbeatRule(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """What must arrive: `expected` mails from `sender` with `subject` in them (each empty:
    any) every `everyMinutes`, `graceMinutes` to spare."""

    every_minutes: Annotated[int, Meta(ge=1, le=MAX_EVERY_MINUTES)] = 60
    grace_minutes: Annotated[int, Meta(ge=0, le=MAX_GRACE_MINUTES)] = 0
    expected: Annotated[int, Meta(ge=1, le=MAX_EXPECTED)] = 1
    sender: Annotated[str, Meta(max_length=MAX_MATCH_CHARS)] = ""
    subject: Annotated[str, Meta(max_length=MAX_MATCH_CHARS)] = ""


def address(local_part: str, domain: str | None) -> str:
    """The receiving address: the local part alone while no domain is set."""
    return f"{local_part}@{domain}" if domain else local_part


def stored_config(rule: HeartbeatRule, local_part: str) -> dict[str, object]:
    """The stored config (shared.messages.HeartbeatConfig as JSON) of `rule` at that address."""
    config = HeartbeatConfig(
        every_minutes=rule.every_minutes,
        grace_minutes=rule.grace_minutes,
        expected=rule.expected,
        sender=rule.sender,
        subject=rule.subject,
        local_part=local_part,
    )
    return msgspec.to_builtins(config)  # type: ignore[no-any-return]


def rule_of(config: HeartbeatConfig) -> HeartbeatRule:
    return HeartbeatRule(
        every_minutes=config.every_minutes,
        grace_minutes=config.grace_minutes,
        expected=config.expected,
        sender=config.sender,
        subject=config.subject,
    )


def new_columns(
    name: str, status: str, rule: HeartbeatRule, domain: str | None
) -> dict[str, object]:
    """A new heartbeat monitor's columns, with a fresh secrets-grade address."""
    local = new_local_part()
    return {
        "type": "heartbeat",
        "name": name,
        "status": status,
        "hostname": address(local, domain),
        "config": stored_config(rule, local),
        **_UNUSED_COLUMNS,
    }


Status = Literal["active", "maintenance", "disabled"]
Name = Annotated[str, Meta(min_length=1, max_length=200)]


class HeartbeatMonitorCreate(
    msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True
):
    customer_id: CustomerIdIn
    name: Name
    status: Status = "active"
    heartbeat_config: HeartbeatRule = msgspec.field(default_factory=HeartbeatRule)


class HeartbeatMonitorUpdate(
    msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True
):
    name: Name | UnsetType = UNSET
    status: Status | UnsetType = UNSET
    heartbeat_config: HeartbeatRule | UnsetType = UNSET
