"""The side checks' frame at the results store, on real PostgreSQL, for every side check alike:
a result whose agent's own path failed (`inconclusive`) keeps no side facts, so a later
conclusive result of the same job, which replaces its core row, is the one whose facts stand;
a redelivered result stores and counts nothing (`mailprobe_side_check_facts_total`); and the
resolver's canaries are read from every side check whose facts carry them (readiness's too)."""

import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx
from prometheus_client import REGISTRY

from controller.ingest import store as results
from controller.ingest.store import CheckedResult
from controller.oracles import store as oracles_db
from shared.dns_canary import DnsCanary
from shared.messages import CheckResult, encode
from shared.sidechecks.blocklists import BlocklistAnswer, Reputation
from shared.sidechecks.mail_dns import MailDns
from shared.sidechecks.readiness import Readiness
from shared.timefmt import iso_ms, utcnow
from tests.api.helpers import create
from tests.conftest import Tenant
from tests.pipeline.conftest import Countries

DOMAIN = "frame.example.net"


def _result(
    public_id: str,
    cc: str,
    job: str,
    status: str,
    agent: str,
    ago: int = 5,
    at: datetime | None = None,
    **side: Any,
) -> CheckedResult:
    """A result of `job`, scheduled `at` (`ago` minutes ago when not given: one job's results
    must be given one `at`, or a second ticking between them makes them two rounds)."""
    at = at or utcnow().replace(microsecond=0) - timedelta(minutes=ago)
    sent = CheckResult(
        job_id=job,
        monitor_id=public_id,
        monitor_type="smtp",
        country=cc,
        agent_id=agent,
        scheduled_at=iso_ms(at),
        started_at=iso_ms(at),
        finished_at=iso_ms(at + timedelta(seconds=1)),
        status=status,  # type: ignore[arg-type]
        error_kind="inconclusive" if status == "inconclusive" else None,
        message="ok",
        side_checks=side,
    )
    return results.decode_result(encode(sent))


def _counted(name: str) -> float:
    labels = {"side_check": name}
    return REGISTRY.get_sample_value("mailprobe_side_check_facts_total", labels) or 0.0


async def _store(pool: asyncpg.Pool, *rows: CheckedResult) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await results.store(conn, list(rows), now=utcnow())
        await oracles_db.record_canaries(conn, list(rows))


async def test_the_facts_of_the_result_that_stands_are_kept_and_counted_once(
    api: httpx.AsyncClient, org: Tenant, pipe_pool: asyncpg.Pool, countries: Countries
) -> None:
    (cc,) = countries.take(1)
    monitor = await create(api, org, mailDomain=DOMAIN)
    job = str(uuid.uuid4())
    lost = MailDns(domain=DOMAIN, errors={"resolver": "the agent's own path failed"})
    seen = MailDns(domain=DOMAIN, mx=["mx.frame.example.net"], spf=[], dmarc=[])
    at = utcnow().replace(microsecond=0) - timedelta(minutes=5)  # the job's round
    before = _counted("mail_dns")
    await _store(
        pipe_pool,
        _result(monitor["publicId"], cc, job, "inconclusive", "a", at=at, mail_dns=lost),
    )
    assert _counted("mail_dns") == before  # an inconclusive result's facts are not kept
    conclusive = _result(monitor["publicId"], cc, job, "up", "b", at=at, mail_dns=seen)
    await _store(pipe_pool, conclusive)
    await _store(pipe_pool, conclusive)  # redelivered
    assert _counted("mail_dns") == before + 1
    async with pipe_pool.acquire() as conn:
        rows = await conn.fetch("SELECT facts FROM side_mail_dns WHERE job = $1::uuid", job)
        core = await conn.fetchrow(
            "SELECT status, agent_id FROM check_results WHERE job_id = $1", job
        )
        held = await conn.fetchval("SELECT count(*) FROM check_results WHERE job_id = $1", job)
    assert held == 1  # the conclusive result replaced the inconclusive one's row
    assert core is not None and (core["status"], core["agent_id"]) == ("up", "b")
    assert len(rows) == 1 and rows[0]["facts"]["mx"] == seen.mx


async def test_readinesss_canaries_move_the_resolvers_health_too(
    api: httpx.AsyncClient, org: Tenant, pipe_pool: asyncpg.Pool, countries: Countries
) -> None:
    (cc,) = countries.take(1)
    monitor = await create(api, org, mailDomain=DOMAIN)
    lying = DnsCanary(name="a.root-servers.net", type="A", exists=True)
    lying.found = False
    facts = Readiness(domain=DOMAIN, canaries=[lying])
    await _store(
        pipe_pool,
        _result(monitor["publicId"], cc, str(uuid.uuid4()), "up", "a", ago=0, readiness=facts),
    )
    async with pipe_pool.acquire() as conn:
        found = await conn.fetchval(
            "SELECT found FROM dns_canary_answers WHERE country = $1 AND name = $2", cc, lying.name
        )
    assert found is False


async def test_a_redelivered_blocklist_result_is_not_counted_again(
    api: httpx.AsyncClient, org: Tenant, pipe_pool: asyncpg.Pool, countries: Countries
) -> None:
    """The blocklists keep their facts their own way (answers per list and name, names per
    monitor and country): a redelivered result writes nothing there, and is counted once."""
    (cc,) = countries.take(1)
    monitor = await create(api, org, mailDomain=DOMAIN)
    asked = BlocklistAnswer(zone="zen.spamhaus.org", name="192.0.2.7", a=[])
    facts = Reputation(names={"192.0.2.7": "host"}, answers=[asked])
    sent = _result(monitor["publicId"], cc, str(uuid.uuid4()), "up", "a", blocklists=facts)
    before = _counted("blocklists")
    await _store(pipe_pool, sent)
    await _store(pipe_pool, sent)  # redelivered
    assert _counted("blocklists") == before + 1
