"""Maintenance windows in the simulation, judged by docs/alerts.md's rule (issue 79): pure.

Inside a monitor's window no `down`, reminder or recovery notice of it is queued. Once the window
is over (its next round judged), what it held back goes out, once:

| an incident of the monitor | owed after the window |
| --- | --- |
| opened inside, still open at its end | one `down` notice |
| opened and over inside, never told | nothing |
| told `down` before it, over inside | one `recovered` notice |

An incident whose outage ends within `slack` seconds of the window's end may fall either way
and is not judged; nor is one of a monitor with two windows close together."""

from collections.abc import Mapping, Sequence

from testkit.campaigns.verdict_truth import Incident, Notice

PAGES = frozenset({"down", "recovered", "reminder"})


def _told(inc: Incident, notices: Sequence[Notice]) -> list[Notice]:
    return [
        n
        for n in notices
        if n.incident_id == inc.id or (inc.flow is not None and n.flow == inc.flow)
    ]


def judged(
    windows: Mapping[str, Sequence[tuple[float, float]]],
    incidents: Sequence[Incident],
    notices: Sequence[Notice],
    slack: float,
) -> list[str]:
    """What broke the rule, per window (`windows`: target → (start, end), epoch seconds)."""
    wrong: list[str] = []
    for target, spans in windows.items():
        mine = [i for i in incidents if i.target == target]
        pages = [n for n in notices if n.target == target and n.kind in PAGES]
        for start, end in spans:
            label = f"{target} window {start:.0f}-{end:.0f}"
            inside = [n for n in pages if start <= n.at < end]
            if inside:
                wrong.append(f"{label}: {len(inside)} notices queued inside ({inside[0].kind})")
            for inc in mine:
                ended = inc.ended_at
                if ended is not None and abs(ended - end) <= slack:
                    continue  # over about when the window ends: either way is right
                told = [n for n in _told(inc, pages) if n.kind in ("down", "recovered")]
                still_open = ended is None or ended > end
                if start <= inc.opened_at < end:
                    downs = [n for n in told if n.kind == "down" and n.at >= end]
                    if still_open and len(downs) != 1:
                        wrong.append(
                            f"{label}: incident {inc.id} open at its end told {len(downs)}x"
                        )
                    if not still_open and told:
                        wrong.append(f"{label}: incident {inc.id} over inside told {len(told)}x")
                elif inc.opened_at < start and ended is not None and start <= ended < end:
                    if not any(n.kind == "down" and n.at < start for n in told):
                        continue
                    ups = [n for n in told if n.kind == "recovered" and n.at >= end]
                    if len(ups) != 1:
                        wrong.append(
                            f"{label}: incident {inc.id} over inside recovered {len(ups)}x"
                        )
    return wrong
