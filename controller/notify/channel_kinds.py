"""Notification channel kinds, pure: the event a channel is told and each kind's request.

An `Event` is written with the notice (the outbox row's `payload`), so a retry tells the same.
Each kind turns it into one HTTP request (`request`); `verdict` reads the answer. Built only
from the monitor's name, type, host and port and the incident (a flow incident's: its monitors'
names, hosts, ports, causes and countries, its changes and evidence): never from a config,
so never a monitor secret; the channel's own secret goes only into the header or field its
receiver expects (a signature, a routing key, an API key), never into an error.
"""

import hashlib
import hmac
import html
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal, get_args
from urllib.parse import quote, urlsplit

import msgspec

from controller.notify.limits import cut, cut_escaped, cut_html, json_bytes, slack_width
from shared.guards import BrokenInvariant
from shared.json_value import Json, JsonObject
from shared.timefmt import iso_ms

Kind = Literal[
    "webhook", "slack", "teams", "pagerduty", "opsgenie", "alertmanager", "telegram", "apprise"
]
KINDS: Final[tuple[str, ...]] = get_args(Kind)
# Kinds whose URL is itself the credential: stored sealed, shown masked.
SECRET_URL: Final = frozenset({"slack", "teams", "apprise"})
# Kinds that need `secret` (the signing key, the routing key, the API key).
NEEDS_SECRET: Final = frozenset({"webhook", "pagerduty", "opsgenie", "telegram"})
DEFAULT_URL: Final = {
    "pagerduty": "https://events.pagerduty.com/v2/enqueue",
    "opsgenie": "https://api.opsgenie.com",
    "telegram": "https://api.telegram.org",
}
SIGNATURE_HEADER: Final = "X-Mailprobe-Signature"
REPLAY_WINDOW_S: Final = 300
# How long Alertmanager keeps a firing alert without news: reminders renew it, the recovery
# ends it (Alertmanager would otherwise resolve it after its own `resolve_timeout`).
ALERTMANAGER_HOLD: Final = timedelta(hours=24)
TEST_HOLD: Final = timedelta(minutes=5)  # a test alert ends by itself

State = Literal["down", "up", "unknown", "notice"]
STATE_OF: Final[dict[str, State]] = {
    "down": "down",
    "reminder": "down",
    "recovered": "up",
    "no_data": "unknown",
    "test": "down",
}
# Notices that are no incident's (state `notice`): a posture finding, a certificate about to
# expire, rejected credentials, round trips not delivered, a login cap reached, an OAuth2
# token refused. Each opens its own alert where the receiver has alerts, never resolved by
# mailprobe (it is a state to fix, not an outage that ends).
NOTICE_KINDS: Final = frozenset(
    {"finding", "cert_expiry", "credentials", "delivery", "login_cap", "oauth2_token"}
)
NOTICE_LABEL: Final = {
    "finding": "Security posture finding",
    "cert_expiry": "Certificate expiring",
    "credentials": "Credentials rejected",
    "delivery": "Round trips not delivered",
    "login_cap": "Login cap reached",
    "oauth2_token": "OAuth2 token refused",
}
# A notice's severity when it has none of its own (only findings and expiry notices do).
NOTICE_SEVERITY: Final = "warning"
MAX_DETAILS: Final = 2000
# Each service's documented limits on the fields mailprobe fills (controller.notify.limits
# measures them on the text as sent). Slack Block Kit: a header's text 150 characters, a
# section's text 3,000, each of its fields 2,000 (at most 10); the message's `text` is cut
# by Slack past 40,000, which advises 4,000 at most.
SLACK_HEADER: Final = 150
SLACK_TEXT: Final = 3000
SLACK_FIELD: Final = 2000
SLACK_MESSAGE: Final = 4000
# Teams: a message's whole payload at most 28 KB; its texts are cut to these bytes of JSON,
# which with the card around them stay below it.
TEAMS_PAYLOAD: Final = 28_000
TEAMS_SUMMARY: Final = 2000
TEAMS_FACT: Final = 2000
TEAMS_DETAILS: Final = 8000
# PagerDuty Events v2: payload.summary 1,024 characters (dedup_key 255: ours are 83).
PAGERDUTY_SUMMARY: Final = 1024
# Opsgenie's alert API: message 130 characters, description 15,000, entity 512, details
# 8,000 in all (keys and values), a close's note 25,000 (alias 512, source 100, tags 20 of
# 50 each: ours are shorter).
OPSGENIE_MESSAGE: Final = 130
OPSGENIE_DESCRIPTION: Final = 15_000
OPSGENIE_ENTITY: Final = 512
OPSGENIE_DETAIL: Final = 4000  # each of the two details' values
OPSGENIE_NOTE: Final = 25_000
# Telegram's sendMessage: 4,096 characters after entity parsing (UTF-16 code units).
TELEGRAM_TEXT: Final = 4096


class MonitorFacts(msgspec.Struct, rename="camel", frozen=True):
    id: str
    name: str
    type: str
    hostname: str
    port: int | None


class IncidentFacts(msgspec.Struct, rename="camel", frozen=True):
    id: str
    started_at: str
    ended_at: str | None
    cause: str
    cause_kind: str
    countries: list[str]


class FlowMonitor(msgspec.Struct, rename="camel", frozen=True):
    """A monitor of a flow incident: its latest outage in it (`state` `down` or `up`)."""

    id: str
    name: str
    type: str
    hostname: str
    port: int | None
    state: str
    cause: str
    cause_kind: str
    countries: list[str]


class FlowFacts(msgspec.Struct, rename="camel", frozen=True):
    """The mail-flow problem a flow incident's notice tells of (controller.alerting.flows):
    `id` as `GET /api/incidents` names it; every country and cause its monitors touched;
    `monitors` the first FLOW_MONITORS of `monitorCount`, `downCount` of them down (absent
    from notices stored before it was told); `changes` what a change notice tells; `evidence`
    the first EVIDENCE of `evidenceCount` findings attached to it."""

    id: str
    started_at: str
    ended_at: str | None
    countries: list[str]
    causes: list[str]
    monitor_count: int
    monitors: list[FlowMonitor]
    changes: list[str] = msgspec.field(default_factory=list)
    evidence_count: int = 0
    evidence: list[str] = msgspec.field(default_factory=list)
    down_count: int | None = None


# What one notice lists of a flow incident (its monitors, its evidence), at most.
FLOW_MONITORS: Final = 50
FLOW_SHOWN: Final = 10  # monitors and evidence lines in a message's facts
EVIDENCE: Final = 10


class Event(msgspec.Struct, rename="camel", frozen=True):
    """The generic webhook's body (docs/alerts.md has its JSON schema), and what every other
    kind is built from. A flow incident's notice (several monitors, one mail-flow problem)
    has `flow`; its `monitor` and `incident` are then the outage that opened it, the same for
    all its notices (so a pager's alert key is the flow incident's)."""

    id: str  # stable across retries: receivers drop a repeat by it
    kind: str  # down, reminder, recovered, no_data, test
    state: State
    at: str
    summary: str
    monitor: MonitorFacts
    incident: IncidentFacts | None
    console_url: str | None
    version: int = 1
    # A notice's (state `notice`): its worst finding's severity (critical, warning, info) and
    # its text, as the e-mail says it.
    severity: str | None = None
    details: str | None = None
    flow: FlowFacts | None = None


def event_schema() -> dict[str, object]:
    """The webhook body's JSON schema, as docs/alerts.md shows it."""
    _, parts = msgspec.json.schema_components([Event], ref_template="#/$defs/{name}")
    schema: dict[str, object] = parts.pop("Event")
    schema["$defs"] = parts
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "mailprobe webhook event v1"
    return schema


def event_id(dedupe_key: str) -> str:
    """A notice's id for receivers, from its outbox dedupe key (which names internal ids)."""
    return hashlib.sha256(dedupe_key.encode()).hexdigest()[:32]


def encode(event: Event) -> bytes:
    return msgspec.json.encode(event)


def decode(payload: bytes) -> Event:
    return msgspec.json.decode(payload, type=Event)


@dataclass(frozen=True, slots=True)
class Request:
    url: str
    headers: dict[str, str]
    body: bytes


def _json(value: object) -> bytes:
    return msgspec.json.encode(value)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The webhook's signature header: `t=<unix seconds>,v1=<hex HMAC-SHA256 of
    "<t>." + body>` under the channel's secret."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def _where(e: Event) -> str:
    if e.flow is not None:
        return ", ".join(e.flow.countries) or "-"
    return ", ".join(e.incident.countries) if e.incident and e.incident.countries else "-"


def _cause(e: Event) -> str:
    if e.flow is not None:
        return "; ".join(e.flow.causes) or "-"
    return e.incident.cause if e.incident is not None else "-"


def _member(m: FlowMonitor) -> str:
    port = f":{m.port}" if m.port else ""
    where = ", ".join(m.countries) or "-"
    return f"{m.name} ({m.type.upper()} {m.hostname}{port}): {m.state}; {m.cause} [{where}]"


def _shown(lines: list[str], total: int) -> str:
    more = total - min(len(lines), FLOW_SHOWN)
    return "\n".join(lines[:FLOW_SHOWN] + ([f"and {more} more"] if more > 0 else []))


def _flow_facts(e: Event, f: FlowFacts) -> list[tuple[str, str]]:
    """A flow incident's facts: every monitor with its state and cause, every country and
    cause, what changed, the evidence attached."""
    down = f.down_count if f.down_count is not None else sum(m.state == "down" for m in f.monitors)
    facts = [
        ("State", e.state.upper()),
        ("Monitors", f"{f.monitor_count} ({down} down)" if down else str(f.monitor_count)),
        ("Countries", _where(e)),
        ("Cause", _cause(e)),
        ("Down since", f.started_at),
    ]
    if f.ended_at:
        facts.append(("Ended at", f.ended_at))
    if f.changes:
        facts.append(("Changed", ", ".join(f.changes)))
    facts.append(("Each monitor", _shown([_member(m) for m in f.monitors], f.monitor_count)))
    if f.evidence:
        facts.append(("Evidence", _shown(f.evidence, f.evidence_count)))
    return facts


def _target(e: Event) -> str:
    port = f":{e.monitor.port}" if e.monitor.port else ""
    return f"{e.monitor.type.upper()} {e.monitor.hostname}{port}"


def _facts(e: Event) -> list[tuple[str, str]]:
    if e.state == "notice":
        return [
            ("Notice", NOTICE_LABEL.get(e.kind, e.kind)),
            ("Severity", e.severity or NOTICE_SEVERITY),
            ("Monitor", f"{e.monitor.name} ({_target(e)})"),
        ]
    if e.flow is not None:
        return _flow_facts(e, e.flow)
    facts = [("State", e.state.upper()), ("Monitor", f"{e.monitor.name} ({_target(e)})")]
    if e.incident is not None:
        facts += [("Countries", _where(e)), ("Cause", e.incident.cause)]
        facts.append(("Down since", e.incident.started_at))
        if e.incident.ended_at:
            facts.append(("Ended at", e.incident.ended_at))
    return facts


def _slack(e: Event) -> bytes:
    """Every text that holds a name, host, cause or notice (all someone else's words) is a
    `plain_text` object, which Slack renders as typed: no link, mention or formatting. Only
    mailprobe's own console link is mrkdwn. Each is cut to its block's limit as sent."""
    blocks: list[Json] = [
        {"type": "header", "text": _plain(e.summary, SLACK_HEADER)},
        {"type": "section", "fields": [_plain(f"{k}: {v}", SLACK_FIELD) for k, v in _facts(e)]},
    ]
    if e.details:
        blocks.append({"type": "section", "text": _plain(e.details, SLACK_TEXT)})
    if e.console_url:
        link = f"<{_slack_escape(e.console_url)}|Open in mailprobe>"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": link}})
    # `text` is the notification's own line (and the fallback): mrkdwn, so escaped, and its
    # bare addresses kept from turning into links.
    text = cut_escaped(_unlinked(_slack_escape(e.summary)), SLACK_MESSAGE)
    return _json({"text": text, "blocks": blocks})


def _plain(text: str, limit: int) -> JsonObject:
    shown = cut(_unlinked(text), limit, slack_width) or "-"
    return {"type": "plain_text", "text": shown, "emoji": False}


def _slack_escape(text: str) -> str:
    """Slack's three control characters, escaped as its docs ask."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_WORD_JOINER: Final = "\u2060"


def _unlinked(text: str) -> str:
    """`text` with a word joiner after each "." and ":" and before each "@": read the same,
    but no client finds an address, a domain or a mention in it to link."""
    return (
        text.replace(".", "." + _WORD_JOINER)
        .replace(":", ":" + _WORD_JOINER)
        .replace("@", _WORD_JOINER + "@")
    )


def _teams(e: Event) -> bytes:
    """An Adaptive Card in a message: what Teams workflows ("Post to a channel when a webhook
    request is received") and the older incoming webhooks both take."""
    """Someone else's words (name, host, cause, notice) go in `TextRun`s, which Adaptive Cards
    never read as Markdown (a TextBlock's or a FactSet's text would make `[x](url)` a link);
    bare addresses are kept from being linked."""
    color = {"down": "Attention", "up": "Good"}.get(e.state, "Warning")
    body: list[Json] = [
        _rich([_run(e.summary, TEAMS_SUMMARY, weight="Bolder", size="Medium", color=color)]),
        *(
            _rich([_run(f"{k}: ", TEAMS_FACT, weight="Bolder"), _run(v, TEAMS_FACT)])
            for k, v in _facts(e)
        ),
    ]
    if e.details:
        body.append(_rich([_run(e.details, TEAMS_DETAILS)]))
    card: JsonObject = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    }
    if e.console_url:
        card["actions"] = [
            {"type": "Action.OpenUrl", "title": "Open in mailprobe", "url": e.console_url}
        ]
    return _json(
        {
            "type": "message",
            "attachments": [
                {
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "contentUrl": None,
                    "content": card,
                }
            ],
        }
    )


def _rich(inlines: list[Json]) -> JsonObject:
    return {"type": "RichTextBlock", "inlines": inlines}


def _run(text: str, limit: int, **style: str) -> JsonObject:
    """A TextRun of at most `limit` bytes of JSON: a card's texts together stay below
    TEAMS_PAYLOAD."""
    return {"type": "TextRun", "text": cut(_unlinked(text), limit, json_bytes), **style}


def incident_key(e: Event) -> str:
    """One key per incident (PagerDuty's dedup_key, Opsgenie's alias): the trigger, its
    reminders and its resolve all name the same alert. A test has its own."""
    ident = e.incident.id if e.incident is not None else e.id
    return f"mailprobe-{e.monitor.id}-{ident}"


# A notice's severity as PagerDuty's (its own four) and as Opsgenie's priority.
PAGERDUTY_SEVERITY: Final = {"critical": "critical", "warning": "warning", "info": "info"}
OPSGENIE_PRIORITY: Final = {"critical": "P2", "warning": "P3", "info": "P5"}


def change_url(url: str) -> str:
    """PagerDuty's Change Events endpoint beside the alert events' (`/v2/enqueue`)."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    path = path[: -len("/enqueue")] if path.endswith("/enqueue") else path
    return parts._replace(path=f"{path}/change/enqueue", query="").geturl()


def _pagerduty_change(e: Event, url: str, routing_key: str) -> Request:
    """ "Send a test" to PagerDuty: a Change Event, which shows on the service's timeline and
    proves the routing key, but opens no incident and pages no one."""
    body: JsonObject = {
        "routing_key": routing_key,
        "payload": {
            "summary": cut(e.summary, PAGERDUTY_SUMMARY),
            "source": "mailprobe",
            "timestamp": e.at,
            "custom_details": {"test": True},
        },
    }
    if e.console_url:
        body["links"] = [{"href": e.console_url, "text": "Open in mailprobe"}]
    return Request(change_url(url), {"Content-Type": "application/json"}, _json(body))


def _pagerduty(e: Event, url: str, routing_key: str) -> Request:
    opens = e.state in ("down", "notice")
    body: JsonObject = {
        "routing_key": routing_key,
        "dedup_key": incident_key(e),
        "event_action": "trigger" if opens else "resolve",
    }
    if opens:
        severity = "critical"
        if e.state == "notice":
            severity = PAGERDUTY_SEVERITY.get(e.severity or "", NOTICE_SEVERITY)
        custom_details: JsonObject = dict(_facts(e))
        if e.details:
            custom_details["Details"] = e.details[:MAX_DETAILS]
        body["payload"] = {
            "summary": cut(e.summary, PAGERDUTY_SUMMARY),
            "source": e.monitor.hostname,
            "severity": severity,
            "timestamp": e.incident.started_at if e.incident else e.at,
            "component": e.monitor.name,
            "group": e.monitor.type,
            "class": e.incident.cause_kind if e.incident else e.kind,
            "custom_details": custom_details,
        }
        body["client"] = "mailprobe"
        if e.console_url:
            body["client_url"] = e.console_url
            body["links"] = [{"href": e.console_url, "text": "Open in mailprobe"}]
    return Request(url, {"Content-Type": "application/json"}, _json(body))


def _opsgenie_close(alias: str, base: str, headers: dict[str, str], note: str) -> Request:
    url = f"{base.rstrip('/')}/v2/alerts/{quote(alias, safe='')}/close?identifierType=alias"
    body = {"source": "mailprobe", "note": cut(note, OPSGENIE_NOTE)}
    return Request(url, headers, _json(body))


def closes(e: Event) -> bool:
    """Whether `e` ends its incident's alert (a recovery, an incident closed for no data)."""
    return e.state in ("up", "unknown")


def _opsgenie(e: Event, base: str, api_key: str) -> Request:
    alias = incident_key(e)
    headers = {"Content-Type": "application/json", "Authorization": f"GenieKey {api_key}"}
    base = base.rstrip("/")
    if closes(e):
        return _opsgenie_close(alias, base, headers, e.summary)
    description = "\n".join(f"{k}: {v}" for k, v in _facts(e))
    if e.details:
        description += f"\n\n{e.details}"
    if e.console_url:
        description += f"\n{e.console_url}"
    priority = "P1"
    if e.state == "notice":
        priority = OPSGENIE_PRIORITY.get(e.severity or "", "P3")
    elif e.kind == "test":
        priority = "P5"  # the lowest: a test, closed by the next request
    body = {
        "message": cut(e.summary, OPSGENIE_MESSAGE),
        "alias": alias,
        "description": cut(description, OPSGENIE_DESCRIPTION),
        "source": "mailprobe",
        "entity": cut(e.monitor.hostname, OPSGENIE_ENTITY),
        "priority": priority,
        "tags": ["mailprobe", e.monitor.type] + (["test"] if e.kind == "test" else []),
        "details": {
            "monitorId": cut(e.monitor.id, OPSGENIE_DETAIL),
            "countries": cut(_where(e), OPSGENIE_DETAIL),
        },
    }
    return Request(f"{base}/v2/alerts", headers, _json(body))


def _alertmanager(e: Event, base: str, token: str | None, now: datetime) -> Request:
    """One alert a routing tree can match on (`alertname`, `severity`, `monitor`,
    `monitor_type`, `host`, `incident`); ended at the recovery."""
    notice = e.state == "notice"
    labels: JsonObject = {
        "alertname": "MailprobeNotice" if notice else "MailprobeMonitorDown",
        "severity": (e.severity or NOTICE_SEVERITY) if notice else "critical",
        "source": "mailprobe",
        "monitor": e.monitor.name,
        "monitor_id": e.monitor.id,
        "monitor_type": e.monitor.type,
        "host": e.monitor.hostname,
        "incident": e.incident.id if e.incident else e.id,
    }
    started = e.incident.started_at if e.incident else e.at
    if notice:
        labels["kind"] = e.kind
        started = e.at
    if e.kind == "test":
        ends = iso_ms(now + TEST_HOLD)
    elif e.state in ("down", "notice"):
        ends = iso_ms(now + ALERTMANAGER_HOLD)
    else:
        ends = (e.incident.ended_at if e.incident else None) or e.at
    alert: JsonObject = {
        "labels": labels,
        "annotations": {
            "summary": e.summary,
            "countries": _where(e),
            "cause": _cause(e)
            if e.incident
            else (e.details or "")[:MAX_DETAILS]
            if notice
            else "a test of the channel",
        },
        "startsAt": started,
        "endsAt": ends,
    }
    if e.flow is not None:
        annotations = alert["annotations"]
        if not isinstance(annotations, dict):
            raise BrokenInvariant(
                "channel_kinds._alertmanager: expected isinstance(annotations, dict)"
            )
        annotations["monitors"] = _shown(
            [_member(m) for m in e.flow.monitors], e.flow.monitor_count
        )
        annotations["flow_incident"] = e.flow.id
    if e.console_url:
        alert["generatorURL"] = e.console_url
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return Request(f"{base.rstrip('/')}/api/v2/alerts", headers, _json([alert]))


def _telegram(e: Event, base: str, token: str, chat_id: str) -> Request:
    """The Bot API's sendMessage to `chat_id`, in its HTML mode (only `<b>`, `<a>` used)."""
    icon = {"down": "\U0001f534", "up": "\U0001f7e2"}.get(e.state, "\u26aa")
    lines = [f"{icon} <b>{html.escape(e.summary)}</b>"]
    lines += [f"<b>{html.escape(k)}:</b> {html.escape(v)}" for k, v in _facts(e)]
    if e.details:
        lines.append(html.escape(e.details[:MAX_DETAILS]))
    if e.console_url:
        lines.append(f'<a href="{html.escape(e.console_url)}">Open in mailprobe</a>')
    body = {
        "chat_id": chat_id,
        "text": cut_html("\n".join(lines), TELEGRAM_TEXT),
        "parse_mode": "HTML",
        "disable_web_page_preview": True,
    }
    url = f"{base.rstrip('/')}/bot{token}/sendMessage"
    return Request(url, {"Content-Type": "application/json"}, _json(body))


def plain_text(e: Event) -> str:
    """The event as plain text (Apprise's body): facts, the notice's text, the console link."""
    lines = [f"{k}: {v}" for k, v in _facts(e)]
    if e.details:
        lines += ["", e.details[:MAX_DETAILS]]
    if e.console_url:
        lines += ["", e.console_url]
    return "\n".join(lines)


def requests(
    kind: str, e: Event, url: str, secret: str | None, now: datetime, chat_id: str | None = None
) -> list[Request]:
    """The HTTP requests, in order, that tell channel `kind` at `url` of `e`: one, but for
    "send a test", which must page no one: PagerDuty's is a Change Event, Opsgenie's a P5
    alert closed by a second request."""
    if e.kind == "test" and kind == "pagerduty":
        return [_pagerduty_change(e, url, secret or "")]
    first = request(kind, e, url, secret, now, chat_id)
    if e.kind == "test" and kind == "opsgenie":
        return [first, _opsgenie_close(incident_key(e), url, dict(first.headers), e.summary)]
    return [first]


def request(
    kind: str, e: Event, url: str, secret: str | None, now: datetime, chat_id: str | None = None
) -> Request:
    """The HTTP request that tells channel `kind` at `url` of `e`."""
    if kind == "webhook":
        body = _json(e)
        headers = {
            "Content-Type": "application/json",
            "X-Mailprobe-Event": e.id,
            SIGNATURE_HEADER: signature(secret or "", int(now.timestamp()), body),
        }
        return Request(url, headers, body)
    if kind == "slack":
        return Request(url, {"Content-Type": "application/json"}, _slack(e))
    if kind == "teams":
        return Request(url, {"Content-Type": "application/json"}, _teams(e))
    if kind == "pagerduty":
        return _pagerduty(e, url, secret or "")
    if kind == "opsgenie":
        return _opsgenie(e, url, secret or "")
    if kind == "alertmanager":
        return _alertmanager(e, url, secret, now)
    if kind == "telegram":
        return _telegram(e, url, secret or "", chat_id or "")
    raise ValueError(f"unknown channel kind {kind!r}")


# HTTP answers that would be the same again: the request itself is wrong. 408 and 429 say
# "later"; Opsgenie's 404 on a close means the alert is gone already (delivered).
_RETRYABLE: Final = frozenset({408, 425, 429})


def verdict(kind: str, e: Event, status: int) -> tuple[bool, bool]:
    """(delivered, permanent) for an HTTP answer `status` of channel `kind`."""
    if 200 <= status < 300:
        return True, False
    if kind == "opsgenie" and (closes(e) or e.kind == "test") and status == 404:
        return True, False
    permanent = 400 <= status < 500 and status not in _RETRYABLE
    return False, permanent


def test_event(channel_public_id: str, channel_name: str, now: datetime, url: str | None) -> Event:
    """The event "send a test" tells a channel: a made-up monitor, clearly a test."""
    return Event(
        id=event_id(f"test:{channel_public_id}:{now.isoformat()}"),
        kind="test",
        state="down",
        at=iso_ms(now),
        summary=f"[mailprobe] Test of channel {channel_name}: this is only a test",
        monitor=MonitorFacts(
            id="00000000-0000-0000-0000-000000000000",
            name="mailprobe test",
            type="smtp",
            hostname="test.invalid",
            port=None,
        ),
        incident=None,
        console_url=url,
    )
