"""Alert thresholds as stored: an organization's (`organization_alert_settings`) and a
monitor's overrides (`monitor_alert_overrides`), read as one `Thresholds`
(controller.monitors.thresholds). The caller owns the transaction.
"""

from collections.abc import Mapping
from datetime import datetime

import asyncpg
import msgspec

from controller.db.pool import Conn
from controller.monitors.thresholds import (
    DEFAULT_CHANNEL_SEVERITIES,
    DEFAULT_DOWN_AFTER_ROUNDS,
    DEFAULT_EMAIL_SEVERITIES,
    DEFAULT_EXPIRY_DAYS,
    DEFAULT_FAILURE_THRESHOLD,
    DEFAULT_RECOVER_AFTER_ROUNDS,
    DEFAULT_SMS_SEVERITIES,
    SEVERITIES,
    Severity,
    Thresholds,
)
from shared.guards import BrokenInvariant


async def org_thresholds(conn: Conn, organization_id: int) -> Thresholds:
    row = await conn.fetchrow(
        f"SELECT {_ORG_COLUMNS} FROM organization_alert_settings WHERE organization_id = $1",
        organization_id,
    )
    return _thresholds(row) if row is not None else Thresholds()


# cert_expiry_days and the finding severities are nullable (built-in default) where the others
# were always filled in.
_ORG_COLUMNS = (
    "failure_threshold, down_after_rounds, recover_after_rounds, cert_expiry_days,"
    " confirm_failures, finding_email_severities, finding_sms_severities,"
    " finding_channel_severities"
)


def _thresholds(row: asyncpg.Record) -> Thresholds:
    days = row["cert_expiry_days"]
    email, sms = row["finding_email_severities"], row["finding_sms_severities"]
    chans = row["finding_channel_severities"]
    return Thresholds(
        row["failure_threshold"],
        row["down_after_rounds"],
        row["recover_after_rounds"],
        DEFAULT_EXPIRY_DAYS if days is None else tuple(days),
        row["confirm_failures"],
        DEFAULT_EMAIL_SEVERITIES if email is None else severities(email),
        DEFAULT_SMS_SEVERITIES if sms is None else severities(sms),
        DEFAULT_CHANNEL_SEVERITIES if chans is None else severities(chans),
    )


def severities(stored: list[str]) -> tuple[Severity, ...]:
    """Stored severities in their order, worst first (unknown ones dropped)."""
    return tuple(s for s in SEVERITIES if s in stored)


async def put_org_thresholds(
    conn: Conn,
    organization_id: int,
    failure_threshold: float | None,
    down_after_rounds: int | None,
    recover_after_rounds: int | None,
    cert_expiry_days: list[int] | None = None,
    confirm_failures: bool | None = None,
    finding_email_severities: list[str] | None = None,
    finding_sms_severities: list[str] | None = None,
    finding_channel_severities: list[str] | None = None,
    *,
    now: datetime,
) -> Thresholds:
    """Change the values given (None: keep; the built-in default when never set), at `now`."""
    row = await conn.fetchrow(
        "INSERT INTO organization_alert_settings AS s"
        " (organization_id, failure_threshold, down_after_rounds, recover_after_rounds,"
        " cert_expiry_days, confirm_failures, finding_email_severities, finding_sms_severities,"
        " finding_channel_severities, updated_at)"
        " VALUES ($1, coalesce($2::float8, $5::float8), coalesce($3::int, $6::int),"
        " coalesce($4::int, $7::int), $8::int[], coalesce($9::bool, true), $10::text[],"
        " $11::text[], $12::text[], $13)"
        " ON CONFLICT (organization_id) DO UPDATE SET"
        " failure_threshold = coalesce($2::float8, s.failure_threshold),"
        " down_after_rounds = coalesce($3::int, s.down_after_rounds),"
        " recover_after_rounds = coalesce($4::int, s.recover_after_rounds),"
        " cert_expiry_days = coalesce($8::int[], s.cert_expiry_days),"
        " confirm_failures = coalesce($9::bool, s.confirm_failures),"
        " finding_email_severities = coalesce($10::text[], s.finding_email_severities),"
        " finding_sms_severities = coalesce($11::text[], s.finding_sms_severities),"
        " finding_channel_severities = coalesce($12::text[], s.finding_channel_severities),"
        " updated_at = $13"
        f" RETURNING {_ORG_COLUMNS}",
        organization_id,
        failure_threshold,
        down_after_rounds,
        recover_after_rounds,
        DEFAULT_FAILURE_THRESHOLD,
        DEFAULT_DOWN_AFTER_ROUNDS,
        DEFAULT_RECOVER_AFTER_ROUNDS,
        cert_expiry_days,
        confirm_failures,
        finding_email_severities,
        finding_sms_severities,
        finding_channel_severities,
        now,
    )
    if row is None:
        raise BrokenInvariant("thresholds_store.put_org_thresholds: the statement returned no row")
    return _thresholds(row)


_OVERRIDES = (
    "failure_threshold",
    "down_after_rounds",
    "recover_after_rounds",
    "cert_expiry_days",
    "confirm_failures",
    "finding_email_severities",
    "finding_sms_severities",
    "finding_channel_severities",
)


class MonitorOverrides(msgspec.Struct, frozen=True, kw_only=True):
    """A monitor's own alert settings; None: inherited from its organization."""

    failure_threshold: int | None = None
    down_after_rounds: int | None = None
    recover_after_rounds: int | None = None
    cert_expiry_days: list[int] | None = None
    confirm_failures: bool | None = None
    finding_email_severities: list[str] | None = None
    finding_sms_severities: list[str] | None = None
    finding_channel_severities: list[str] | None = None


async def monitor_overrides(conn: Conn, monitor_id: int) -> MonitorOverrides:
    """The monitor's own values (None: inherited)."""
    row = await conn.fetchrow(
        f"SELECT {', '.join(_OVERRIDES)} FROM monitor_alert_settings WHERE monitor_id = $1",
        monitor_id,
    )
    return (
        MonitorOverrides() if row is None else MonitorOverrides(**{n: row[n] for n in _OVERRIDES})
    )


async def put_monitor_overrides(
    conn: Conn, monitor_id: int, values: Mapping[str, object], now: datetime
) -> None:
    """Set the monitor's own thresholds, at `now`."""
    await conn.execute(
        "INSERT INTO monitor_alert_settings"
        " (monitor_id, failure_threshold, down_after_rounds, recover_after_rounds,"
        " cert_expiry_days, confirm_failures, finding_email_severities, finding_sms_severities,"
        " finding_channel_severities, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (monitor_id) DO UPDATE SET"
        " failure_threshold = $2, down_after_rounds = $3, recover_after_rounds = $4,"
        " cert_expiry_days = $5, confirm_failures = $6, finding_email_severities = $7,"
        " finding_sms_severities = $8, finding_channel_severities = $9, updated_at = $10",
        monitor_id,
        values["failure_threshold"],
        values["down_after_rounds"],
        values["recover_after_rounds"],
        values.get("cert_expiry_days"),
        values.get("confirm_failures"),
        values.get("finding_email_severities"),
        values.get("finding_sms_severities"),
        values.get("finding_channel_severities"),
        now,
    )


_THRESHOLDS = (
    "SELECT o.organization_id IS NOT NULL AS has_org, "
    + ", ".join(f"o.{c.strip()}" for c in _ORG_COLUMNS.split(","))
    + ", "
    + ", ".join(f"m.{n} AS own_{n}" for n in _OVERRIDES)
    + " FROM (SELECT) AS one"
    " LEFT JOIN organization_alert_settings o ON o.organization_id = $1"
    " LEFT JOIN monitor_alert_settings m ON m.monitor_id = $2"
)


async def thresholds(conn: Conn, monitor_id: int, organization_id: int) -> Thresholds:
    """The monitor's overrides over its organization's defaults (one statement: the alerter
    reads them for every evaluation)."""
    row = await conn.fetchrow(_THRESHOLDS, organization_id, monitor_id)
    if row is None:
        raise BrokenInvariant("thresholds_store.thresholds: the statement returned no row")
    return _merged_thresholds(row)


def _merged_thresholds(row: asyncpg.Record) -> Thresholds:
    """A row with the organization's columns (and `has_org`) and the monitor's (`own_*`)."""
    base = _thresholds(row) if row["has_org"] else Thresholds()
    own = {n: row[f"own_{n}"] for n in _OVERRIDES}
    days = own["cert_expiry_days"]
    email, sms = own["finding_email_severities"], own["finding_sms_severities"]
    chans = own["finding_channel_severities"]
    return Thresholds(
        own["failure_threshold"]
        if own["failure_threshold"] is not None
        else base.failure_threshold,
        own["down_after_rounds"] or base.down_after_rounds,
        own["recover_after_rounds"] or base.recover_after_rounds,
        base.cert_expiry_days if days is None else tuple(days),
        base.confirm_failures if own["confirm_failures"] is None else own["confirm_failures"],
        base.finding_email_severities if email is None else severities(email),
        base.finding_sms_severities if sms is None else severities(sms),
        base.finding_channel_severities if chans is None else severities(chans),
    )
