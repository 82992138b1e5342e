"""Which of an agent's blocklist facts its round asked for, pure (issue 78): its answers are
shared with every organization whose monitors depend on the same name in that country
(`store.record`), so only what the job asked is taken.

With the job's ask (sealed with the job, controller.jobs.asks_seal) a name is asked when the
ask lists it (`ips`, `domains`: source `listed`), when it is one of a list's test entries, or
when the agent found it where the ask told it to look (`host` when it asks `host`, `mx:<host>`
when it names `mxDomain`), and it is not one the ask skips; an answer is taken only from a list
the ask names, about an asked name. Without an ask (an agent older than sealed asks, while
`ACCEPT_UNSEALED_SIDE_FACTS` is on) an answer is taken only about a name the facts themselves
name or a test entry."""

from controller.sidechecks.blocklists.rules import TEST_NAMES
from shared.sidechecks.blocklists import BlocklistAsk, Reputation


def within_ask(ask: BlocklistAsk | None, facts: Reputation) -> Reputation:
    """`facts` without the names and answers its round did not ask; `facts` itself when all
    were asked."""
    if ask is None:
        keep = set(facts.names) | TEST_NAMES
        answers = [a for a in facts.answers if a.name in keep]
        if len(answers) == len(facts.answers):
            return facts
        return Reputation(
            names=facts.names, answers=answers, errors=facts.errors, truncated=facts.truncated
        )
    listed = set(ask.ips) | {d.lower().rstrip(".") for d in ask.domains}
    names = {n: src for n, src in facts.names.items() if _asked(ask, listed, n, src)}
    skipped = set(ask.skip)
    tests = {z.zone: set(z.tests) for z in ask.zones}
    answers = [
        a
        for a in facts.answers
        if a.zone in tests
        and (a.name in tests[a.zone] or (a.name in names and a.name not in skipped))
    ]
    if len(names) == len(facts.names) and len(answers) == len(facts.answers):
        return facts
    return Reputation(names=names, answers=answers, errors=facts.errors, truncated=facts.truncated)


def _asked(ask: BlocklistAsk, listed: set[str], name: str, source: str) -> bool:
    if source == "listed":
        return name in listed
    if source == "host":
        return ask.host
    return source.startswith("mx:") and ask.mx_domain is not None
