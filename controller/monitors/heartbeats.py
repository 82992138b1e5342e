"""Heartbeat monitors' columns (issue 83): the rule a user sets (`HeartbeatRule`, bounded by
construction), the receiving address's local part the controller makes (never the client's), and
the address as the monitor's host name, so monitors sharing an address never share a flow
incident. Pure: the writes go through controller.monitors.writes."""

from typing import Annotated, Final, Literal, cast
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from msgspec import UNSET, Meta, UnsetType

from controller.monitors.write_model import CustomerIdIn
from shared.arrivals import new_local_part
from shared.messages import HeartbeatConfig

MAX_EVERY_MINUTES: Final = 31 * 24 * 60
MAX_GRACE_MINUTES: Final = 7 * 24 * 60
MAX_EXPECTED: Final = 1000
MAX_MATCH_CHARS: Final = 200
MAX_ZONE_CHARS: Final = 64
DEFAULT_EVERY_MINUTES: Final = 60
DAY_MINUTES: Final = 24 * 60  # a schedule's stored `everyMinutes`: its nominal period
DAY_NAMES: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
# A heartbeat monitor's columns that say nothing for it (it runs no checks), as the table needs.
_UNUSED_COLUMNS: Final = {"port": 25, "check_interval": 60, "timeout_seconds": 30}


class HeartbeatRule(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """What must arrive: `expected` mails from `sender` with `subject` in them (each empty:
    any) every `everyMinutes` (60 when neither it nor `byTime` is given), or by `byTime`
    ("HH:MM") each day, or on `days`, in `timeZone` (IANA); `graceMinutes` to spare. Mail
    counts at its address, and in the mailbox of the monitor `mailboxMonitorId` names (an
    IMAP/POP or round-trip monitor of the organization) when given."""

    every_minutes: Annotated[int, Meta(ge=1, le=MAX_EVERY_MINUTES)] | None = None
    grace_minutes: Annotated[int, Meta(ge=0, le=MAX_GRACE_MINUTES)] = 0
    expected: Annotated[int, Meta(ge=1, le=MAX_EXPECTED)] = 1
    sender: Annotated[str, Meta(max_length=MAX_MATCH_CHARS)] = ""
    subject: Annotated[str, Meta(max_length=MAX_MATCH_CHARS)] = ""
    by_time: Annotated[str, Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")] | None = None
    time_zone: Annotated[str, Meta(max_length=MAX_ZONE_CHARS)] | None = None
    days: Annotated[list[Day], Meta(max_length=7)] = msgspec.field(default_factory=list)
    mailbox_monitor_id: Annotated[str, Meta(max_length=36)] | None = None

    def __post_init__(self) -> None:
        if self.mailbox_monitor_id is not None:
            self.mailbox_monitor_id = _monitor_id(self.mailbox_monitor_id)
        if self.by_time is None:
            if self.time_zone is not None or self.days:
                raise ValueError("heartbeatConfig.timeZone and .days go with byTime")
            if self.every_minutes is None:
                self.every_minutes = DEFAULT_EVERY_MINUTES
            return
        if self.every_minutes is not None:
            raise ValueError("heartbeatConfig: give everyMinutes or byTime, not both")
        if not self.time_zone:
            raise ValueError(
                "heartbeatConfig.timeZone: required with byTime (an IANA name: Europe/Berlin)"
            )
        if not known_zone(self.time_zone):
            raise ValueError(f"heartbeatConfig.timeZone: {self.time_zone!r} is no IANA time zone")
        if len(set(self.days)) != len(self.days):
            raise ValueError("heartbeatConfig.days: each day once")


def _monitor_id(value: str) -> str | None:
    """A monitor's public id as stored (a UUID's canonical text), None for ""."""
    if not value:
        return None
    try:
        return str(UUID(value))
    except ValueError:
        raise ValueError(
            f"heartbeatConfig.mailboxMonitorId: {value!r} is no monitor id (a UUID)"
        ) from None


def known_zone(name: str) -> bool:
    """Whether `name` is an IANA time zone this host's database holds (tzdata)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def address(local_part: str, domain: str | None) -> str:
    """The receiving address: the local part alone while no domain is set."""
    return f"{local_part}@{domain}" if domain else local_part


def stored_config(rule: HeartbeatRule, local_part: str) -> dict[str, object]:
    """The stored config (shared.messages.HeartbeatConfig as JSON) of `rule` at that address."""
    config = HeartbeatConfig(
        every_minutes=rule.every_minutes or DAY_MINUTES,
        grace_minutes=rule.grace_minutes,
        expected=rule.expected,
        sender=rule.sender,
        subject=rule.subject,
        local_part=local_part,
        by_time=rule.by_time or "",
        time_zone=rule.time_zone or "",
        days=list(rule.days),
        mailbox_monitor_id=rule.mailbox_monitor_id or "",
    )
    return msgspec.to_builtins(config)  # type: ignore[no-any-return]


def rule_of(config: HeartbeatConfig) -> HeartbeatRule:
    by_time = config.by_time or None
    return HeartbeatRule(
        every_minutes=None if by_time else config.every_minutes,
        grace_minutes=config.grace_minutes,
        expected=config.expected,
        sender=config.sender,
        subject=config.subject,
        by_time=by_time,
        time_zone=config.time_zone or None,
        days=[cast(Day, d) for d in config.days if d in DAY_NAMES],
        mailbox_monitor_id=config.mailbox_monitor_id or None,
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
