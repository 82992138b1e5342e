"""A round trip's messages are capped (issue 22): until its mailbox has shown it receives the
probe, a monitor sends at most `UNCONFIRMED_PER_HOUR` an hour (`mailbox_unconfirmed`), and each
recipient domain gets at most ROUNDTRIP_MAILS_PER_DOMAIN_PER_MINUTE over all organizations and
controller replicas (`domain_capped`); a message held back is a missed row, never `down`."""

import asyncio
import uuid
from datetime import timedelta
from typing import Any, cast

import asyncpg
import httpx
import msgspec

from controller.ingest import store as results
from controller.ingest.store import decode_result
from controller.monitors.mailbox_apis import Charge
from controller.roundtrips import delivery_store as roundtrip_delivery
from controller.roundtrips import rounds_store as roundtrip_rounds
from controller.roundtrips import rules
from controller.scheduling.deferred_store import DeferredJob
from controller.scheduling.plan import PlannedRound
from controller.settings import ControllerSettings
from shared.messages import FEATURE_LOOK_ONLY, CheckJob, CheckResult, Phases, encode
from shared.timefmt import iso_ms, utcnow
from testkit.peers.jobs import make_job
from testkit.sealing import KeyRing
from tests.conftest import Tenant, make_tenant
from tests.pipeline.conftest import Countries, SchedulerWith, WiredPipeline
from tests.pipeline.test_scheduler import make_due

RT = "/api/roundtrip-monitors"


async def round_trip(
    api: httpx.AsyncClient, tenant: Tenant, ccs: list[str], domain: str
) -> dict[str, Any]:
    box = f"probe-{uuid.uuid4().hex[:8]}@{domain}"
    body = {
        "customerId": tenant.customer_public_id,
        "name": "Mail arrives",
        "checkInterval": 300,
        "allowedCheckCountryCodes": ccs,
        "roundtripConfig": {
            "send": {"hostname": "smtp.example.com", "auth": {"user": box, "pass": "pw"}},
            "to": box,
            "receive": {"hostname": f"imap.{domain}", "user": box, "password": "pw"},
        },
    }
    r = await api.post(RT, json=body, headers=tenant.auth())
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    return created


async def held(pool: asyncpg.Pool, kind: str) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        rows: list[asyncpg.Record] = await conn.fetch(
            "SELECT monitor_public_id, status, message FROM check_results WHERE error_kind = $1",
            kind,
        )
    return rows


async def confirm(pool: asyncpg.Pool, public_id: str) -> None:
    """As the alerter records a delivered round."""
    async with pool.acquire() as conn:
        monitor_id = await conn.fetchval("SELECT id FROM monitors WHERE public_id = $1", public_id)
        await roundtrip_delivery.put(conn, monitor_id, rules.Delivery(confirmed_at=utcnow()))


async def test_an_unconfirmed_mailbox_gets_at_most_three_messages_an_hour(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    scheduler_with: SchedulerWith,
) -> None:
    """Two countries a round: 2 messages, then none (a round goes whole: 4 would pass the 3),
    each held country a missed `mailbox_unconfirmed` row; once a round was delivered the monitor
    sends again. The old code sent every round to every country, whoever `to` was."""
    two = countries.take(2)
    for cc in two:
        await countries.live(cc)
    s = scheduler_with()
    m = await round_trip(api, org, two, f"rt-{uuid.uuid4().hex[:8]}.example")
    sent = []
    for _ in range(3):
        await make_due(pipe_pool, m["publicId"])
        sent.append(await s.tick())
    assert sent == [2, 0, 0]
    rows = await held(pipe_pool, rules.UNCONFIRMED)
    assert len(rows) == 4 and all(r["status"] == "missed" for r in rows)
    assert "has not yet shown it receives the probe" in rows[0]["message"]
    r = await api.get(f"{RT}/{m['publicId']}/delivery", headers=org.auth())
    assert (r.json()["state"], r.json()["sentLastHour"]) == ("unconfirmed", 2)
    await confirm(pipe_pool, m["publicId"])
    await make_due(pipe_pool, m["publicId"])
    assert await s.tick() == 2


async def test_a_recipient_domain_is_capped_across_organizations_and_replicas(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    scheduler_with: SchedulerWith,
) -> None:
    """Two organizations' confirmed round trips to one domain from two countries each: 4
    messages wanted, a cap of 3 a minute, so the second round is `domain_capped` whole; another
    replica's next rounds find the cap used up in PostgreSQL and send none; another domain is
    not held."""
    two = countries.take(2)
    for cc in two:
        await countries.live(cc)
    domain = f"shared-{uuid.uuid4().hex[:8]}.example"
    other_org = await make_tenant(pipe_pool)
    same = [await round_trip(api, t, two, domain) for t in (org, other_org)]
    elsewhere = await round_trip(api, other_org, two, f"own-{uuid.uuid4().hex[:8]}.example")
    for m in [*same, elsewhere]:
        await confirm(pipe_pool, m["publicId"])
    await make_due(pipe_pool, *(m["publicId"] for m in [*same, elsewhere]))
    first = scheduler_with(mails_per_domain=3)
    assert await first.tick() == 4  # one round of the shared domain's two, the other domain's
    rows = await held(pipe_pool, rules.DOMAIN_CAPPED)
    assert len(rows) == 2 and len({r["monitor_public_id"] for r in rows}) == 1
    assert str(rows[0]["monitor_public_id"]) in {m["publicId"] for m in same}
    assert all(r["status"] == "missed" for r in rows)
    assert "ROUNDTRIP_MAILS_PER_DOMAIN_PER_MINUTE" in rows[0]["message"]
    second = scheduler_with(mails_per_domain=3)
    await make_due(pipe_pool, *(m["publicId"] for m in same))
    assert await second.tick() == 0
    assert len(await held(pipe_pool, rules.DOMAIN_CAPPED)) == 6


async def test_a_spaced_login_of_a_round_is_held_back_too(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    scheduler_with: SchedulerWith,
) -> None:
    """A round's later countries go `LOGIN_SPACING_SECONDS` after the first (`run_deferred`):
    each is a message too, taken with its round: the first round goes whole, its later login
    too, and the second round is held whole at once, its later login never deferred."""
    two = countries.take(2)
    for cc in two:
        await countries.live(cc)
    spacing = 1.0  # as in test_login_spacing: a loaded machine cannot take it between steps
    s = scheduler_with(login_spacing_s=spacing)
    m = await round_trip(api, org, two, f"rt-{uuid.uuid4().hex[:8]}.example")
    sent = []
    for _ in range(2):
        await make_due(pipe_pool, m["publicId"])
        now = await s.tick()
        await asyncio.sleep(spacing + 0.05)
        sent.append((now, await s.run_deferred()))
    assert sent == [(1, 1), (0, 0)]
    rows = await held(pipe_pool, rules.UNCONFIRMED)
    assert len(rows) == 2 and all(r["status"] == "missed" for r in rows)
    assert {r["monitor_public_id"] for r in rows} == {uuid.UUID(m["publicId"])}


async def answer(pool: asyncpg.Pool, job: CheckJob, *, accepted: bool, found: bool = False) -> None:
    """Store the job's result as the ingester does: the send server refused the connection,
    or it took the message and the mailbox leg found it missing (or, `found`, there)."""
    at = iso_ms(utcnow())
    result = CheckResult(
        job_id=job.job_id,
        monitor_id=job.monitor_id,
        monitor_type=job.monitor_type,
        country=job.country,
        agent_id=f"{job.country}-test",
        scheduled_at=job.scheduled_at,
        started_at=at,
        finished_at=at,
        status="down",
        error_kind="not_delivered" if accepted else "refused",
        message="not in INBOX" if accepted else "send leg: connection refused by smtp.example.com",
        phases=Phases(submit_ms=5.0 if accepted else None),
    )
    if found:
        result = msgspec.structs.replace(
            result, status="up", error_kind=None, message="delivered to INBOX in 0.4s"
        )
    async with pool.acquire() as conn, conn.transaction():
        assert await results.store(conn, [decode_result(encode(result))], now=utcnow()) == 1


async def answer_new(
    pool: asyncpg.Pool, countries: Countries, ccs: list[str], answered: set[str]
) -> None:
    """Answer the jobs sent to `ccs` not answered yet (`not_delivered`): their round is over,
    so the next round's looks go at once instead of waiting for it."""
    for cc in ccs:
        for job, _ in await countries.jobs(cc):
            if job.job_id not in answered:
                answered.add(job.job_id)
                await answer(pool, job, accepted=True)


async def test_a_check_now_after_create_sends_a_round_whole_or_not_at_all(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    scheduler_with: SchedulerWith,
) -> None:
    """The create's round goes from both countries; a check now right after it joins it, still
    in flight (issue 66): nothing more is sent. Once the first round's results say no server
    took its messages (the send server refused the connection), they count no more: the next
    check now goes whole. A message a server took counts on: a round then that would make 4
    messages of an unconfirmed mailbox's 3 is held in both countries, each saying why, never
    sent in one."""
    two = countries.take(2)
    for cc in two:
        await countries.live(cc)
    s = scheduler_with()
    m = await round_trip(api, org, two, f"rt-{uuid.uuid4().hex[:8]}.example")
    trigger = f"{RT}/{m['publicId']}/trigger-check"
    delivery = f"{RT}/{m['publicId']}/delivery"
    assert await s.tick() == 2  # its first round, at once
    first = [job for cc in two for job, _ in await countries.jobs(cc)]
    r = await api.post(trigger, headers=org.auth())
    assert r.status_code == 202, r.text
    assert r.json()["joined"] is True, r.text
    assert r.json()["scheduledAt"] == first[0].scheduled_at
    assert sorted(j["jobId"] for j in r.json()["jobs"]) == sorted(j.job_id for j in first)
    assert await held(pipe_pool, rules.UNCONFIRMED) == []
    assert len([job for cc in two for job, _ in await countries.jobs(cc)]) == 2
    for job in first:
        await answer(pipe_pool, job, accepted=False)
    r = await api.get(delivery, headers=org.auth())
    assert (r.json()["state"], r.json()["sentLastHour"]) == ("unconfirmed", 0)
    r = await api.post(trigger, headers=org.auth())
    assert [j["status"] for j in r.json()["jobs"]] == ["queued", "queued"], r.text
    second = [job for cc in two for job, _ in await countries.jobs(cc) if job not in first]
    assert len(second) == 2
    for job in second:
        await answer(pipe_pool, job, accepted=True)
    r = await api.get(delivery, headers=org.auth())
    assert r.json()["sentLastHour"] == 2
    r = await api.post(trigger, headers=org.auth())
    assert [j["status"] for j in r.json()["jobs"]] == [rules.UNCONFIRMED] * 2, r.text
    assert r.json()["joined"] is False
    rows = await held(pipe_pool, rules.UNCONFIRMED)
    assert len(rows) == 2 and "a round's countries all or none" in rows[0]["message"]


async def test_a_held_round_looks_where_every_agent_can_and_is_held_elsewhere(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    scheduler_with: SchedulerWith,
) -> None:
    """An unconfirmed mailbox over its cap (issue 60): in a country whose every live agent
    looks without sending (`look_only`), the round's job still goes, as a look
    (`lookOnly: mailbox_unconfirmed`), and counts as no message; in a country with an agent
    that predates it (it would send), the round is held as before, a missed row."""
    looking, mixed = countries.take(2)
    await countries.live(looking, features=[FEATURE_LOOK_ONLY])
    await countries.live(mixed, "new", features=[FEATURE_LOOK_ONLY])
    await countries.live(mixed, "old")
    s = scheduler_with()
    m = await round_trip(api, org, [looking, mixed], f"rt-{uuid.uuid4().hex[:8]}.example")
    sent = []
    answered: set[str] = set()
    for _ in range(3):
        await make_due(pipe_pool, m["publicId"])
        sent.append(await s.tick())
        await answer_new(pipe_pool, countries, [looking, mixed], answered)
    assert sent == [2, 1, 1]
    jobs = [job for job, _ in await countries.jobs(looking)]
    assert [getattr(job, "look_only", None) for job in jobs] == ["", *[rules.UNCONFIRMED] * 2]
    assert [getattr(job, "look_only", None) for job, _ in await countries.jobs(mixed)] == [""]
    rows = [
        r
        for r in await held(pipe_pool, rules.UNCONFIRMED)
        if str(r["monitor_public_id"]) == m["publicId"]
    ]
    assert len(rows) == 2 and all(r["status"] == "missed" for r in rows)
    r = await api.get(f"{RT}/{m['publicId']}/delivery", headers=org.auth())
    assert (r.json()["state"], r.json()["sentLastHour"]) == ("unconfirmed", 2)


async def test_a_later_login_of_a_looking_round_goes_as_a_look(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    scheduler_with: SchedulerWith,
) -> None:
    """A round's later country (`run_deferred`) of a round that looks is a look too: it goes
    when its login is due, sending nothing, never held nor counted."""
    two = countries.take(2)
    for cc in two:
        await countries.live(cc, features=[FEATURE_LOOK_ONLY])
    spacing = 1.0
    s = scheduler_with(login_spacing_s=spacing)
    m = await round_trip(api, org, two, f"rt-{uuid.uuid4().hex[:8]}.example")
    sent = []
    answered: set[str] = set()
    for _ in range(3):
        await make_due(pipe_pool, m["publicId"])
        now = await s.tick()
        await asyncio.sleep(spacing + 0.05)
        sent.append((now, await s.run_deferred()))
        await answer_new(pipe_pool, countries, two, answered)
    assert sent == [(1, 1), (1, 1), (1, 1)]
    looks = cast(
        list[str],
        [getattr(job, "look_only", None) for cc in two for job, _ in await countries.jobs(cc)],
    )
    assert sorted(looks) == ["", "", *[rules.UNCONFIRMED] * 4]
    mine = [
        r
        for r in await held(pipe_pool, rules.UNCONFIRMED)
        if str(r["monitor_public_id"]) == m["publicId"]
    ]
    assert mine == []
    r = await api.get(f"{RT}/{m['publicId']}/delivery", headers=org.auth())
    assert r.json()["sentLastHour"] == 2


async def test_a_delivered_result_counts_before_its_round_is_judged_and_check_nows_join(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    settings: ControllerSettings,
    seal_keys: KeyRing,
) -> None:
    """Issue 66. Check-nows while a round is in flight join it, however many, and however
    they race: one round's two messages. Its results showed the message arriving, so before
    any alerter judged that round the next check now goes whole (a look would find nothing: the
    round deleted its message), past the unconfirmed cap. A new mailbox starts over: results
    of rounds before it confirm nothing, so a round then is held."""
    two = countries.take(2)
    for cc in two:
        await countries.live(cc)
    m = await round_trip(api, org, two, f"rt-{uuid.uuid4().hex[:8]}.example")
    trigger = f"{RT}/{m['publicId']}/trigger-check"

    async def check_now() -> dict[str, Any]:
        r = await api.post(trigger, headers=org.auth())
        assert r.status_code == 202, r.text
        body: dict[str, Any] = r.json()
        return body

    racing = await asyncio.gather(check_now(), check_now(), check_now())
    assert sorted(b["joined"] for b in racing) == [False, True, True], racing
    assert len({b["scheduledAt"] for b in racing}) == 1
    first = [job for cc in two for job, _ in await countries.jobs(cc)]
    assert len(first) == 2
    r = await api.post(trigger, headers=org.auth())
    assert r.status_code == 429, "a check-now that joins is paid for all the same"
    async with pipe_pool.acquire() as conn:
        monitor_id = await conn.fetchval(
            "SELECT id FROM monitors WHERE public_id = $1::uuid", m["publicId"]
        )
        assert await roundtrip_rounds.in_flight(conn, monitor_id, utcnow()) is not None
        await conn.execute(
            "UPDATE monitors SET config = jsonb_set(config, '{slowAfterSeconds}', '30')"
            " WHERE id = $1",
            monitor_id,
        )
        assert await roundtrip_rounds.in_flight(conn, monitor_id, utcnow()) is None, (
            "new settings: a check-now checks them, it joins no round of the old ones"
        )

    for job in first:
        await answer(pipe_pool, job, accepted=True, found=True)
    r = await api.get(f"{RT}/{m['publicId']}/delivery", headers=org.auth())
    assert (r.json()["state"], r.json()["confirmedAt"]) == ("confirmed", first[0].scheduled_at)
    async with pipe_pool.acquire() as conn:  # the trigger allowance refilled, as time does
        await conn.execute(
            "UPDATE monitors SET trigger_tat = NULL WHERE public_id = $1::uuid", m["publicId"]
        )
    again = await check_now()
    assert (again["joined"], [j["status"] for j in again["jobs"]]) == (False, ["queued"] * 2)
    second = [job for cc in two for job, _ in await countries.jobs(cc) if job not in first]
    assert len(second) == 2 and all(not getattr(j, "look_only", "") for j in second)

    for job in second:
        await answer(pipe_pool, job, accepted=True, found=True)
    r = await api.patch(
        f"{RT}/{m['publicId']}",
        json={
            "roundtripConfig": {
                **m["roundtripConfig"],
                "receive": {
                    **m["roundtripConfig"]["receive"],
                    "hostname": "imap2.example.net",
                    "password": "pw",
                },
            }
        },
        headers=org.auth(),
    )
    assert r.status_code == 200, r.text
    r = await api.get(f"{RT}/{m['publicId']}/delivery", headers=org.auth())
    assert r.json()["state"] == "unconfirmed", "a new mailbox: the old one's results count not"
    held_now = await check_now()
    assert [j["status"] for j in held_now["jobs"]] == [rules.UNCONFIRMED] * 2, held_now


async def test_a_look_planned_while_a_round_is_in_flight_waits_and_is_answered_by_its_finding(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    scheduler_with: SchedulerWith,
) -> None:
    """Issue 66: a round the unconfirmed mailbox's cap holds, planned while the round before
    it is in flight, would look at once and find nothing (that round's message is on its
    way, and that round deletes it). Its looks wait until that round ends: where that round
    found its message, the look is `up` from that finding, sent nowhere and logging in nowhere;
    where it did not, the look goes and finds what arrived late."""
    found_cc, lost_cc = countries.take(2)
    for cc in (found_cc, lost_cc):
        await countries.live(cc, features=[FEATURE_LOOK_ONLY])
    s = scheduler_with()
    m = await round_trip(api, org, [found_cc, lost_cc], f"rt-{uuid.uuid4().hex[:8]}.example")
    await make_due(pipe_pool, m["publicId"])
    assert await s.tick() == 2
    (first_found,) = [job for job, _ in await countries.jobs(found_cc)]
    (first_lost,) = [job for job, _ in await countries.jobs(lost_cc)]
    due = await make_due(pipe_pool, m["publicId"])
    assert await s.tick() == 0, "held by the cap, its looks wait for the round in flight"

    await answer(pipe_pool, first_found, accepted=True, found=True)
    await answer(pipe_pool, first_lost, accepted=True)
    ended = utcnow() + timedelta(seconds=m["timeoutSeconds"] + 6)
    later = scheduler_with(clock=lambda: ended)
    assert await later.run_deferred() == 1
    assert [job.job_id for job, _ in await countries.jobs(found_cc)] == [first_found.job_id]
    looks = [job for job, _ in await countries.jobs(lost_cc) if job != first_lost]
    assert [getattr(job, "look_only", None) for job in looks] == [rules.UNCONFIRMED]
    rows = await pipe_pool.fetch(
        "SELECT country, status, error_kind, agent_id, message FROM check_results"
        " WHERE monitor_public_id = $1::uuid AND scheduled_at = $2",
        m["publicId"],
        due,
    )
    [row] = rows
    assert (row["country"], row["status"], row["error_kind"]) == (found_cc, "up", None), row
    assert row["agent_id"] is None and "this round sent nothing" in row["message"]
    assert first_found.scheduled_at in row["message"]


async def test_a_later_login_held_when_due_gives_back_what_its_round_reserved(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    scheduler_with: SchedulerWith,
) -> None:
    """A round trip's later login whose message may not go when it comes due (its count from
    planning gone with the hour, the unconfirmed mailbox's 3 taken meanwhile) is recorded
    `mailbox_unconfirmed` and gives back what every budget gave it when its round was planned:
    its mailbox API calls no longer count against the mailbox."""
    (cc,) = countries.take(1)
    await countries.live(cc)
    m = await round_trip(api, org, [cc], f"rt-{uuid.uuid4().hex[:8]}.example")
    admission = scheduler_with().admission
    now = utcnow()
    job = msgspec.structs.replace(
        make_job("roundtrip", 587, country=cc, tenant=org.customer_id, job_id=str(uuid.uuid4())),
        scheduled_at=iso_ms(now),
    )
    async with pipe_pool.acquire() as conn, conn.transaction():
        monitor_id = await conn.fetchval(
            "SELECT id FROM monitors WHERE public_id = $1", m["publicId"]
        )
        planned = PlannedRound(
            monitor_id,
            now,
            None,
            deferred=[(1.0, job)],
            account="acct-box",
            api_charges=[Charge("graph", "acct-box", "check")],
        )
        await admission.admit(conn, [planned], now)
        [(_, later)] = planned.deferred
        assert later.api_calls == 2
        domain = await conn.fetchval("SELECT domain FROM mail_sends WHERE job_id = $1", job.job_id)
        await conn.execute("DELETE FROM mail_sends WHERE job_id = $1", job.job_id)
        await conn.executemany(
            "INSERT INTO mail_sends (monitor_id, domain, at, job_id) VALUES ($1, $2, $3, $4)",
            [(monitor_id, domain, now, str(uuid.uuid4())) for _ in range(3)],
        )
        due = DeferredJob(later, monitor_id, "acct-box", rejected=False)
        admitted, held_rows, _ = await admission.admit_deferred(conn, [due], now)
        assert admitted.jobs == []
        assert [row.error_kind for row in held_rows] == [rules.UNCONFIRMED]
        left = await conn.fetchval(
            "SELECT count(*) FROM api_calls WHERE job = $1::uuid", job.job_id
        )
        assert left == 0, "a later login held when due keeps its round's API calls"
