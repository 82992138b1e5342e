"""What a round-trip monitor's console page shows beyond every monitor's: its two legs (the
submission server and the mailbox, as the API shows them: secrets never) and, per country,
the phases of its latest round (SMTP submission, delivery into the mailbox, fetching it there)
and the folder the message was found in."""

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from controller.db.pool import Conn
from controller.monitors.kinds import ROUNDTRIP
from controller.monitors.store import Monitor
from controller.web.api.monitor_rules import present
from controller.web.console import store as console
from shared.messages import Phases

RECENT = timedelta(days=2)  # latest rounds shown: those of the last two days


def _phases(p: Phases) -> list[tuple[str, float | None]]:
    """A round trip's phases by their labels."""
    return [("Submit", p.submit_ms), ("Delivery", p.delivery_ms), ("Fetch", p.fetch_ms)]


# What the page calls a leg's mailbox API (`api`; controller.monitors.mailbox_apis).
_APIS = {"graph": "Microsoft Graph", "gmail": "Gmail API"}


def _tls(leg: dict[str, Any]) -> str:
    if leg.get("api"):
        return "HTTPS"
    if leg.get("secure") or leg.get("tls"):
        return "TLS from the first byte"
    if leg.get("requireTls"):
        return "STARTTLS, required"
    return "no STARTTLS" if leg.get("ignoreTls") else "STARTTLS when offered"


def _leg(leg: dict[str, Any], user: str) -> dict[str, Any]:
    grant = (leg.get("auth") or {}).get("oauth2") if "auth" in leg else leg.get("oauth2")
    tls_options = leg.get("tlsOptions") or {}
    return {
        "hostname": leg.get("hostname") or "",
        "port": leg.get("port"),
        "tls": _tls(leg),
        "user": user,
        "login": "OAuth2 " + str(grant.get("grant")) if isinstance(grant, dict) else "password",
        "ca": bool(tls_options.get("ca")),
        "verify": tls_options.get("rejectUnauthorized", True),
    }


def _cleanup(receive: Mapping[str, object]) -> str:
    """What an API leg does with the message it found; "" for IMAP and POP3 (deleted)."""
    if not receive.get("api"):
        return ""
    return "deleted" if receive.get("cleanup") == "delete" else "moved to Deleted Items"


async def roundtrip_view(conn: Conn, monitor: Monitor, now: datetime) -> dict[str, Any]:
    """`legs` and `round_phases` for a round trip's page; empty for any other kind."""
    if monitor.type not in ROUNDTRIP.types:
        return {"legs": None, "round_phases": []}
    config: dict[str, Any] = dict(present(monitor).config)
    send, receive = config.get("send") or {}, config.get("receive") or {}
    legs = {
        "send": {
            **_leg(send, (send.get("auth") or {}).get("user") or ""),
            "via": _APIS.get(str(send.get("api") or ""), "SMTP"),
            "from": send.get("from") or "",
        },
        "to": config.get("to") or "",
        "receive": {
            **_leg(receive, receive.get("user") or ""),
            "via": _APIS.get(str(receive.get("api") or ""))
            or str(receive.get("protocol") or "imap").upper(),
            "cleanup": _cleanup(receive),
            "folders": receive.get("folders") or [],
            "spam_folders": receive.get("spamFolders") or [],
        },
        "slow_after": config.get("slowAfterSeconds"),
        "spam_is_failure": bool(config.get("spamIsFailure")),
    }
    rows = await console.latest_rounds(conn, monitor.id, now - RECENT)
    round_phases = [
        {
            "country": r.country,
            "at": r.scheduled_at,
            "status": r.status,
            "error_kind": r.error_kind,
            "folder": r.folder,
            "phases": _phases(r.phases or Phases()),
        }
        for r in rows
    ]
    return {"legs": legs, "round_phases": round_phases}
