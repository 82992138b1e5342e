"""What a report finding's notice says: the domain the reports are about and who sent them
(reporters are strangers: what they say is theirs, not something mailprobe's agents saw), each
finding's title, severity and detail, the monitors it is shown on, and, for a digest, how much
news it gathers. Built only from the monitors' names, types, hosts and ports and the findings,
never a secret. Pure."""

from collections.abc import Sequence
from datetime import datetime

from controller.monitors.store import Monitor
from controller.notify.links import Links
from controller.notify.texts import Texts, monitor_facts, one_line, with_facts, with_link
from controller.posture.notices import title
from controller.posture.rules import CODES, Finding
from shared.timefmt import iso_ms

SHOWN_REPORTERS = 5
SHOWN_MONITORS = 5
_ORDER = ("critical", "warning", "info")


def _reporters(reporters: Sequence[str]) -> str:
    named = [one_line(r) for r in reporters[:SHOWN_REPORTERS]]
    more = (
        f" and {len(reporters) - SHOWN_REPORTERS} more" if len(reporters) > SHOWN_REPORTERS else ""
    )
    return ", ".join(named) + more if named else "no reporter named"


def _monitors(monitors: Sequence[Monitor]) -> str:
    named = [one_line(m.name) for m in monitors[:SHOWN_MONITORS]]
    more = len(monitors) - SHOWN_MONITORS
    return ", ".join(named) + (f" and {more} more" if more > 0 else "")


def report_findings(
    monitors: Sequence[Monitor],
    domain: str,
    found: Sequence[Finding],
    reporters: Sequence[str],
    links: Links,
    digest: tuple[int, datetime] | None = None,
) -> Texts:
    """The one notice of `found` (not empty) about `domain`, reported by `reporters`, shown on
    `monitors` (not empty; the first named in full); `digest`: the new items gathered since
    the last notice, and when it went."""
    monitor = monitors[0]
    ordered = sorted(found, key=lambda f: (_ORDER.index(CODES[f.code][0]), f.code))
    worst = CODES[ordered[0].code][0]
    titles = [title(f.code) for f in ordered]
    name = one_line(monitor.name)
    if len(monitors) > 1:
        name += f" and {len(monitors) - 1} more"
    who = _reporters(reporters)
    said = titles[0] if len(titles) == 1 else f"{len(titles)} findings ({worst})"
    subject = f"[mailprobe] {said} for {domain}: {name}"
    lead = f"Reports about {domain} from {who} say: {', '.join(titles)}."
    if digest is not None:
        news, since = digest
        subject = f"[mailprobe] Digest: {said} for {domain}: {name}"
        lead += f" {news} new items were reported since the last notice ({iso_ms(since)})."
    facts: list[tuple[str, str]] = [("Domain", domain), ("Reported by", who)]
    for f, what in zip(ordered, titles, strict=True):
        facts += [
            (what, CODES[f.code][0]),
            ("Reported", one_line(f.detail)),
            ("What to do", CODES[f.code][1]),
        ]
    if len(monitors) > 1:
        facts.append(("Shown on", _monitors(monitors)))
    facts += monitor_facts(monitor, links)
    sms = f"mailprobe {worst}: reports about {domain} from {who}: {', '.join(titles)}"
    return with_facts(subject, lead, facts, with_link(sms, links.monitor(monitor.public_id)))
