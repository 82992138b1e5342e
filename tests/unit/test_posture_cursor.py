"""`cursor_move` (a routine monitor's posture pass) against posture's rules applied to every
round afresh: a round that says what the round before said is not judged again (its verdicts
are the round before's, against the same baselines), and the answer is the same, whether the
rounds repeat, drift, move a baseline for the first time or carry side checks' facts."""

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from itertools import groupby
from typing import Any
from uuid import UUID

import pytest

from controller.monitors.store import Monitor
from controller.monitors.thresholds import Thresholds
from controller.posture import store as db
from controller.posture.facts import StoredFacts
from controller.posture.observe import CursorMove, Read, _round_verdicts, cursor_move
from controller.posture.rules import Baseline, Tracker, baseline_moves, expiry_notice
from shared.messages import SmtpConfig

AT = datetime(2026, 3, 1, 12, tzinfo=UTC)
TLS = {
    "version": "TLSv1.3",
    "cipher": "TLS_AES_256_GCM_SHA384",
    "mode": "starttls",
    "certSha256": "ab" * 32,
    "certKeyType": "RSA",
    "certKeyBits": 2048,
    "certSignature": "sha256WithRSAEncryption",
    "chainVerified": True,
    "nameMatched": True,
    "certDaysLeft": 80,
}
CAPS = ["PIPELINING", "AUTH PLAIN LOGIN", "8BITMIME"]
BEFORE = ["PIPELINING", "STARTTLS", "8BITMIME"]
BASE = {"starttls": True, "auth": "LOGIN PLAIN", "tls_version": "TLSv1.3", "cert_sha256": "ab" * 32}


def monitor() -> Monitor:
    return Monitor(
        id=7,
        public_id=UUID("6f1c8a3e-6a0b-4a4e-9d55-0d3c3b0f5a11"),
        organization_id=1,
        customer_id=2,
        type="smtp",
        name="Relay",
        hostname="mx.example.test",
        port=25,
        status="active",
        check_interval=60,
        timeout_seconds=10,
        allowed_country_codes=None,
        config=SmtpConfig(),
        notification_email=None,
        notification_phone_number=None,
        mail_domain=None,
        next_due_at=None,
        created_at=AT,
        updated_at=AT,
        last_checked_at=None,
        config_as_sent={},
    )


def row(n: int, cc: str, **changes: Any) -> StoredFacts:
    values: dict[str, Any] = {
        "tls": dict(TLS),
        "capabilities": list(CAPS),
        "capabilities_before_tls": list(BEFORE),
        "banner": "220 mx.example.test ESMTP",
        "address": "192.0.2.1",
    }
    return StoredFacts(scheduled_at=AT + timedelta(minutes=n), country=cc, **(values | changes))


def reference(
    m: Monitor, start: db.Known, rows: Sequence[StoredFacts], until: datetime, t: Thresholds
) -> CursorMove | None:
    """`cursor_move`'s answer with every round judged afresh."""
    tracker = Tracker(open={}, streaks=dict(start.streaks))
    base: Mapping[str, Baseline] = start.baselines
    for _, group in groupby(rows, key=lambda r: r.scheduled_at):
        seen, verdicts = _round_verdicts(m, list(group), base, t.cert_expiry_days)
        appeared, cleared = tracker.step(verdicts)
        if appeared or cleared or tracker.open:
            return None
        base, changes = baseline_moves(seen, base)
        if changes:
            return None
        if any(
            expiry_notice(o.days_left, t.cert_expiry_days, ()) is not None
            for o in seen
            if o.cert_sha256 and o.days_left is not None
        ):
            return None
    return None if base != start.baselines else CursorMove(until, tracker.streaks)


PTR = {
    "addresses": [
        {"address": "192.0.2.1", "names": ["mx.example.test"], "confirmed": ["192.0.2.1"]}
    ]
}
NO_PTR = {"addresses": [{"address": "192.0.2.1", "names": []}]}
STRIPPED = {"capabilities_before_tls": ["PIPELINING", "8BITMIME"], "tls": TLS | {"mode": None}}
CASES: list[tuple[str, list[StoredFacts], dict[str, Baseline], CursorMove | None]] = [
    (
        "four rounds alike: nothing to write but the cursor",
        [row(n, cc) for n in range(1, 5) for cc in ("DE", "US")],
        {"DE": BASE, "US": BASE},
        CursorMove(AT + timedelta(minutes=4), {}),
    ),
    (
        "one round without STARTTLS in US: a streak, cleared by the next",
        [row(1, "DE"), row(1, "US", **STRIPPED), row(2, "DE"), row(2, "US")],
        {"DE": BASE, "US": BASE},
        CursorMove(AT + timedelta(minutes=2), {}),
    ),
    (
        "the last round without STARTTLS in US: its streak is kept",
        [row(1, "DE"), row(1, "US"), row(2, "DE"), row(2, "US", **STRIPPED)],
        {"DE": BASE, "US": BASE},
        CursorMove(AT + timedelta(minutes=2), {("starttls_stripped", "US"): 1}),
    ),
    (
        "two rounds alike without STARTTLS in US: the repeated round opens the finding",
        [row(n, cc, **(STRIPPED if cc == "US" else {})) for n in (1, 2) for cc in ("DE", "US")],
        {"DE": BASE, "US": BASE},
        None,
    ),
    (
        "a country's first round sets its baseline: written by the full path",
        [row(n, cc) for n in (1, 2) for cc in ("DE", "US")],
        {"DE": BASE},
        None,
    ),
    (
        "a certificate changed everywhere: a baseline change",
        [row(n, cc, tls=TLS | {"certSha256": "cd" * 32}) for n in (1, 2) for cc in ("DE", "US")],
        {"DE": BASE, "US": BASE},
        None,
    ),
    (
        "an expiry threshold crossed",
        [row(n, cc, tls=TLS | {"certDaysLeft": 6}) for n in (1, 2) for cc in ("DE", "US")],
        {"DE": BASE, "US": BASE},
        None,
    ),
    (
        "side checks' facts, alike each round",
        [row(n, cc, side={"reverse_dns": PTR}) for n in (1, 2, 3) for cc in ("DE", "US")],
        {"DE": BASE, "US": BASE},
        CursorMove(AT + timedelta(minutes=3), {}),
    ),
    (
        "side checks' facts, a missing PTR record from the second round on",
        [
            row(n, cc, side={"reverse_dns": PTR if n == 1 else NO_PTR})
            for n in (1, 2, 3)
            for cc in ("DE", "US")
        ],
        {"DE": BASE, "US": BASE},
        None,
    ),
]


@pytest.mark.parametrize(
    ("rows", "baselines", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_a_routine_pass_is_what_judging_every_round_afresh_says(
    rows: list[StoredFacts], baselines: dict[str, Baseline], expected: CursorMove | None
) -> None:
    m, t = monitor(), Thresholds()
    start = db.Known(AT, {}, {}, baselines)
    until = rows[-1].scheduled_at
    got = cursor_move(m, start, {}, until, False, t, Read(AT, rows))
    assert got == reference(m, start, rows, until, t)
    assert got == expected
