"""What a round-trip monitor's console page shows beyond every monitor's: its two legs (the
submission server and the mailbox, as the API shows them: secrets never) and, per country,
the phases of its latest round (SMTP submission, delivery into the mailbox, fetching it there),
the folder the message was found in and the receiving server's SPF, DKIM, DMARC and ARC
verdicts with their meanings."""

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import msgspec

from controller.db.pool import Conn
from controller.monitors.kinds import ROUNDTRIP
from controller.monitors.store import Monitor
from controller.web.api.monitor_rules import present
from controller.web.console import store as console
from shared.messages import ArcResults, AuthResults, Phases

RECENT = timedelta(days=2)  # latest rounds shown: those of the last two days


def _phases(p: Phases) -> list[tuple[str, float | None]]:
    """A round trip's phases by their labels."""
    return [("Submit", p.submit_ms), ("Delivery", p.delivery_ms), ("Fetch", p.fetch_ms)]


# What each verdict of an Authentication-Results header (RFC 8601) or an ARC-Seal's `cv`
# (RFC 8617) means, shown on hover and in the legend under the table.
MEANINGS = {
    "pass": "passed: the sender is authorised, the signature verifies or the domain aligns",
    "fail": "failed: the sender is not authorised, the signature does not verify or nothing aligns",
    "softfail": "SPF: the domain says the sender is probably not authorised",
    "neutral": "the domain states nothing about this sender",
    "none": "nothing to check: no record, no signature, no policy or no ARC chain",
    "policy": "valid, but the receiving server's own policy does not accept it",
    "temperror": "a temporary error (such as a DNS timeout): a later round may pass",
    "permerror": "a permanent error: a broken record or signature",
}
UNSTATED = "the receiving server's headers do not state it"
UNKNOWN = "not a standard verdict: shown as the receiving server wrote it"
SHOWN_CHARS = 24  # a stranger's value is cut to this many characters


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    """One method's verdict as a cell shows it: `level` is a known verdict or "other" (a class
    name never taken from the header), `text` the value as written (cut), `meaning` its hover."""

    method: str
    text: str
    level: str
    meaning: str


def verdict(method: str, value: str | None) -> Verdict:
    """A method's verdict from the header's value; None is "—" (not stated)."""
    if value is None or not value.strip():
        return Verdict(method=method, text="—", level="unstated", meaning=UNSTATED)
    known = value.strip().lower()
    text = value if len(value) <= SHOWN_CHARS else value[: SHOWN_CHARS - 1] + "…"
    if known in MEANINGS:
        return Verdict(method=method, text=text, level=known, meaning=MEANINGS[known])
    return Verdict(method=method, text=text, level="other", meaning=UNKNOWN)


def verdicts(auth: AuthResults | None, arc: ArcResults | None) -> list[Verdict]:
    """SPF, DKIM and DMARC from Authentication-Results and ARC's chain validation, in order."""
    a = auth or AuthResults()
    return [
        verdict("SPF", a.spf),
        verdict("DKIM", a.dkim),
        verdict("DMARC", a.dmarc),
        verdict("ARC", arc.cv if arc else None),
    ]


def legend(rows: list[list[Verdict]]) -> list[tuple[str, str]]:
    """The known verdicts the table shows, each once with its meaning, in the table's order."""
    seen = dict.fromkeys(v.level for row in rows for v in row if v.level in MEANINGS)
    return [(level, MEANINGS[level]) for level in seen]


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
    """`legs`, `round_phases` and `verdict_legend` for a round trip's page; empty for any
    other kind."""
    if monitor.type not in ROUNDTRIP.types:
        return {"legs": None, "round_phases": [], "verdict_legend": []}
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
    shown = [verdicts(r.auth_results, r.arc) for r in rows]
    round_phases = [
        {
            "country": r.country,
            "at": r.scheduled_at,
            "status": r.status,
            "error_kind": r.error_kind,
            "folder": r.folder,
            "phases": _phases(r.phases or Phases()),
            "verdicts": v,
        }
        for r, v in zip(rows, shown, strict=True)
    ]
    return {
        "legs": legs,
        "round_phases": round_phases,
        "verdict_legend": legend(shown),
    }
