"""Ingest: RESULTS → check_results, against embedded NATS and PostgreSQL.

Targets (issue 3): >= 20,000 results/s stored idempotently; after a backlog, drains at >= 3x the
steady rate.

- backlog: BACKLOG results are published before the ingester starts; drain rate = results
  stored / time until the consumer has nothing pending or unacked.
- idempotent: DUPLICATES of them are published again (new stream messages, same job ids) and
  drained; the row count must not move.
- steady: results are published at STEADY_RATE per second (the scheduler target's production:
  300,000 monitors at 60 s) for STEADY_S seconds while the ingester runs; it keeps up when the
  backlog at the end is empty and stored_at - finishedAt (finishedAt = publish time) stays low.
"""

import asyncio
import gc
import sys
import time
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
import nats
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import NotFoundError

from controller.db.pool import create_pool
from controller.ingest.ingester import Ingester
from shared.clock import WALL
from shared.messages import CheckResult, Phases, TlsInfo, encode
from shared.streams import INGEST_CONSUMER, ensure_streams
from shared.subjects import results_subject
from shared.timefmt import iso_ms, utcnow
from testkit.common import (
    JOB_IDS,
    Pipes,
    discard_logs,
    machine,
    percentile,
    seed_monitors,
    smtp_result,
    verdict,
)

MONITORS = 20_000
COUNTRIES = ("DE", "US")
BACKLOG = 200_000
DUPLICATES = 50_000
STEADY_RATE = 5_000
STEADY_S = 15
TARGET_RATE = 20_000
TARGET_RATIO = 3.0


def _result(public_id: str, cc: str, round_no: int, up: bool, finished: str | None) -> CheckResult:
    at = utcnow() - timedelta(minutes=30) + timedelta(seconds=round_no)
    return smtp_result(
        public_id,
        cc,
        at,
        finished_at=finished,
        status="up" if up else "down",
        error_kind=None if up else "refused",
        message="ok" if up else "connection refused by mx.example.com port 25",
        banner="220 mx.example.com ESMTP Postfix" if up else None,
        response_time_ms=57.123,
        phases=Phases(dns_ms=1.2, connect_ms=10.5, tls_ms=20.1, greeting_ms=15.0),
        tls=TlsInfo(
            version="TLSv1.3",
            cipher="TLS_AES_256_GCM_SHA384",
            cert_subject="mx.example.com",
            cert_not_after="2027-01-01T00:00:00.000Z",
            cert_days_left=200,
        )
        if up
        else None,
        address="192.0.2.10",
    )


Message = tuple[str, bytes, str]  # subject, payload, job id


def _messages(
    ids: list[str], count: int, first: int = 0, finished: str | None = None
) -> list[Message]:
    """Results `first`..`first + count`: every monitor and country in turn, one round after the
    other; one in ten is down. `finished` overrides finishedAt."""
    out = []
    per_round = len(ids) * len(COUNTRIES)
    for i in range(first, first + count):
        public_id = ids[i % len(ids)]
        cc = COUNTRIES[(i // len(ids)) % len(COUNTRIES)]
        res = _result(public_id, cc, i // per_round, i % 10 != 0, finished)
        out.append((results_subject(cc, "smtp", public_id), encode(res), res.job_id))
    return out


async def publish(js: JetStreamContext, msgs: list[Message], *, msg_ids: bool = True) -> None:
    """Publish `msgs` to RESULTS, 10,000 acks in flight at most."""
    for start in range(0, len(msgs), 10_000):
        futures = [
            await js.publish_async(s, p, headers={"Nats-Msg-Id": j} if msg_ids else None)
            for s, p, j in msgs[start : start + 10_000]
        ]
        await asyncio.gather(*futures)


async def drained(js: JetStreamContext) -> None:
    """Until the ingest consumer has nothing pending or unacked."""
    while True:
        try:
            info = await js.consumer_info("RESULTS", INGEST_CONSUMER)
        except NotFoundError:  # the ingester creates it when it starts
            await asyncio.sleep(0.02)
            continue
        if not info.num_pending and not info.num_ack_pending:
            return
        await asyncio.sleep(0.02)


async def _count(pool: asyncpg.Pool) -> int:
    async with pool.acquire() as conn:
        n: int = await conn.fetchval("SELECT count(*) FROM check_results")
    return n


async def _drain(js: JetStreamContext, ingester: Ingester) -> tuple[float, float]:
    """Run the ingester until the consumer is empty: (seconds, CPU seconds of this process)."""
    stop = asyncio.Event()
    cpu0, t0 = time.process_time(), time.perf_counter()
    task = asyncio.create_task(ingester.run(stop))
    await drained(js)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    stop.set()
    await task
    return wall, cpu


@dataclass
class Steady:
    rate: float
    lag_p50_ms: float
    lag_p99_ms: float
    backlog_at_end: int


async def _steady(
    js: JetStreamContext, pool: asyncpg.Pool, ingester: Ingester, ids: list[str]
) -> Steady:
    first = BACKLOG + DUPLICATES  # fresh job ids, later rounds
    stop = asyncio.Event()
    task = asyncio.create_task(ingester.run(stop))
    tick = 0.02
    per_tick = round(STEADY_RATE * tick)
    began = utcnow()
    start = time.perf_counter()
    sent = 0
    futures: list[asyncio.Future[PubAck]] = []
    while (elapsed := time.perf_counter() - start) < STEADY_S:
        ticks = int(elapsed / tick) + 1
        while sent < ticks * per_tick:
            # finishedAt = publish time: stored_at - finishedAt is then the ingest lag.
            for subject, payload, job_id in _messages(
                ids, per_tick, first + sent, iso_ms(utcnow())
            ):
                futures.append(
                    await js.publish_async(subject, payload, headers={"Nats-Msg-Id": job_id})
                )
            sent += per_tick
        await asyncio.sleep(max(0.0, start + ticks * tick - time.perf_counter()))
    rate = sent / (time.perf_counter() - start)
    await asyncio.gather(*futures)
    info = await js.consumer_info("RESULTS", INGEST_CONSUMER)
    backlog = info.num_pending + info.num_ack_pending
    await drained(js)
    stop.set()
    await task
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT extract(epoch FROM stored_at - finished_at) * 1000 AS ms FROM check_results"
            " WHERE finished_at >= $1",
            began,
        )
    ms = [float(r["ms"]) for r in rows]
    return Steady(rate, percentile(ms, 50), percentile(ms, 99), backlog)


async def _run() -> bool:
    pipes = Pipes()
    try:
        ids = await seed_monitors(pipes.database_url, MONITORS, countries=list(COUNTRIES))
        pool = await create_pool(pipes.database_url, 10)
        nc = await nats.connect(pipes.nats_url)
        try:
            js = nc.jetstream(publish_async_max_pending=20_000)
            await ensure_streams(js)
            backlog = _messages(ids, BACKLOG)
            t0 = time.perf_counter()
            await publish(js, backlog)
            published_s = time.perf_counter() - t0
            # The backlog is the publisher's, not the ingester's: keep the garbage collector
            # from walking its 200,000 messages over and over while the ingester is measured.
            gc.freeze()
            ingester = Ingester(pool, nc, js, JOB_IDS, clock=WALL)
            drain_s, drain_cpu = await _drain(js, ingester)
            stored = await _count(pool)
            await publish(js, backlog[:DUPLICATES], msg_ids=False)
            dup_s, _ = await _drain(js, ingester)
            after_dups = await _count(pool)
            steady = await _steady(js, pool, ingester, ids)
            await ingester.close()
        finally:
            await nc.drain()
            await pool.close()
    finally:
        pipes.close()
    rate = stored / drain_s
    ratio = rate / steady.rate
    idempotent = stored == BACKLOG and after_dups == BACKLOG
    keeps_up = steady.backlog_at_end < STEADY_RATE and steady.lag_p99_ms < 1000
    rate_ok = rate >= TARGET_RATE and idempotent
    ratio_ok = ratio >= TARGET_RATIO and keeps_up
    print(f"ingest ({machine()}; {MONITORS:,} monitors x {len(COUNTRIES)} countries)")
    print(f"  published a backlog of {BACKLOG:,} results in {published_s:.1f} s")
    print(
        f"  drain: {stored:,} stored in {drain_s:.2f} s = {rate:,.0f} results/s"
        f" ({drain_cpu / drain_s:.0%} of a core in the ingesting process)"
        f"   target >= {TARGET_RATE:,}/s: {verdict(rate_ok)}"
    )
    print(
        f"  idempotent: {DUPLICATES:,} redelivered duplicates drained in {dup_s:.2f} s"
        f" ({DUPLICATES / dup_s:,.0f}/s), rows {stored:,} -> {after_dups:,}"
        f"   {verdict(idempotent)}"
    )
    print(
        f"  steady: {steady.rate:,.0f} results/s published for {STEADY_S} s, backlog at end"
        f" {steady.backlog_at_end}, ingest lag (stored - finishedAt) p50 {steady.lag_p50_ms:.0f} ms"
        f" p99 {steady.lag_p99_ms:.0f} ms   keeps up: {verdict(keeps_up)}"
    )
    print(
        f"  backlog drain / steady rate = {rate:,.0f} / {steady.rate:,.0f} = {ratio:.1f}x"
        f"   target >= {TARGET_RATIO:g}x: {verdict(ratio_ok)}"
    )
    return rate_ok and ratio_ok


def run() -> bool:
    discard_logs()
    return asyncio.run(_run())


if __name__ == "__main__":
    sys.exit(0 if run() else 1)
