"""Notice budgets in the simulation, judged by controller/notify/budget.py's rule (issue 79): pure.

Every organization's outage e-mails draw on its own budget per clock hour (UTC). Per
organization and hour:

| what | the rule |
| --- | --- |
| sent | at most the budget |
| dropped | only once the budget is spent (sent = budget), each naming its setting |
| pending | none left once the history is over |
| delay | each row sent or dropped within `bound` s of its queueing: no one's budget delays it |

The owners' notice that a budget was reached is not judged here (the simulated organizations
have no owners)."""

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from controller.notify.budget import window

SETTING = "ORG_MAX_NOTIFICATIONS_PER_HOUR"


@dataclass(frozen=True)
class Row:
    """One outage e-mail of the outbox as the history left it."""

    organization: str
    status: str  # pending, sent, failed, dropped
    created: datetime
    done: datetime | None  # sent_at, or when it was dropped
    error: str | None


def judged(rows: Sequence[Row], budget: int, bound: float) -> list[str]:
    """What broke the budget's rule (`budget`: outage e-mails per organization and hour)."""
    wrong: list[str] = []
    sent: Counter[tuple[str, datetime]] = Counter()
    dropped: Counter[tuple[str, datetime]] = Counter()
    for r in rows:
        key = (r.organization, window(r.created))
        if r.status == "sent":
            sent[key] += 1
        elif r.status == "dropped":
            dropped[key] += 1
            if SETTING not in (r.error or ""):
                wrong.append(f"{r.organization}: a notice dropped without naming {SETTING}")
        else:
            wrong.append(f"{r.organization}: a notice left {r.status} (queued {r.created})")
        if r.status in ("sent", "dropped"):
            late = (r.done - r.created).total_seconds() if r.done else None
            if late is None or late > bound:
                wrong.append(
                    f"{r.organization}: a notice queued {r.created} {r.status} {late} s on"
                )
    for (org, hour), n in sent.items():
        if n > budget:
            wrong.append(f"{org} {hour:%H:%M}: {n} sent, budget {budget}")
    for (org, hour), n in dropped.items():
        if sent[org, hour] != budget:
            wrong.append(f"{org} {hour:%H:%M}: {n} dropped with {sent[org, hour]} of {budget} sent")
    return wrong
