"""`/metrics/monitors` reads each country's latest values from its state row, which the ingester
writes with the latest round (migration 0037): a late result of an older round changes nothing,
an `expired` round the alerter stores clears the values, a real result for that round brings
its own, a deleted monitor is gone and another organization's monitors never show."""

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import msgspec
from prometheus_client.parser import text_string_to_metric_families

from controller.ingest import store as results
from controller.ingest.store import CheckedResult
from controller.jobs.result_kinds import ResultRow
from controller.jobs.rules import JobIds
from shared.timefmt import iso_ms, utcnow
from tests.api.helpers import create
from tests.conftest import make_tenant
from tests.console.helpers import Browserish
from tests.console.test_monitor_metrics import scrape_token

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _samples(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def _scrape(http: httpx.AsyncClient, token: str, query: str = "?phases=true") -> Samples:
    r = await http.get(f"/metrics/monitors{query}", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return _samples(r.text)


async def _store(pool: asyncpg.Pool, *rows: CheckedResult | ResultRow) -> int:
    async with pool.acquire() as conn, conn.transaction():
        return await results.store(conn, list(rows), now=utcnow())


def _result(
    job_ids: JobIds,
    monitor: dict[str, Any],
    at: datetime,
    *,
    status: str = "up",
    response_ms: float | None = 42.0,
    greeting_ms: float = 20.0,
    not_after: str | None = "2031-05-04T03:02:01Z",
    error_kind: str | None = None,
) -> CheckedResult:
    wire = {
        "jobId": job_ids.make(monitor["publicId"], "DE", at),
        "monitorId": monitor["publicId"],
        "monitorType": "smtp",
        "country": "DE",
        "agentId": "DE-1",
        "scheduledAt": iso_ms(at),
        "startedAt": iso_ms(at),
        "finishedAt": iso_ms(at + timedelta(seconds=1)),
        "status": status,
        "errorKind": error_kind,
        "message": "",
        "responseTimeMs": response_ms,
        "phases": {"dnsMs": 1.0, "connectMs": 5.0, "greetingMs": greeting_ms},
        "tls": None if not_after is None else {"version": "TLSv1.3", "certNotAfter": not_after},
    }
    return msgspec.convert(wire, CheckedResult)


def _expired(job_ids: JobIds, monitor: dict[str, Any], at: datetime) -> ResultRow:
    """The row the alerter stores for a round that closed without this country's result."""
    return ResultRow.missed(
        UUID(monitor["publicId"]),
        "smtp",
        "DE",
        job_ids.make(monitor["publicId"], "DE", at),
        at,
        "expired",
        "no result by then: the check did not run in time",
    )


def _of(samples: Samples, monitor: dict[str, Any]) -> dict[str, float]:
    """The DE series of the monitor, by name (the phases as `phase:<name>`)."""
    got: dict[str, float] = {}
    for (name, labels), value in samples.items():
        lb = dict(labels)
        if lb.get("monitor") == monitor["publicId"] and lb.get("country") == "DE":
            got[f"phase:{lb['phase']}" if "phase" in lb else name] = value
    return got


def _minute(minutes_ago: int) -> datetime:
    return utcnow().replace(second=0, microsecond=0) - timedelta(minutes=minutes_ago)


EXPIRY = datetime.fromisoformat("2031-05-04T03:02:01+00:00").timestamp()


async def test_a_late_result_of_an_older_round_leaves_the_latest_values(
    client: Browserish, pool: asyncpg.Pool, http: httpx.AsyncClient, job_ids: JobIds
) -> None:
    org = await make_tenant(pool)
    mine = await create(http, org, "smtp")
    newer, older = _minute(2), _minute(5)
    assert await _store(pool, _result(job_ids, mine, newer, response_ms=30.0, greeting_ms=25.0))
    # the older round's result comes late, in a batch of its own and then with a newer one's
    # redelivery: neither moves the latest values
    assert await _store(
        pool,
        _result(job_ids, mine, older, status="down", response_ms=900.0, error_kind="timeout"),
    )
    token = await scrape_token(client, org.tokens["admin"])
    got = _of(await _scrape(http, token), mine)
    assert got["mailprobe_check_up"] == 1
    assert got["mailprobe_check_response_seconds"] == 0.03
    assert got["phase:greeting"] == 0.025
    assert got["mailprobe_check_scheduled_timestamp_seconds"] == newer.timestamp()
    # one batch with both rounds, the newer first: the newer one's values win
    newest, late = _minute(1), _minute(4)
    assert (
        await _store(
            pool,
            _result(job_ids, mine, newest, response_ms=31.5, not_after="2032-01-01T00:00:00Z"),
            _result(job_ids, mine, late, response_ms=77.0),
        )
        == 2
    )
    got = _of(await _scrape(http, token), mine)
    assert got["mailprobe_check_response_seconds"] == 0.0315
    assert got["mailprobe_tls_cert_expiry_timestamp_seconds"] == (
        datetime.fromisoformat("2032-01-01T00:00:00+00:00").timestamp()
    )
    assert got["mailprobe_check_scheduled_timestamp_seconds"] == newest.timestamp()


async def test_an_expired_round_clears_the_values_and_its_late_real_result_brings_its_own(
    client: Browserish, pool: asyncpg.Pool, http: httpx.AsyncClient, job_ids: JobIds
) -> None:
    org = await make_tenant(pool)
    mine = await create(http, org, "smtp")
    first, closed = _minute(3), _minute(2)
    assert await _store(pool, _result(job_ids, mine, first, response_ms=30.0))
    token = await scrape_token(client, org.tokens["admin"])
    assert _of(await _scrape(http, token), mine)["mailprobe_tls_cert_expiry_timestamp_seconds"]
    assert await _store(pool, _expired(job_ids, mine, closed))
    got = _of(await _scrape(http, token), mine)
    # a missed round: no check ran, so no response time, phases or certificate
    assert got == {
        "mailprobe_check_missed": 1,
        "mailprobe_check_inconclusive": 0,
        "mailprobe_check_scheduled_timestamp_seconds": closed.timestamp(),
    }
    # the round's real result comes after all: it replaces the expired row, and its values show
    assert await _store(pool, _result(job_ids, mine, closed, response_ms=55.5, greeting_ms=7.0))
    got = _of(await _scrape(http, token), mine)
    assert got["mailprobe_check_up"] == 1 and got["mailprobe_check_missed"] == 0
    assert got["mailprobe_check_response_seconds"] == 0.0555
    assert got["phase:greeting"] == 0.007
    assert got["mailprobe_tls_cert_expiry_timestamp_seconds"] == EXPIRY
    # an expired row for a round whose real result is stored replaces nothing
    assert await _store(pool, _expired(job_ids, mine, closed)) == 0
    assert _of(await _scrape(http, token), mine) == got


async def test_compact_rows_keep_their_values(
    client: Browserish, pool: asyncpg.Pool, http: httpx.AsyncClient, job_ids: JobIds
) -> None:
    """Results that say what the last full row said are stored compact; the state still has
    each one's own response time and phases."""
    org = await make_tenant(pool)
    mine = await create(http, org, "smtp")
    rounds = [_minute(5 - n) for n in range(3)]
    if rounds[0].date() != rounds[-1].date():  # the first result of a UTC day is stored whole
        rounds = [at - timedelta(minutes=5) for at in rounds]
    for n, (at, ms) in enumerate(zip(rounds, (30.0, 31.25, 32.5), strict=True)):
        assert await _store(pool, _result(job_ids, mine, at, response_ms=ms, greeting_ms=20 + n))
    async with pool.acquire() as conn:
        compact = await conn.fetchval(
            "SELECT count(*) FROM result_rows r JOIN monitors m ON m.id = r.monitor_id"
            " WHERE m.public_id = $1::uuid AND r.detail_ms IS NOT NULL",
            mine["publicId"],
        )
    assert compact == 2
    got = _of(await _scrape(http, await scrape_token(client, org.tokens["admin"])), mine)
    assert got["mailprobe_check_response_seconds"] == 0.0325
    assert {k: v for k, v in got.items() if k.startswith("phase:")} == {
        "phase:dns": 0.001,
        "phase:connect": 0.005,
        "phase:greeting": 0.022,
    }
    assert got["mailprobe_tls_cert_expiry_timestamp_seconds"] == EXPIRY


async def test_a_deleted_monitor_disappears(
    client: Browserish, pool: asyncpg.Pool, http: httpx.AsyncClient, job_ids: JobIds
) -> None:
    org = await make_tenant(pool)
    kept, gone = await create(http, org, "smtp"), await create(http, org, "smtp")
    for m in (kept, gone):
        assert await _store(pool, _result(job_ids, m, _minute(1)))
    token = await scrape_token(client, org.tokens["admin"])
    r = await http.delete(f"/api/smtp-monitors/{gone['publicId']}", headers=org.auth())
    assert r.status_code == 204, r.text
    samples = await _scrape(http, token)
    assert _of(samples, kept)
    assert not any(dict(lb).get("monitor") == gone["publicId"] for _, lb in samples)
    # its late result is dropped, and no state row comes back for it
    assert await _store(pool, _result(job_ids, gone, _minute(0))) == 0
    assert (
        gone["publicId"]
        not in (
            await http.get("/metrics/monitors", headers={"Authorization": f"Bearer {token}"})
        ).text
    )


async def test_a_token_sees_its_own_organization_in_every_shard(
    client: Browserish, pool: asyncpg.Pool, http: httpx.AsyncClient, job_ids: JobIds
) -> None:
    """Attacker's view: org A's token asking for any shard, with or without phases, never sees
    org B's monitors, whose ids fall in the same shards."""
    a, b = await make_tenant(pool), await make_tenant(pool)
    mine = [await create(http, a, "smtp", name=f"a{n}") for n in range(4)]
    theirs = [await create(http, b, "smtp", name=f"b{n}") for n in range(4)]
    for m in mine + theirs:
        assert await _store(pool, _result(job_ids, m, _minute(1)))
    token_a = await scrape_token(client, a.tokens["admin"])
    token_b = await scrape_token(client, b.tokens["admin"])
    ids_a, ids_b = {m["publicId"] for m in mine}, {m["publicId"] for m in theirs}
    for token, own, other in ((token_a, ids_a, ids_b), (token_b, ids_b, ids_a)):
        seen: set[str] = set()
        for query in ("", "?phases=true", *(f"?shards=3&shard={k}&phases=1" for k in range(3))):
            r = await http.get(
                f"/metrics/monitors{query}", headers={"Authorization": f"Bearer {token}"}
            )
            assert r.status_code == 200
            assert not any(pid in r.text for pid in other), query
            seen |= {dict(lb)["monitor"] for _, lb in _samples(r.text)}
        assert seen == own
