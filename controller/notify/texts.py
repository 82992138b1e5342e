"""What a notification says: subject, plain text and HTML for e-mail, one short line for SMS.

Built only from the monitor's name, type, host and port and the incident (times, cause,
countries): never from a monitor's config, so never a secret. Control characters (a line break
would end an e-mail header) are shown as spaces: the API refuses them in names, but a name
stored before it did must not stop a notice.
"""

import html
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from controller.logins.backoff import Backoff
from controller.monitors.kinds import TYPE_LABELS
from controller.notify.causes import label
from controller.notify.incident import Incident
from controller.notify.links import Links
from shared.timefmt import iso_ms

if TYPE_CHECKING:  # the type only: texts read no store
    from controller.monitors.store import Monitor

Kind = Literal["down", "reminder", "recovered", "no_data"]

_HEADLINE = {
    "down": "DOWN",
    "reminder": "Still down",
    "recovered": "Recovered",
    "no_data": "Closed, no data",
}


@dataclass(frozen=True, slots=True)
class Texts:
    subject: str
    text: str
    html: str
    sms: str


def duration(seconds: float) -> str:
    """`45s`, `12m 30s`, `3h 5m`, `2d 4h`."""
    s = max(0, round(seconds))
    days, s = divmod(s, 86_400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (s, "s")]
    shown = [f"{n}{unit}" for n, unit in parts if n][:2]
    return " ".join(shown) or "0s"


def one_line(text: str) -> str:
    """`text` with control characters and line or paragraph separators as spaces."""
    return "".join(" " if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch for ch in text)


def target(monitor: "Monitor") -> str:
    """`SMTP mx.example.com:25`: the monitor's type, host and port, as notices name them."""
    port = f":{monitor.port}" if monitor.port else ""
    return f"{TYPE_LABELS.get(monitor.type, monitor.type)} {monitor.hostname}{port}"


class Url(str):
    """A fact's value that is a link (shown as one in HTML)."""


def _cell(value: str) -> str:
    if isinstance(value, Url):
        return f"<a href='{html.escape(value)}'>{html.escape(value)}</a>"
    return html.escape(value)


def monitor_facts(monitor: "Monitor", links: Links) -> list[tuple[str, str]]:
    """What names the monitor in a notice: its name, type, host and port, and its console page
    (its id when no PUBLIC_URL is set)."""
    named = ("Monitor", f"{one_line(monitor.name)} ({target(monitor)})")
    url = links.monitor(monitor.public_id)
    if url is None:
        return [named, ("Monitor id", str(monitor.public_id))]
    return [named, ("Console", Url(url))]


def with_link(sms: str, url: str | None, limit: int = 300) -> str:
    """An SMS line with the console link after it when both fit `limit`; else the line alone."""
    line = sms[:limit]
    return f"{line} {url}" if url and len(line) + 1 + len(url) <= limit else line


def with_facts(subject: str, lead: str, facts: list[tuple[str, str]], sms: str) -> Texts:
    """A notice of a lead sentence and a table of facts (`(label, value)`)."""
    text = lead + "\n\n" + "\n".join(f"{k}: {v}" for k, v in facts) + "\n\n-- mailprobe\n"
    rows = "".join(
        f"<tr><th align='left'>{html.escape(k)}</th><td>{_cell(v)}</td></tr>" for k, v in facts
    )
    body = (
        f"<html><body><p><strong>{html.escape(lead)}</strong></p>"
        f"<table>{rows}</table><p>-- mailprobe</p></body></html>"
    )
    return Texts(subject, text, body, sms[:300])


def where_to_look(monitor: "Monitor", links: Links) -> str:
    """The closing line of a notice in paragraphs: the monitor's console page, else its id."""
    url = links.monitor(monitor.public_id)
    return f"Console: {url}" if url else f"Monitor id: {monitor.public_id}"


def in_paragraphs(subject: str, lines: list[str], sms: str) -> Texts:
    """A notice of a few paragraphs."""
    text = "\n\n".join(lines) + "\n\n-- mailprobe\n"
    body = "".join(f"<p>{html.escape(line)}</p>" for line in lines)
    return Texts(subject, text, f"<html><body>{body}</body></html>", sms)


def render(
    kind: Kind,
    monitor: "Monitor",
    incident: Incident,
    now: datetime,
    links: Links,
    evidence: list[tuple[str, str]] | None = None,
) -> Texts:
    """`evidence`: facts of the findings attached to its incident meanwhile."""
    name = one_line(monitor.name)
    started = incident.started_at
    ended = incident.ended_at
    lasted = duration(((ended or now) - started).total_seconds())
    where = ", ".join(incident.countries) or "-"
    if kind == "recovered":
        subject = f"[mailprobe] Recovered: {name} after {lasted}"
        lead = f"{name} ({target(monitor)}) is up again after {lasted} of downtime."
    elif kind == "no_data":
        subject = f"[mailprobe] Closed for lack of data: {name} (not recovered)"
        lead = (
            f"{name} ({target(monitor)}) was down; its incident is closed because no check"
            " result could be had since, not because it recovered."
        )
    elif kind == "reminder":
        subject = f"[mailprobe] Still down: {name} for {lasted}"
        lead = f"{name} ({target(monitor)}) has been down for {lasted}."
    else:
        subject = f"[mailprobe] DOWN: {name}"
        lead = f"{name} ({target(monitor)}) is down."
    facts = [
        ("Cause", incident.cause),
        ("Seen from", where),
        ("Down since", iso_ms(started)),
    ]
    if ended is not None and kind == "no_data":
        facts += [("No data since", iso_ms(ended)), ("Why", incident.end_reason or "-")]
    elif ended is not None:
        facts += [("Up again at", iso_ms(ended)), ("Downtime", lasted)]
    facts += evidence or []
    facts += monitor_facts(monitor, links)
    sms = f"mailprobe {_HEADLINE[kind]}: {name} ({monitor.hostname})"
    sms += (
        f" after {lasted}"
        if kind == "recovered"
        else ": incident closed, no data, not recovered"
        if kind == "no_data"
        else f": {label(incident.cause_kind)} in {where}"
    )
    return with_facts(subject, lead, facts, with_link(sms, links.monitor(monitor.public_id)))


def render_backoff(
    monitor: "Monitor", countries: list[str], backoff: Backoff, cap: timedelta, links: Links
) -> Texts:
    """The owner's one notice that the monitor's credentials were rejected and its logins
    slowed."""
    name = one_line(monitor.name)
    where = ", ".join(sorted(countries)) or "-"
    retry = iso_ms(backoff.retry_at)
    subject = f"[mailprobe] Credentials rejected: {name}"
    lines = [
        f"{name} ({target(monitor)}) rejected the monitor's credentials (seen from: {where}).",
        "Checks that log in are slowed so the account is not locked: the next login is at "
        f"{retry}, then less and less often (at most {duration(cap.total_seconds())} apart), "
        "from one country at a time.",
        "Update the monitor's credentials to resume its checks at once.",
        where_to_look(monitor, links),
    ]
    sms = one_line(f"mailprobe: {name} credentials rejected; logins slowed until updated")[:160]
    return in_paragraphs(subject, lines, sms)


def render_delivery_backoff(monitor: "Monitor", rounds: int, per_hour: int, links: Links) -> Texts:
    """The owners' one notice that a round trip's messages stopped arriving and its sending was
    slowed (controller.roundtrips.rules)."""
    name = one_line(monitor.name)
    subject = f"[mailprobe] Round trip not delivered, sending slowed: {name}"
    lines = [
        f"{name} ({target(monitor)}): the probe message did not arrive in the monitored mailbox"
        f" in {rounds} rounds in a row.",
        f"So that nobody is mailed in vain, the monitor now sends at most {per_hour} message an"
        " hour, until one arrives again or its recipient (`to`) or mailbox (`receive`) change.",
        "Check that `to` is delivered to the mailbox the monitor reads.",
        where_to_look(monitor, links),
    ]
    sms = one_line(f"mailprobe: {name} round trip not delivered; sending slowed")[:160]
    return in_paragraphs(subject, lines, sms)


def render_held_back(
    organization: str,
    what: str,
    setting: str,
    per_hour: int,
    until: datetime,
    monitor: "Monitor",
    links: Links,
) -> Texts:
    """The owners' notice that their organization's hourly budget of `what` notifications
    (`setting`) was reached; it is whole again at `until`. `monitor`: the one whose
    notification was the first held back."""
    name = one_line(monitor.name)
    lines = [
        f"Your organization {one_line(organization)} reached its budget of {per_hour:,} {what}"
        f" notifications an hour ({setting}).",
        f"Further {what} notifications until {iso_ms(until)} are not sent: each monitor's alert"
        " history lists them as `dropped`. Incidents still open and close as before.",
        f"The first held back was about {name} ({target(monitor)}). So many notifications"
        " usually mean monitors that flap, or notification addresses someone should not have"
        " set.",
        where_to_look(monitor, links),
    ]
    subject = f"[mailprobe] {what} notifications held back: hourly budget reached"
    return in_paragraphs(subject, lines, "")


def render_login_cap(monitor: "Monitor", cap: int, since: datetime, links: Links) -> Texts:
    """The owners' one notice that a monitor's logins reached its account's cap."""
    name = one_line(monitor.name)
    lines = [
        f"{name} ({target(monitor)}) reached the cap of {cap:,} logins to its account per 10"
        f" minutes (your organization's monitors of that account together; LOGIN_CAP_PER_ACCOUNT"
        f" at most), at {iso_ms(since)}.",
        "Checks that would log in past it are recorded `login_capped` (missed) until the count"
        " falls again. An honest configuration stays well below it: look for trigger-checks in"
        " a loop, or an agent that repeats jobs.",
        where_to_look(monitor, links),
    ]
    subject = f"[mailprobe] Login cap reached: {name}"
    return in_paragraphs(subject, lines, "")


def render_oauth2_token(
    monitor: "Monitor", endpoint: str, error: str, message: str, links: Links
) -> Texts:
    """The owners' one notice that a monitor's OAuth2 token endpoint gave no token (until the
    grant works again or changes)."""
    name = one_line(monitor.name)
    said = one_line(f"{error}: {message}" if message else error)
    lines = [
        f"{name} ({target(monitor)}) could not get an OAuth2 access token: the token endpoint"
        f" {one_line(endpoint)} answered {said}.",
        "Its checks are not sent and are recorded `oauth2_token` (missed, not a mail server"
        " failure) until a token comes. `invalid_grant` means the refresh token expired or was"
        " revoked, or the user's consent or password changed: get a new refresh token and"
        " update the monitor's `oauth2.refreshToken`. `invalid_client` or `unauthorized_client`:"
        " check the client id, secret and the app's permissions; `invalid_scope`: the scopes.",
        where_to_look(monitor, links),
    ]
    subject = f"[mailprobe] OAuth2 token refused: {name}"
    return in_paragraphs(subject, lines, "")
