"""Gmail's quota units per user bounded across agents and countries, and every mailbox a job
calls charged (issue 82), on real parts: admission's reservation (`api_calls_store`, SQL
`api_calls_reserve`) in PostgreSQL for seeded histories of several countries' mailbox checks
and round trips on Gmail users; then an agent runs the jobs with the units they were given
against the Gmail peer, which counts the units each user spent."""

import os
import random
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec
import pytest
import trustme

from agent.probers.run import run_check
from agent.probers.tls import SslContexts, build_ssl_contexts
from controller.monitors.mailbox_apis import Charge
from controller.scheduling import api_calls_store
from controller.scheduling.plan import PlannedRound
from controller.settings import SchedulingSettings
from shared.clock import WALL
from shared.messages import CheckJob, ImapPopConfig, MonitorType
from shared.secret import Secret
from shared.timefmt import iso_ms
from testkit.peers.gmail import GmailPeer, serve_gmail
from testkit.peers.jobs import make_job

BOX, SENDER = "probe@example.test", "sender@example.test"
# Scaled down: a round trip spends 600 units (100 on its sender, 500 on its mailbox), a
# mailbox check 2; the probe mailbox takes 1,300 a minute, so two round trips and a few checks.
SETTINGS = SchedulingSettings(gmail_units_per_user=1_300, gmail_units_per_round_trip=600)
T0 = datetime(2026, 11, 29, 23, 58, tzinfo=UTC)  # the history crosses UTC midnight
SEEDS = [int(s) for s in os.environ.get("GMAIL_UNITS_SEEDS", "82,83,84").split(",")]


def _job(
    tenant: str, cc: str, at: datetime, kind: MonitorType = "imap", port: int = 443, token: str = ""
) -> CheckJob:
    config = ImapPopConfig(user=BOX, api="gmail", access_token=Secret(token))
    return make_job(
        kind,
        port,
        config,
        job_id=str(uuid.uuid4()),
        country=cc,
        tenant=tenant,
        scheduled_at=iso_ms(at),
        timeout=3.0,
    )


def _round(jobs: list[CheckJob], at: datetime, charges: list[Charge]) -> PlannedRound:
    return PlannedRound(1, at, None, jobs=jobs, api_charges=charges)


CHECK = [Charge("gmail", "box", "check")]
TRIP = [Charge("gmail", "sender", "send"), Charge("gmail", "box", "read")]


@pytest.mark.parametrize("seed", SEEDS)
async def test_reserved_units_never_pass_a_users_quota_in_any_minute(
    pool: asyncpg.Pool, seed: int
) -> None:
    """A seeded history of passes, each with jobs from three countries: mailbox checks of the
    probe mailbox and round trips sending as the sender and reading the probe mailbox; some
    refused by admission afterwards (given back). Judged per user: in every minute, the units
    of the jobs kept never pass the quota; each job carries all it needs or nothing; a round
    trip held on one mailbox holds nothing on the other."""
    rng = random.Random(seed)
    tenant = f"org-{uuid.uuid4().hex[:8]}"
    spent: dict[str, list[tuple[datetime, int]]] = defaultdict(list)
    held = released = 0
    async with pool.acquire() as conn:
        at = T0
        for _ in range(rng.randint(30, 50)):
            at += timedelta(seconds=rng.choice((5, 10, 20)))
            rounds = [
                _round([_job(tenant, cc, at) for _ in range(rng.randint(0, 3))], at, CHECK)
                for cc in ("DE", "FR", "US")
            ]
            if rng.random() < 0.5:
                trips = [_job(tenant, cc, at, "roundtrip") for cc in rng.sample(("DE", "FR"), 2)]
                rounds.append(_round(trips, at, TRIP))
            rng.shuffle(rounds)
            async with conn.transaction():
                await api_calls_store.reserve(conn, rounds, at, SETTINGS)
                jobs = [(r, j) for r in rounds for j in r.jobs]
                refused = [j for _, j in jobs if j.api_units and rng.random() < 0.2]
                await api_calls_store.release(conn, refused)
            gone = {j.job_id for j in refused}
            released += len(gone)
            for r, job in jobs:
                want = 2 if r.api_charges is CHECK else 600
                assert job.api_units in (0, want) and job.api_calls is None, job
                rows = await conn.fetch(
                    "SELECT mailbox, given FROM api_calls WHERE job = $1", uuid.UUID(job.job_id)
                )
                if not job.api_units or job.job_id in gone:
                    held += job.api_units == 0
                    assert rows == [], rows  # nothing left reserved for a job that will not run
                    continue
                assert sum(row["given"] for row in rows) == want
                for charge in r.api_charges:
                    spent[charge.mailbox].append((at, api_calls_store.need(charge, SETTINGS)))
    for box, ledger in spent.items():
        for start in sorted({at for at, _ in ledger}):
            units = sum(n for at, n in ledger if start <= at < start + api_calls_store.GMAIL_WINDOW)
            assert units <= SETTINGS.gmail_units_per_user, (seed, box, start, units)
    assert held and released  # the history held some jobs and refused some
    print(
        f"gmail units seed {seed}: {sum(len(v) for v in spent.values())} charges kept, "
        f"{held} jobs held, {released} refused and given back"
    )


async def test_a_round_trip_held_on_its_sender_takes_nothing_from_its_mailbox(
    pool: asyncpg.Pool,
) -> None:
    """The sender's minute is spent by other round trips sending as it: a round trip reading
    a fresh mailbox is held on its sender and leaves the fresh mailbox's units untouched, so a
    mailbox check of that mailbox still fits whole."""
    tenant = f"org-{uuid.uuid4().hex[:8]}"
    at = T0 + timedelta(hours=3)
    settings = SchedulingSettings(gmail_units_per_user=600, gmail_units_per_round_trip=600)
    fill = [Charge("gmail", "sender", "send"), Charge("gmail", "other", "read")]
    trip = [Charge("gmail", "sender", "send"), Charge("gmail", "fresh", "read")]
    async with pool.acquire() as conn:
        spend = _round([_job(tenant, "DE", at, "roundtrip") for _ in range(6)], at, fill)
        await api_calls_store.reserve(conn, [spend], at, settings)
        # 600 units a minute: the sender takes six sends of 100, but "other" one read of 500.
        assert sorted(j.api_units or 0 for j in spend.jobs) == [0, 0, 0, 0, 0, 600]
        r = _round([_job(tenant, "FR", at, "roundtrip")], at, trip)
        await api_calls_store.reserve(conn, [r], at, settings)
        assert r.jobs[0].api_units == 600  # the sender has 500 left: its send fits
        again = _round([_job(tenant, "US", at, "roundtrip") for _ in range(5)], at, trip)
        await api_calls_store.reserve(conn, [again], at, settings)
        assert [j.api_units for j in again.jobs] == [0] * 5  # "fresh" has 100 left: no read fits
        check = _round([_job(tenant, "US", at)], at, [Charge("gmail", "fresh", "check")])
        await api_calls_store.reserve(conn, [check], at, settings)
        assert check.jobs[0].api_units == 2
        rows = await conn.fetch(
            "SELECT mailbox, sum(given) AS n FROM api_calls WHERE mailbox LIKE $1 || ':%'"
            " GROUP BY mailbox ORDER BY mailbox",
            tenant,
        )
    assert {row["mailbox"].split(":")[1]: row["n"] for row in rows} == {
        "fresh": 502,
        "other": 500,
        "sender": 200,
    }


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ssl_contexts(ca: trustme.CA) -> SslContexts:
    return build_ssl_contexts(cadata=ca.cert_pem.bytes().decode())


@pytest.fixture
async def gmail(ca: trustme.CA) -> AsyncIterator[GmailPeer]:
    async with serve_gmail(GmailPeer({BOX}), ca) as peer:
        yield peer


async def test_an_agent_spends_no_more_units_than_it_was_given(
    pool: asyncpg.Pool, gmail: GmailPeer, ssl_contexts: SslContexts
) -> None:
    """The jobs as admission left them, run by an agent against the Gmail peer: a check given
    its 2 units is `up` and the peer counts 2; a check held ends `inconclusive` (throttled, not
    sent) and the peer counts nothing more; a check given 1 unit (less than it needs) calls
    the profile (1) and stops before the label."""
    tenant = f"org-{uuid.uuid4().hex[:8]}"
    at = T0 + timedelta(hours=5)
    settings = SchedulingSettings(gmail_units_per_user=100, gmail_units_per_round_trip=600)
    token = gmail.token(BOX)
    jobs = [_job(tenant, cc, at, port=gmail.port, token=token) for cc in ("DE", "FR") * 26]
    r = _round(jobs, at, CHECK)
    async with pool.acquire() as conn:
        await api_calls_store.reserve(conn, [r], at, settings)
    assert sorted(j.api_units or 0 for j in r.jobs) == [0] * 2 + [2] * 50
    given = next(j for j in r.jobs if j.api_units)
    up = await run_check(given, "DE-1", True, ssl_contexts, clock=WALL)
    assert (up.status, up.error_kind) == ("up", None), up.message
    assert gmail.used(BOX) == 2
    held = next(j for j in r.jobs if j.api_units == 0)
    throttled = await run_check(held, "DE-2", True, ssl_contexts, clock=WALL)
    assert (throttled.status, throttled.error_kind) == ("inconclusive", "inconclusive")
    assert "throttled, not sent" in (throttled.message or "")
    assert gmail.used(BOX) == 2
    short = await run_check(
        msgspec.structs.replace(given, api_units=1), "DE-3", True, ssl_contexts, clock=WALL
    )
    assert (short.status, short.error_kind) == ("inconclusive", "inconclusive"), short.message
    assert "quota units" in (short.message or "")
    assert gmail.used(BOX) == 3
