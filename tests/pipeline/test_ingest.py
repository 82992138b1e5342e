"""The ingester against real PostgreSQL and NATS: results on the stream become rows."""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
from nats.js import JetStreamContext
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from controller.alerting import state_store as alert_state
from controller.ingest import alert_queue_store as alert_queue
from controller.ingest import store as results
from controller.jobs.result_kinds import ResultRow
from controller.jobs.rules import JobIds
from shared.dns_canary import DnsCanary
from shared.messages import CheckResult, Phases, TlsInfo, encode
from shared.sidechecks.mail_dns import MailDns
from shared.sidechecks.readiness import Readiness, Spf, SpfNode
from shared.sidechecks.relay import RelayTest
from shared.sidechecks.reverse_dns import PTR_ADDRESSES_MAX, PTR_NAMES_MAX, PtrCheck, ReverseDns
from shared.subjects import RESULTS_STREAM, results_subject
from shared.timefmt import iso_ms, utcnow
from tests.api.helpers import create
from tests.conftest import Tenant
from tests.pipeline.conftest import Countries, WiredPipeline


def result(
    ids: JobIds,
    monitor: dict[str, Any],
    cc: str,
    status: str = "up",
    at: datetime | None = None,
    **extra: Any,
) -> CheckResult:
    """A result of the round at `at` as an agent of `cc` would publish it."""
    at = at or utcnow()
    fields: dict[str, Any] = {
        "job_id": ids.make(monitor["publicId"], cc, at),
        "monitor_id": monitor["publicId"],
        "monitor_type": "smtp",
        "country": cc,
        "agent_id": f"agent-{cc}",
        "scheduled_at": iso_ms(at),
        "started_at": iso_ms(at + timedelta(milliseconds=5)),
        "finished_at": iso_ms(at + timedelta(milliseconds=40)),
        "status": status,
        "error_kind": None if status == "up" else "refused",
        "message": "220 ready" if status == "up" else "connection refused",
        **extra,
    }
    return CheckResult(**fields)


async def asking_all(api: httpx.AsyncClient, org: Tenant) -> dict[str, Any]:
    """An SMTP monitor every side check riding jobs is asked for (a mail domain, a password
    login, the open relay test opted in): its results may carry each one's facts."""
    smtp = {"auth": {"user": "username", "pass": "password"}, "relayCheck": True}
    return await create(api, org, mailDomain="customer.test", smtpConfig=smtp)


async def publish(js: JetStreamContext, res: CheckResult) -> None:
    await js.publish(results_subject(res.country, res.monitor_type, res.monitor_id), encode(res))


# The message of a result PostgreSQL refuses inside `refusing()`.
REFUSED = "refuse me"


@contextlib.asynccontextmanager
async def refusing(pool: asyncpg.Pool) -> AsyncIterator[None]:
    """PostgreSQL refuses a result whose message is REFUSED for the while (a constraint)."""
    async with pool.acquire() as conn:
        await conn.execute(
            f"ALTER TABLE result_details ADD CONSTRAINT test_refuse CHECK (message <> '{REFUSED}')"
        )
    try:
        yield
    finally:
        async with pool.acquire() as conn:
            await conn.execute("ALTER TABLE result_details DROP CONSTRAINT test_refuse")


async def rows(pool: asyncpg.Pool, public_id: str) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        found: list[asyncpg.Record] = await conn.fetch(
            "SELECT * FROM check_results WHERE monitor_public_id = $1 ORDER BY scheduled_at",
            uuid.UUID(public_id),
        )
    return found


async def test_a_result_published_twice_is_stored_once(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    (cc,) = countries.take()
    monitor = await create(api, org)
    res = result(
        job_ids,
        monitor,
        cc,
        banner="220 mx ESMTP",
        response_time_ms=35.5,
        address="192.0.2.1",
        phases=Phases(dns_ms=1.0, connect_ms=2.0),
        tls=TlsInfo(version="TLSv1.3"),
    )
    await publish(pipeline.js, res)
    await publish(pipeline.js, res)
    assert await pipeline.ingester.burst() == 1
    [row] = await rows(pipe_pool, monitor["publicId"])
    assert (row["job_id"], row["status"], row["agent_id"]) == (res.job_id, "up", f"agent-{cc}")
    r = await api.get(f"/api/smtp-monitors/{monitor['publicId']}", headers=org.auth())
    assert r.json()["lastCheckedAt"] == res.finished_at
    r = await api.get(f"/api/smtp-monitors/{monitor['publicId']}/results", headers=org.auth())
    [item] = r.json()["items"]
    wire = {k: v for k, v in item.items() if k != "storedAt"}
    # `logins` is the agent's count for the login cap (account_logins), not part of the result
    # the API keeps; nor is `reputation`, kept once per list, name and country
    # (controller/sidechecks/blocklists/store.py); nor `asks` and `asksSeal`, the job's own
    # (what the ingester holds the side facts to: controller/jobs/asks_seal.py); nor
    # `sideCheckErrors`, counted, not stored.
    kept_apart = ("logins", "reputation", "asks", "asksSeal", "sideCheckErrors")
    sent = {k: v for k, v in msgspec.to_builtins(res).items() if k not in kept_apart}
    # The side checks' facts before `sideChecks` (issue 65), kept in the API as they were.
    assert [wire.pop(k) for k in ("mailDns", "reverseDns", "relay")] == [None, None, None]
    assert wire == sent
    # Redelivered long after (beyond the duplicate window): still one row, state unchanged.
    await publish(pipeline.js, res)
    assert await pipeline.ingester.burst() == 0
    r = await api.get(f"/api/smtp-monitors/{monitor['publicId']}/countries", headers=org.auth())
    [state] = r.json()["items"]
    assert (state["consecutiveSuccesses"], state["consecutiveFailures"]) == (1, 0)


async def test_malformed_result_is_termed_with_a_log_line_and_the_rest_stored(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    (cc,) = countries.take()
    monitor = await create(api, org)
    subject = results_subject(cc, "smtp", monitor["publicId"])
    await pipeline.js.publish(subject, b"{not json")
    await pipeline.js.publish(subject, b'{"v": 1, "jobId": 5}')
    await publish(pipeline.js, result(job_ids, monitor, cc, scheduled_at="yesterday-ish"))
    await publish(pipeline.js, result(job_ids, monitor, cc))
    with capture_logs() as logs:
        assert await pipeline.ingester.burst() == 1
    moved = [e for e in logs if e["event"] == "malformed result moved aside"]
    assert len(moved) == 3 and all(e["subject"] == subject for e in moved)
    assert len(await rows(pipe_pool, monitor["publicId"])) == 1
    # Termed: nothing is redelivered and nothing waits for an ack.
    assert await pipeline.ingester.burst() == 0
    info = await pipeline.js.consumer_info(RESULTS_STREAM, pipeline.ingester.durable)
    assert info.num_ack_pending == 0 and info.num_redelivered == 0


async def test_country_state_counts_the_current_run_and_missed_counts_for_neither(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    a, b = countries.take(2)
    monitor = await create(api, org)
    t0 = utcnow() - timedelta(minutes=10)
    statuses = ["up", "up", "down", "down", "expired", "down"]
    for i, status in enumerate(statuses):
        extra = {"error_kind": "expired"} if status == "expired" else {}
        at = t0 + timedelta(minutes=i)
        await publish(
            pipeline.js,
            result(job_ids, monitor, a, "down" if status == "expired" else status, at, **extra),
        )
    await publish(pipeline.js, result(job_ids, monitor, b, "up", t0))
    assert await pipeline.ingester.burst() == 7
    r = await api.get(f"/api/smtp-monitors/{monitor['publicId']}/countries", headers=org.auth())
    states = {s["country"]: s for s in r.json()["items"]}
    assert states[a]["status"] == "down"
    assert (states[a]["consecutiveFailures"], states[a]["consecutiveSuccesses"]) == (3, 0)
    assert (states[b]["consecutiveFailures"], states[b]["consecutiveSuccesses"]) == (0, 1)
    stored = await rows(pipe_pool, monitor["publicId"])
    assert [r["status"] for r in stored if r["country"] == a] == [
        "up",
        "up",
        "down",
        "down",
        "missed",
        "down",
    ]
    # One more success in a later batch resets the failure run.
    await publish(pipeline.js, result(job_ids, monitor, a, "up", t0 + timedelta(minutes=7)))
    assert await pipeline.ingester.burst() == 1
    r = await api.get(f"/api/smtp-monitors/{monitor['publicId']}/countries", headers=org.auth())
    state = next(s for s in r.json()["items"] if s["country"] == a)
    assert (state["consecutiveFailures"], state["consecutiveSuccesses"]) == (0, 1)


async def test_results_filters_pages_and_uptime(
    api: httpx.AsyncClient,
    org: Tenant,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    a, b = countries.take(2)
    monitor = await create(api, org)
    now = utcnow()
    plan = [(a, "up", 1), (a, "up", 2), (a, "down", 3), (b, "up", 4), (a, "up", 60 * 30)]
    for cc, status, minutes_ago in plan:
        await publish(
            pipeline.js, result(job_ids, monitor, cc, status, now - timedelta(minutes=minutes_ago))
        )
    await publish(
        pipeline.js,
        result(job_ids, monitor, b, "down", now - timedelta(days=3), error_kind="expired"),
    )
    assert await pipeline.ingester.burst() == 6
    url = f"/api/smtp-monitors/{monitor['publicId']}"
    r = await api.get(f"{url}/results", params={"perPage": 2, "page": 2}, headers=org.auth())
    body = r.json()
    assert (body["total"], body["page"], body["perPage"], len(body["items"])) == (6, 2, 2, 2)
    r = await api.get(f"{url}/results", params={"country": b.lower()}, headers=org.auth())
    assert [i["status"] for i in r.json()["items"]] == ["up", "missed"]
    since = iso_ms(now - timedelta(minutes=3, seconds=30))
    until = iso_ms(now - timedelta(minutes=1, seconds=30))
    r = await api.get(f"{url}/results", params={"from": since, "to": until}, headers=org.auth())
    assert [(i["country"], i["status"]) for i in r.json()["items"]] == [(a, "up"), (a, "down")]
    r = await api.get(f"{url}/results", params={"from": "last week"}, headers=org.auth())
    assert r.status_code == 400 and r.json()["fields"] == ["from"]
    r = await api.get(f"{url}/results", params={"perPage": 201}, headers=org.auth())
    assert r.status_code == 400
    r = await api.get(f"{url}/uptime", headers=org.auth())
    windows = {w["window"]: w for w in r.json()["windows"]}
    assert list(windows) == ["day", "week", "month"]
    day = windows["day"]
    # Rounds are counted; uptime is time: a's one down round lasted 60 s until its next result.
    assert (day["overall"]["up"], day["overall"]["down"], day["overall"]["missed"]) == (3, 1, 0)
    assert day["overall"]["downSeconds"] == 60.0
    assert 99.9 < day["countries"][a]["uptimePercent"] < 100
    assert day["countries"][b]["uptimePercent"] == 100.0
    week_b = windows["week"]["countries"][b]
    assert (week_b["up"], week_b["down"], week_b["missed"], week_b["uptimePercent"]) == (
        1,
        0,
        1,
        100.0,
    )
    # The month really covers from the first result (b's missed round 3 days ago) on.
    assert windows["month"]["from"] == iso_ms(now - timedelta(days=3))
    assert windows["month"]["overall"]["missed"] == 1


async def test_a_nul_in_a_banner_is_stored_as_a_replacement_character(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    """PostgreSQL stores no NUL in text; a server may send one. The result is kept, not lost."""
    (cc,) = countries.take()
    monitor = await create(api, org)
    await publish(
        pipeline.js, result(job_ids, monitor, cc, banner="220 mx\x00 ESMTP", message="a\x00b")
    )
    await publish(pipeline.js, result(job_ids, monitor, cc, at=utcnow() - timedelta(seconds=1)))
    assert await pipeline.ingester.burst() == 2
    banners = {(r["banner"], r["message"]) for r in await rows(pipe_pool, monitor["publicId"])}
    assert banners == {("220 mx\ufffd ESMTP", "a\ufffdb"), (None, "220 ready")}


async def test_a_result_postgresql_refuses_is_moved_aside_and_the_batch_stored(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    """A value PostgreSQL refuses (here: a constraint the test adds for the while) fails the
    batch's INSERT; the batch is then stored one by one, so only that result is termed (with a
    log line) and nothing is stuck."""
    (cc,) = countries.take()
    monitor = await create(api, org)
    good = [result(job_ids, monitor, cc, at=utcnow() - timedelta(seconds=i)) for i in range(3)]
    await publish(pipeline.js, good[0])
    # A round of its own: at the same millisecond as good[0] it would share its job id, and the
    # stream would drop it as a duplicate (a failure seen once in CI).
    refused = result(job_ids, monitor, cc, at=utcnow() + timedelta(seconds=1), message=REFUSED)
    await publish(pipeline.js, refused)
    for res in good[1:]:
        await publish(pipeline.js, res)
    async with refusing(pipe_pool):
        with capture_logs() as logs:
            assert await pipeline.ingester.burst() == 3
    [moved] = [e for e in logs if e["event"] == "malformed result moved aside"]
    assert "PostgreSQL refused it" in moved["error"] and moved["log_level"] == "error"
    stored = {r["job_id"] for r in await rows(pipe_pool, monitor["publicId"])}
    assert stored == {res.job_id for res in good}
    assert await pipeline.ingester.burst() == 0
    info = await pipeline.js.consumer_info(RESULTS_STREAM, pipeline.ingester.durable)
    assert info.num_ack_pending == 0 and info.num_redelivered == 0


async def test_an_agent_cannot_store_results_for_another_country_or_an_unsent_round(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    """NATS lets an agent of `mine` publish only under `mon.results.<mine>.>`; the ingester
    moves aside what claims another country there, and a job id that is not the id of a round
    sent to that country (ids are keyed with SECRETS_KEY, which agents do not have)."""
    mine, theirs = countries.take(2)
    monitor = await create(api, org)
    pid, at = monitor["publicId"], utcnow()
    forged = result(job_ids, monitor, theirs, "down", at)  # a valid id of their round
    await pipeline.js.publish(results_subject(mine, "smtp", pid), encode(forged))
    other_type = result(job_ids, monitor, mine, "down", at)
    await pipeline.js.publish(results_subject(mine, "imap", pid), encode(other_type))
    made_up = result(job_ids, monitor, mine, "down", at, job_id=str(uuid.uuid4()))
    await publish(pipeline.js, made_up)
    genuine = result(job_ids, monitor, mine, "up", at)
    # Its side facts: one side check this controller does not know, one that does not fit.
    genuine.side_checks = {"made_up": {"x": 1}, "mail_dns": {"domain": 7}}
    await publish(pipeline.js, genuine)
    before = {k: refused(*k) for k in COUNTED}
    with capture_logs() as logs:
        assert await pipeline.ingester.burst() == 1
    errors = [e["error"] for e in logs if e["event"] == "malformed result moved aside"]
    assert len(errors) == 3
    assert sum("its body belongs on" in e for e in errors) == 2
    assert sum("not the id of a round sent to its country" in e for e in errors) == 1
    assert [(r["country"], r["status"]) for r in await rows(pipe_pool, pid)] == [(mine, "up")]
    # Each refusal counted by why, on /metrics.
    assert {k: refused(*k) - before[k] for k in COUNTED} == {
        ("mailprobe_results_refused_total", "reason", "wrong_subject"): 2,
        ("mailprobe_results_refused_total", "reason", "unsent_round"): 1,
        ("mailprobe_side_check_facts_dropped_total", "side_check", "unknown"): 1,
        ("mailprobe_side_check_facts_dropped_total", "side_check", "mail_dns"): 1,
    }


COUNTED = (
    ("mailprobe_results_refused_total", "reason", "wrong_subject"),
    ("mailprobe_results_refused_total", "reason", "unsent_round"),
    ("mailprobe_side_check_facts_dropped_total", "side_check", "unknown"),
    ("mailprobe_side_check_facts_dropped_total", "side_check", "mail_dns"),
)


DROPPED = "mailprobe_side_check_facts_dropped_total"


def refused(metric: str, label: str, value: str) -> float:
    """A counter's value summed over its other labels (this process's)."""
    return sum(
        sample.value
        for family in REGISTRY.collect()
        for sample in family.samples
        if sample.name == metric and sample.labels.get(label) == value
    )


async def test_a_country_the_monitor_moved_away_from_is_no_longer_shown_as_latest(
    api: httpx.AsyncClient,
    org: Tenant,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    old, new = countries.take(2)
    monitor = await create(api, org, allowedCheckCountryCodes=[old, new])
    pid = monitor["publicId"]
    for cc in (old, new):
        await publish(pipeline.js, result(job_ids, monitor, cc))
    assert await pipeline.ingester.burst() == 2
    r = await api.patch(
        f"/api/smtp-monitors/{pid}", json={"allowedCheckCountryCodes": [new]}, headers=org.auth()
    )
    assert r.status_code == 200, r.text
    r = await api.get(f"/api/smtp-monitors/{pid}", headers=org.auth())
    assert [x["country"] for x in r.json()["latestResults"]] == [new]
    r = await api.get(f"/api/smtp-monitors/{pid}/countries", headers=org.auth())
    assert [x["country"] for x in r.json()["items"]] == [new]
    r = await api.get(f"/api/smtp-monitors/{pid}/results", headers=org.auth())
    assert r.json()["total"] == 2  # the history stays


async def test_partitions_older_than_the_history_are_dropped(pipe_pool: asyncpg.Pool) -> None:
    """CHECK_RAW_DAYS / CHECK_HISTORY_DAYS: whole daily partitions older than what a kind of
    row keeps go (raw rows and details together, rollups on their own); newer stay."""
    old = utcnow() - timedelta(days=400)
    async with pipe_pool.acquire() as conn:
        assert await results.ensure_partitions(conn, old, days=2) == 8  # four tables
        dropped = await results.drop_partitions_before(conn, (old + timedelta(days=1)).date())
        names = await conn.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent IN ('result_rows'::regclass, 'result_rollups'::regclass)"
        )
        dropped_again = await results.drop_partitions_before(conn, old.date())
        rollups = await results.drop_partitions_before(
            conn, (old + timedelta(days=1)).date(), results.ROLLUP_TABLES
        )
    assert dropped == [
        f"result_details_p{old:%Y%m%d}",
        f"result_packs_p{old:%Y%m%d}",
        f"result_rows_p{old:%Y%m%d}",
    ]
    kept = {r["relname"] for r in names}
    assert f"result_rows_p{(old + timedelta(days=1)):%Y%m%d}" in kept
    assert f"result_rollups_p{old:%Y%m%d}" in kept
    assert f"result_rows_p{utcnow():%Y%m%d}" in kept and "result_rows_default" in kept
    assert dropped_again == []
    assert rollups == [f"result_rollups_p{old:%Y%m%d}"]


async def test_a_real_result_after_its_round_closed_replaces_the_expired_row(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    """The alerter wrote `expired` for the round when it closed; the agent's result comes later
    (a restart, a redelivery): the stored row, the per-country state and the uptime are the
    real result's, and a synthetic row written after it changes nothing."""
    (cc,) = countries.take()
    monitor = await create(api, org)
    pid = monitor["publicId"]
    at = utcnow().replace(microsecond=0) - timedelta(minutes=2)  # as on the wire: no finer
    res = result(job_ids, monitor, cc, "down", at=at)
    expired = ResultRow.missed(
        uuid.UUID(pid),
        "smtp",
        cc,
        res.job_id,
        at,
        "expired",
        "no result by then: the check did not run in time",
    )
    async with pipe_pool.acquire() as conn, conn.transaction():
        assert await results.store(conn, [expired], now=utcnow()) == 1
    await publish(pipeline.js, res)
    assert await pipeline.ingester.burst() == 1
    [row] = await rows(pipe_pool, pid)
    assert (row["status"], row["error_kind"], row["agent_id"]) == ("down", "refused", f"agent-{cc}")
    r = await api.get(f"/api/smtp-monitors/{pid}/countries", headers=org.auth())
    [state] = r.json()["items"]
    assert (state["status"], state["consecutiveFailures"]) == ("down", 1)
    r = await api.get(f"/api/smtp-monitors/{pid}/uptime", headers=org.auth())
    day = next(w for w in r.json()["windows"] if w["window"] == "day")
    assert (day["countries"][cc]["down"], day["countries"][cc]["missed"]) == (1, 0)

    async with pipe_pool.acquire() as conn, conn.transaction():
        assert await results.store(conn, [expired], now=utcnow()) == 0  # never over a real one
    await publish(pipeline.js, res)  # nor does a redelivery change anything
    assert await pipeline.ingester.burst() == 0
    [row] = await rows(pipe_pool, pid)
    assert (row["status"], row["agent_id"]) == ("down", f"agent-{cc}")


async def test_a_check_that_ran_replaces_an_agents_own_expired_answer_for_the_same_job(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    """Around a NATS outage one agent runs a job whose PubAck is lost, and the redelivered copy
    reaches another agent after the job's life ended: that one answers `expired` (the check did
    not run). Whichever is stored first, the row is the check that ran; an `expired` answer never
    replaces it (`make soak` counted these as real results dropped)."""
    (cc,) = countries.take()
    monitor = await create(api, org)
    pid = monitor["publicId"]
    at = utcnow().replace(microsecond=0) - timedelta(minutes=2)
    ran = result(job_ids, monitor, cc, "up", at=at, agent_id=f"agent-{cc}-1")
    late = result(
        job_ids,
        monitor,
        cc,
        "down",
        at=at,
        agent_id=f"agent-{cc}-2",
        error_kind="expired",
        message="job expired; not run",
    )
    await publish(pipeline.js, late)
    assert await pipeline.ingester.burst() == 1
    [row] = await rows(pipe_pool, pid)
    assert (row["status"], row["error_kind"]) == ("missed", "expired")

    await publish(pipeline.js, ran)
    assert await pipeline.ingester.burst() == 1
    [row] = await rows(pipe_pool, pid)
    assert (row["status"], row["error_kind"], row["agent_id"]) == ("up", None, f"agent-{cc}-1")

    await publish(pipeline.js, late)  # the other order: never over the check that ran
    assert await pipeline.ingester.burst() == 0
    [row] = await rows(pipe_pool, pid)
    assert (row["status"], row["agent_id"]) == ("up", f"agent-{cc}-1")


async def test_a_batch_whose_connection_drops_mid_transaction_comes_back_within_seconds(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipe_database_url: str,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    """PostgreSQL goes away while a batch is being stored (a restart, kill -9): asyncpg raises
    InterfaceError from the transaction's exit, not a PostgresError. The batch is nak'ed and
    stored a second later, not left for the ack wait, by when the alerter may have closed its
    round as `expired` (`make soak` saw these as real results late or dropped)."""
    (cc,) = countries.take()
    monitor = await create(api, org)
    pid = monitor["publicId"]
    await publish(pipeline.js, result(job_ids, monitor, cc, "up"))
    admin = await asyncpg.connect(pipe_database_url)
    try:
        # Only this monitor's insert waits, so the test can cut its connection meanwhile.
        await admin.execute(
            "CREATE FUNCTION slow_insert() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            f" IF NEW.monitor_public_id = '{pid}' THEN PERFORM pg_sleep(5); END IF;"
            " RETURN NEW; END $$;"
            " CREATE TRIGGER slow_insert BEFORE INSERT ON result_details"
            " FOR EACH ROW EXECUTE FUNCTION slow_insert()"
        )
        msgs = await pipeline.ingester.fetch(2.0)
        assert len(msgs) == 1
        with capture_logs() as logs:
            storing = asyncio.create_task(pipeline.ingester.handle(msgs))
            deadline = asyncio.get_running_loop().time() + 5
            while not await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE wait_event = 'PgSleep' AND pid <> pg_backend_pid()"
            ):
                assert asyncio.get_running_loop().time() < deadline, "the insert never started"
                await asyncio.sleep(0.02)
            assert await storing == 0
        assert any(e["event"] == "storing results failed; redelivering" for e in logs)
    finally:
        await admin.execute(
            "DROP TRIGGER IF EXISTS slow_insert ON result_details;"
            " DROP FUNCTION IF EXISTS slow_insert()"
        )
        await admin.close()
    started = asyncio.get_running_loop().time()
    stored = 0
    while not stored and asyncio.get_running_loop().time() - started < 5:
        stored = await pipeline.ingester.burst(0.5)
    assert stored == 1
    [row] = await rows(pipe_pool, pid)
    assert row["status"] == "up"


async def test_an_oversized_mail_dns_is_cut_to_its_bound_and_flagged_and_the_result_kept(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    """Pins the ingest bound: an agent that sends 280 KB of mail DNS facts (14 TXT records of
    4,000 characters, 14 TLSA records, a 64 KiB policy) has its result stored, the facts cut to
    16 KiB with the cut parts named in `truncated`, and a log line saying so."""
    (cc,) = countries.take()
    monitor = await asking_all(api, org)
    big = MailDns(
        domain="customer.test",
        spf=[f"v=spf1 {'a' * 4000}" for _ in range(14)],
        tlsa=[f"3 0 0 {'ab' * 2000}" for _ in range(14)],
        dmarc=["v=DMARC1; p=reject"],
        mta_sts=["v=STSv1; id=1"],
        mta_sts_policy="mx: x\n" * 10000,
    )
    assert len(msgspec.json.encode(big)) > 100_000
    sent = result(job_ids, monitor, cc, side_checks={"mail_dns": big})
    await publish(pipeline.js, sent)
    with capture_logs() as logs:
        assert await pipeline.ingester.burst() == 1
    async with pipe_pool.acquire() as conn:
        facts = await conn.fetchval("SELECT facts FROM side_mail_dns WHERE job = $1", sent.job_id)
    stored = msgspec.convert(facts, MailDns)
    assert len(msgspec.json.encode(stored)) <= 16 * 1024
    assert {"spf", "tlsa", "mtaStsPolicy"} <= set(stored.truncated)
    assert stored.spf and stored.tlsa and stored.dmarc == ["v=DMARC1; p=reject"]
    cut = [e["side_check"] for e in logs if e["event"] == "side facts over their bound: cut"]
    assert cut == ["mail_dns"]


async def test_oversized_reverse_dns_and_relay_facts_are_cut_to_their_bounds(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    """An agent is a stranger: reverse DNS facts of 20 addresses with 20 names of 253
    characters each (about 300 KB) and a relay test's replies of 100 KB are stored within the
    bounds an agent's own code keeps (4 addresses, 5 names each; replies of 512 characters),
    flagged `truncated` where the wire says so, with a log line per side check cut."""
    (cc,) = countries.take()
    monitor = await asking_all(api, org)
    names = [f"{n:03d}" + "a" * 250 for n in range(20)]
    ptr = [
        PtrCheck(address=f"192.0.2.{n}", names=names, confirmed=names, error="e" * 5000)
        for n in range(20)
    ]
    reverse = ReverseDns(addresses=ptr)
    relay = RelayTest(sender="s" * 5000, recipient="r" * 5000, mail_from="2" * 100_000)
    sent = result(job_ids, monitor, cc, side_checks={"reverse_dns": reverse, "relay": relay})
    assert len(msgspec.json.encode(sent)) > 300_000
    await publish(pipeline.js, sent)
    with capture_logs() as logs:
        assert await pipeline.ingester.burst() == 1
    async with pipe_pool.acquire() as conn:
        got = {
            name: await conn.fetchval(f"SELECT facts FROM side_{name} WHERE job = $1", sent.job_id)
            for name in ("reverse_dns", "relay")
        }
    stored = msgspec.convert(got["reverse_dns"], ReverseDns)
    assert stored.truncated and len(stored.addresses) == PTR_ADDRESSES_MAX
    for check in stored.addresses:
        assert check.names is not None and len(check.names) == PTR_NAMES_MAX
        assert check.confirmed == check.names and len(check.error) <= 200
    tested = msgspec.convert(got["relay"], RelayTest)
    assert tested.mail_from is not None and len(tested.mail_from) <= 512
    assert len(tested.sender) <= 254 and len(tested.recipient) <= 254
    assert len(msgspec.json.encode(got)) < 16 * 1024
    cut = sorted(e["side_check"] for e in logs if e["event"] == "side facts over their bound: cut")
    assert cut == ["relay", "reverse_dns"]


async def test_side_facts_within_their_bounds_are_stored_as_sent_and_no_cut_is_logged(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    """Facts an agent keeps within their bounds (every side check's, readiness's without a
    domain as every round of a monitor without `mailDomain` sends them) raise no "cut" line:
    a warning for each would bury `make run`'s banner and mean nothing."""
    (cc,) = countries.take()
    monitor = await asking_all(api, org)
    readiness = Readiness(
        domain="customer.test",
        spf=Spf(record="v=spf1 -all", nodes=[SpfNode(domain="customer.test")]),
        mx=["mx.customer.test"],
        queries=3,
    )
    ptr = PtrCheck(address="192.0.2.1", names=["mx.customer.test"], confirmed=["mx.customer.test"])
    canary = DnsCanary(name="a.root-servers.net", type="A", exists=True, found=True)
    sides = [
        {"readiness": Readiness()},
        {"readiness": readiness, "mail_dns": MailDns(domain="customer.test", spf=["v=spf1 -all"])},
        {
            "reverse_dns": ReverseDns(addresses=[ptr], canaries=[canary]),
            "relay": RelayTest(sender="a@example.com", recipient="b@example.net", rcpt_to="554 no"),
        },
    ]
    sent = [
        result(job_ids, monitor, cc, at=utcnow() - timedelta(minutes=i), side_checks=side)
        for i, side in enumerate(sides)
    ]
    for one in sent:
        await publish(pipeline.js, one)
    with capture_logs() as logs:
        assert await pipeline.ingester.burst() == len(sent)
    assert [e for e in logs if e["event"].startswith("side facts")] == []
    async with pipe_pool.acquire() as conn:
        facts = await conn.fetchval(
            "SELECT facts FROM side_readiness WHERE job = $1", sent[1].job_id
        )
    stored = msgspec.convert(facts, Readiness)
    assert msgspec.structs.replace(stored, kept=None) == readiness  # `kept`: the keeper's


# Batches of one country's rounds, one a minute, and the counters (failures, successes) after
# each: a batch of one kind adds to the run; a batch of both starts again from its trailing
# run; missed and inconclusive rounds count for neither; a batch older than the state moves
# nothing.
COUNTER_BATCHES: list[tuple[list[str], tuple[int, int]]] = [
    (["up", "up"], (0, 2)),
    (["up"], (0, 3)),
    (["down"], (1, 0)),
    (["down", "down"], (3, 0)),
    (["down", "up", "down", "down"], (2, 0)),
    (["expired"], (2, 0)),
    (["up", "down", "up"], (0, 1)),
    (["inconclusive", "up", "expired"], (0, 2)),
    (["down", "inconclusive"], (1, 0)),
    (["up", "down"], (1, 0)),
    (["up", "up", "down", "up", "up"], (0, 2)),
    (["inconclusive", "expired"], (0, 2)),
]


async def test_a_batch_moves_the_country_counters_by_its_trailing_run(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    (cc,) = countries.take()
    monitor = await create(api, org)
    t0 = utcnow() - timedelta(hours=2)
    minute = 0

    async def counters() -> tuple[int, int, str, datetime]:
        async with pipe_pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT consecutive_failures, consecutive_successes, last_status,"
                " last_checked_at FROM monitor_country_state s JOIN monitors m"
                " ON m.id = s.monitor_id WHERE m.public_id = $1 AND s.country = $2",
                uuid.UUID(monitor["publicId"]),
                cc,
            )
        assert row is not None
        return row[0], row[1], row[2], row[3]

    for statuses, expected in COUNTER_BATCHES:
        batch = []
        for status in statuses:
            at = t0 + timedelta(minutes=minute)
            minute += 1
            kind = {"expired": "expired", "inconclusive": "inconclusive"}.get(status)
            sent = "down" if status == "expired" else status
            batch.append(
                result(job_ids, monitor, cc, sent, at, **({"error_kind": kind} if kind else {}))
            )
        async with pipe_pool.acquire() as conn, conn.transaction():
            await results.store(
                conn, [results.decode_result(encode(r)) for r in batch], now=utcnow()
            )
        failures, successes, last, checked = await counters()
        assert (failures, successes) == expected, statuses
        assert last == {"expired": "missed"}.get(statuses[-1], statuses[-1])
        counted = [r for r, s in zip(batch, statuses, strict=True) if s in ("up", "down")]
        if counted:
            assert iso_ms(checked) == counted[-1].finished_at
    before = await counters()
    old = result(job_ids, monitor, cc, "down", t0 - timedelta(minutes=1))
    async with pipe_pool.acquire() as conn, conn.transaction():
        assert await results.store(conn, [results.decode_result(encode(old))], now=utcnow()) == 1
    assert await counters() == before  # stored, but older than the state: nothing moves


async def test_a_state_another_batch_creates_meanwhile_still_moves_by_this_batch(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    """Two batches with the first results of one monitor and country, stored at once: the one
    whose statement finds the state made by the other (committed while it waited) moves it
    after its statement, so neither batch's results are left out of the state."""
    (cc,) = countries.take()
    monitor = await create(api, org)
    t0 = utcnow() - timedelta(hours=1)
    first, second = (
        [
            results.decode_result(
                encode(result(job_ids, monitor, cc, "up", t0 + timedelta(minutes=m)))
            )
        ]
        for m in (0, 1)
    )
    other = await create(api, org)  # its result makes the agent known before either batch
    known = result(job_ids, other, cc, "up", t0)
    async with pipe_pool.acquire() as one, pipe_pool.acquire() as two:
        async with one.transaction():
            await results.store(one, [results.decode_result(encode(known))], now=utcnow())
        tx_one, tx_two = one.transaction(), two.transaction()
        await tx_one.start()
        await tx_two.start()
        assert await results.store(one, first, now=utcnow()) == 1
        storing = asyncio.create_task(results.store(two, second, now=utcnow()))
        await asyncio.sleep(0.3)
        assert not storing.done()  # waits for the first batch's state row
        await tx_one.commit()
        assert await storing == 1
        await tx_two.commit()
        state = await one.fetchrow(
            "SELECT consecutive_successes, last_scheduled_at FROM monitor_country_state s"
            " JOIN monitors m ON m.id = s.monitor_id WHERE m.public_id = $1 AND s.country = $2",
            uuid.UUID(monitor["publicId"]),
            cc,
        )
    assert state is not None
    assert (state[0], state[1]) == (2, second[0].scheduled_at)


async def test_the_batch_statement_stays_prepared_on_its_connection(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    """The ingester's statements are kept prepared (they are longer than asyncpg's default
    bound for that, 15 KiB): one that is not is parsed and planned again for every batch. A
    batch holding each (monitor, country) once takes `_ONCE`, one holding two rounds of one
    `_INSERT`."""
    (cc,) = countries.take()
    monitor = await create(api, org)
    t0 = utcnow() - timedelta(minutes=10)  # recent: no batch looks in the packs
    async with pipe_pool.acquire() as conn:
        for m in range(0, 6, 2):
            for batch in (
                [result(job_ids, monitor, cc, "up", t0 + timedelta(minutes=m))],
                [result(job_ids, monitor, cc, "up", t0 + timedelta(minutes=m + n)) for n in (1, 2)],
            ):
                async with conn.transaction():
                    await results.store(
                        conn, [results.decode_result(encode(r)) for r in batch], now=utcnow()
                    )
        prepared = await conn.fetch(
            "SELECT statement FROM pg_prepared_statements WHERE statement = ANY($1::text[])",
            [results._INSERT, results._ONCE],
        )
    assert sorted(r["statement"] == results._ONCE for r in prepared) == [False, True]


async def test_a_batch_statements_are_planned_once(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    """After its first batches a connection runs the store's statements on their generic plans:
    a statement PostgreSQL prefers to plan for each call's values (a custom plan) costs its
    planning again for every batch (the agents' names as an array parameter did: ~0.1 ms; the
    alert queue's lock and mark, their monitors an array parameter, did at batches of a few
    monitors: ~0.2 ms)."""
    (cc,) = countries.take()
    monitor = await create(api, org)
    t0 = utcnow() - timedelta(minutes=10)
    async with pipe_pool.acquire() as conn:
        for m in range(8):
            batch = [result(job_ids, monitor, cc, "up", t0 + timedelta(seconds=m))]
            async with conn.transaction():
                await results.store(
                    conn, [results.decode_result(encode(r)) for r in batch], now=utcnow()
                )
        plans = await conn.fetch(
            "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"
            " WHERE statement = ANY($1::text[])",
            [results._AGENTS, results._ONCE, alert_queue._LOCK_QUEUED, alert_queue._MARK],
        )
    assert len(plans) == 4
    assert all(p["custom_plans"] <= 5 and p["generic_plans"] >= 3 for p in plans), plans


# What a batch finds by key: each result's monitor, its per-country state, its queue row and
# (the alerter's batch) its alert state.
_KEYED = {"monitors", "monitor_country_state", "alert_queue", "monitor_alert_state"}


def _scans(plan: dict[str, Any]) -> list[dict[str, Any]]:
    scan = plan["Node Type"].endswith("Scan") and plan.get("Relation Name") in _KEYED
    found = [plan] if scan else []
    for child in plan.get("Plans", []):
        found += _scans(child)
    return found


# Each join the planner may choose, the others priced out: a batch's plan must be keyed whichever
# it picks, as which it picks depends on the tables' statistics.
_JOINS = {
    "any join": (),
    "nested loops": ("enable_hashjoin", "enable_mergejoin"),
    "merge joins": ("enable_hashjoin", "enable_nestloop"),
    "hash joins": ("enable_mergejoin", "enable_nestloop"),
}


@pytest.mark.parametrize("joins", list(_JOINS))
@pytest.mark.parametrize(
    ("statement", "tables"),
    [
        ("ingest", {"monitors", "monitor_country_state"}),
        ("ingest once", {"monitors", "monitor_country_state"}),
        ("mark", {"monitors", "monitor_country_state", "alert_queue"}),
        ("push", {"monitors", "alert_queue", "monitor_alert_state"}),
        ("save", {"monitor_alert_state", "alert_queue"}),
    ],
)
async def test_a_batch_finds_its_monitors_states_and_queue_rows_by_key(
    pipe_database_url: str, statement: str, tables: set[str], joins: str
) -> None:
    """The ingester's statements and the alerter's batch save read `monitors`, the states and
    `alert_queue` through an index, with the batch's keys: what a batch costs does not grow
    with the number of monitors (bench/results/scaling-history.md, "Lookups by key"). Seq scans
    are priced out so that the planner's choice for a small table cannot hide a plan that reads
    one whole; and each join in turn, the others priced out."""
    sql, args = {
        "ingest": (results._INSERT, 3),
        "ingest once": (results._ONCE, 3),
        "mark": (alert_queue._MARK, 5),
        "push": (alert_queue._PUSH, 6),
        "save": (alert_state._SAVE_BATCH, 8),
    }[statement]
    conn = await asyncpg.connect(pipe_database_url)  # its settings and statement die with it
    try:
        await conn.execute("SET enable_seqscan = off")
        for setting in _JOINS[joins]:
            await conn.execute(f"SET {setting} = off")
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE keyed AS {sql}")
        nulls = ", ".join(["NULL"] * args)
        plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE keyed({nulls})")
    finally:
        await conn.close()
    scans = _scans(msgspec.json.decode(plan)[0]["Plan"])
    assert {s["Relation Name"] for s in scans} >= tables
    whole = [
        (s["Node Type"], s["Relation Name"])
        for s in scans
        if s["Node Type"] not in ("Index Scan", "Index Only Scan", "Bitmap Heap Scan")
        or not (s.get("Index Cond") or s.get("Recheck Cond"))
    ]
    assert whole == [], joins


def _relations(plan: dict[str, Any]) -> set[str]:
    found = {plan["Relation Name"]} if "Relation Name" in plan else set()
    for child in plan.get("Plans", []):
        found |= _relations(child)
    return found


async def test_a_batch_opens_only_the_days_of_results_it_needs(pipe_database_url: str) -> None:
    """With the partitions a deployment holds (a day each, CHECK_RAW_DAYS of raw rows and packs),
    a batch of recent results does not read `result_packs` at all (only a batch holding a result
    old enough to be packed does), and the alerter's push reads the days of the rounds it may
    push: a statement that names a partitioned table locks and opens every partition of it each
    time it runs (bench/results/scaling-history.md, "The partitions a deployment holds")."""
    conn = await asyncpg.connect(pipe_database_url)
    try:
        async with conn.transaction():  # the days made here go again with it
            first = (utcnow() - timedelta(days=30)).date()
            await conn.execute("SELECT ensure_check_result_partitions($1::date, 30)", first)
            await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            plans = {}
            for name, sql, args in [
                ("fresh", results._INSERT, "NULL, NULL, now()"),
                ("old", results._INSERT_OLD, "NULL, NULL, now()"),
                ("fresh_once", results._ONCE, "NULL, NULL, now()"),
                ("old_once", results._STATEMENTS[True, True], "NULL, NULL, now()"),
                ("push", alert_queue._PUSH, "ARRAY[1]::bigint[], 6, 86400, 2, 300, now()"),
            ]:
                await conn.execute(f"PREPARE {name} AS {sql}")
                plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE {name}({args})")
                plans[name] = _relations(msgspec.json.decode(plan)[0]["Plan"])
    finally:
        await conn.close()
    for fresh, old in (("fresh", "old"), ("fresh_once", "old_once")):
        packs = {r for r in plans[old] if r.startswith("result_packs")}
        assert len(packs) >= 30  # a pack may be in any day: all are looked in
        assert not {r for r in plans[fresh] if r.startswith("result_packs")}
    days = {r for r in plans["push"] if r.startswith("result_rows_p")}
    yesterday = f"result_rows_p{(utcnow() - timedelta(days=1)).date():%Y%m%d}"
    assert days and min(days) >= yesterday, days


RELAY_TAKEN = {  # an open relay test's facts: the server took RCPT TO for a stranger
    "sender": "probe@example.com",
    "recipient": "x@example.net",
    "mailFrom": "250 ok",
    "rcptTo": "250 ok",
}


async def test_side_facts_a_job_did_not_ask_are_refused(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    """A round sent to the country (a valid job id) of a monitor that never opted in to the
    open relay test nor has a mail domain: an agent adds an open relay test's and a mail DNS's
    facts. The result is stored; the facts are not (one log line naming the monitor and both
    side checks, each counted `unasked`); the reverse DNS its rounds do ask is kept."""
    (cc,) = countries.take(1)
    monitor = await create(api, org)
    mail_dns = MailDns(domain="customer.test", spf=["v=spf1 +all"])
    reverse = ReverseDns(addresses=[PtrCheck(address="192.0.2.1", names=["mx.test"])])
    side = {"relay": RELAY_TAKEN, "mail_dns": mail_dns, "reverse_dns": reverse}
    forged = result(job_ids, monitor, cc, "up", side_checks=side)
    before = {n: refused(DROPPED, "side_check", n) for n in ("relay", "mail_dns")}
    await publish(pipeline.js, forged)
    with capture_logs() as logs:
        assert await pipeline.ingester.burst() == 1
    assert await side_rows(pipe_pool, forged.job_id) == {"reverse_dns": 1}
    assert [r["status"] for r in await rows(pipe_pool, monitor["publicId"])] == ["up"]
    [line] = [
        e for e in logs if e["event"] == "side facts its monitor's rounds do not ask: dropped"
    ]
    assert line["monitor_id"] == monitor["publicId"] and line["job_id"] == forged.job_id
    assert sorted(line["side_checks"]) == ["mail_dns", "relay"]
    assert {n: refused(DROPPED, "side_check", n) - c for n, c in before.items()} == {
        "relay": 1,
        "mail_dns": 1,
    }


async def test_side_facts_of_side_checks_the_monitor_is_asked_for_are_stored(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    """No false refusal: the same facts of a monitor whose rounds ask every side check (the
    open relay test opted in, a mail domain) are stored, and nothing is logged dropped."""
    (cc,) = countries.take(1)
    monitor = await asking_all(api, org)
    mail_dns = MailDns(domain="customer.test", spf=["v=spf1 +all"])
    sent = result(job_ids, monitor, cc, side_checks={"relay": RELAY_TAKEN, "mail_dns": mail_dns})
    await publish(pipeline.js, sent)
    with capture_logs() as logs:
        assert await pipeline.ingester.burst() == 1
    assert await side_rows(pipe_pool, sent.job_id) == {"relay": 1, "mail_dns": 1}
    assert [e for e in logs if "dropped" in e["event"]] == []


async def side_rows(pool: asyncpg.Pool, job_id: str) -> dict[str, int]:
    """The side tables holding a row of `job_id`, and how many (one at most)."""
    found = {}
    async with pool.acquire() as conn:
        for name in ("relay", "mail_dns", "reverse_dns", "readiness"):
            n = await conn.fetchval(
                f"SELECT count(*) FROM side_{name} WHERE job = $1::uuid", job_id
            )
            if n:
                found[name] = n
    return found
