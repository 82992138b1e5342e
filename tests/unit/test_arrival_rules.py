"""controller.arrivals.rules.py as a table, then against a seeded sender that stops for a
while and starts again: at every minute the verdict is what the ground truth says."""

import random
from datetime import UTC, datetime, timedelta

import pytest

from controller.arrivals.rules import Rule, Verdict, judge

T0 = datetime(2026, 11, 28, 23, 0, tzinfo=UTC)  # the history crosses midnight


def m(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


EVERY_10 = Rule(every=timedelta(minutes=10), grace=timedelta(minutes=2))
TWICE = Rule(every=timedelta(minutes=10), grace=timedelta(minutes=2), expected=2)

# (rule, arrivals in minutes, now in minutes, verdict)
TABLE = [
    (EVERY_10, [], 5, Verdict("pending", 0, due_at=m(12))),
    (EVERY_10, [], 12, Verdict("down", 0, late_since=m(12))),
    (EVERY_10, [3], 5, Verdict("up", 1, due_at=m(15))),
    (EVERY_10, [3], 14.9, Verdict("up", 1, due_at=m(15))),
    (EVERY_10, [3], 15, Verdict("down", 0, late_since=m(15))),
    (EVERY_10, [3], 40, Verdict("down", 0, late_since=m(15))),
    (EVERY_10, [3, 41], 42, Verdict("up", 1, due_at=m(53))),
    (EVERY_10, [3, 50], 42, Verdict("down", 0, late_since=m(15))),  # 50 not known yet at 42
    (TWICE, [3, 8], 12, Verdict("up", 2, due_at=m(15))),
    (TWICE, [3, 8], 16, Verdict("down", 1, late_since=m(15))),
    (TWICE, [8], 13, Verdict("down", 1, late_since=m(12))),
]


@pytest.mark.parametrize(("rule", "arrivals", "now", "verdict"), TABLE)
def test_the_verdict_table(rule: Rule, arrivals: list[float], now: float, verdict: Verdict) -> None:
    assert judge(rule, [m(a) for a in arrivals], T0, m(now)) == verdict


@pytest.mark.parametrize(
    ("sender", "subject", "said", "match"),
    [
        ("", "", ("a@x.test", "", "anything"), True),
        ("erp.example", "", ("Invoices <noreply@ERP.example.org>", "", "x"), True),
        ("erp.example", "", ("someone@else.test", "bounce@erp.example.org", "x"), True),
        ("erp.example", "", ("someone@else.test", "b@else.test", "x"), False),
        ("", "Nightly", ("a@x.test", "", "[ok] nightly report"), True),
        ("", "nightly", ("a@x.test", "", "weekly report"), False),
    ],
)
def test_which_arrivals_match(
    sender: str, subject: str, said: tuple[str, str, str], match: bool
) -> None:
    assert Rule(every=timedelta(minutes=5), sender=sender, subject=subject).matches(*said) is match


def test_bad_settings_are_refused() -> None:
    for every, grace, expected in [(0, 0, 1), (5, -1, 1), (5, 0, 0)]:
        with pytest.raises(ValueError):
            Rule(timedelta(minutes=every), timedelta(minutes=grace), expected)


@pytest.mark.parametrize("seed", range(20))
def test_a_sender_that_stops_and_starts_again_against_ground_truth(seed: int) -> None:
    """A sender every 10 min with jitter stops for a seeded while, then sends again: at each
    minute the verdict is `down` exactly when the last mail is older than 12 min (and the
    monitor has watched 12 min), `late_since` is that mail + 12 min, and it is `up` again at
    the first mail after the gap."""
    rng = random.Random(seed)
    stop_at, gap = rng.uniform(30, 90), rng.uniform(15, 120)
    sent, t = [], rng.uniform(0, 10)
    while t < 300:
        if not stop_at <= t < stop_at + gap:
            sent.append(t)
        t += rng.uniform(6, 10)
    downs = 0
    for minute in range(0, 300):
        now = float(minute)
        known = [s for s in sent if s <= now]
        verdict = judge(EVERY_10, [m(s) for s in sent], T0, m(now))
        last = max(known, default=None)
        if last is None:
            want = "pending" if now < 12 else "down"
        else:
            want = "up" if now - last < 12 else "down"
        assert verdict.state == want, (seed, minute, last)
        if want == "down" and last is not None:
            downs += 1
            assert verdict.late_since == m(last + 12)
    assert downs > 0  # the gap was seen
    first_after = min(s for s in sent if s >= stop_at + gap)
    after = judge(EVERY_10, [m(s) for s in sent], T0, m(first_after))
    assert after.state == "up"
