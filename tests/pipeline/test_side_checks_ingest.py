"""Side checks' facts through the ingester (issue 65), on real PostgreSQL and NATS: a result of
an agent that predates `sideChecks` (today's payload, its facts in fields of their own) is read
with the new types and stored under its side check; a newer agent's facts are stored once by
job id; facts that do not fit their side check, or of a side check this controller does not
know, are dropped with a log line and the result kept; the statement's status rule is Python's."""

import json
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
from structlog.testing import capture_logs

from controller.jobs.result_kinds import INCONCLUSIVE, MISSED_KINDS
from controller.jobs.rules import JobIds
from shared.messages import encode
from shared.sidechecks.reverse_dns import PtrCheck, ReverseDns
from shared.subjects import results_subject
from shared.timefmt import utcnow
from tests.api.helpers import create
from tests.conftest import Tenant
from tests.pipeline.conftest import Countries, WiredPipeline
from tests.pipeline.test_ingest import result

FACTS = ReverseDns(addresses=[PtrCheck(address="192.0.2.1", names=["mx.test"], confirmed=[])])
FACTS_JSON: dict[str, Any] = {
    "addresses": [{"address": "192.0.2.1", "names": ["mx.test"], "confirmed": [], "error": ""}],
    "truncated": False,
    "canaries": None,  # stored as its type holds it: no canaries asked
}


async def _publish(pipeline: WiredPipeline, payload: dict[str, Any]) -> None:
    subject = results_subject(payload["country"], payload["monitorType"], payload["monitorId"])
    await pipeline.js.publish(subject, json.dumps(payload).encode())


async def _stored(pool: asyncpg.Pool, job_id: str) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return list(
            await conn.fetch("SELECT country, facts FROM side_reverse_dns WHERE job = $1", job_id)
        )


async def _api_result(api: httpx.AsyncClient, org: Tenant, public_id: str) -> dict[str, Any]:
    r = await api.get(f"/api/smtp-monitors/{public_id}/results", headers=org.auth())
    [item] = r.json()["items"]
    return dict(item)


async def test_an_older_agents_result_is_read_and_its_facts_stored_under_the_side_check(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    """Today's payload, as an agent of the previous version publishes it: `reverseDns` (and
    the other side fields, null) at the top, no `sideChecks`. Stored, its facts are the side
    check's, and the API answers as before (`reverseDns`) and under `sideChecks`."""
    (cc,) = countries.take()
    monitor = await create(api, org)
    payload = json.loads(encode(result(job_ids, monitor, cc)))
    del payload["sideChecks"]
    payload |= {"mailDns": None, "reputation": None, "relay": None, "reverseDns": FACTS_JSON}
    await _publish(pipeline, payload)
    assert await pipeline.ingester.burst() == 1
    [row] = await _stored(pipe_pool, payload["jobId"])
    assert (row["country"], row["facts"]) == (cc, FACTS_JSON)
    item = await _api_result(api, org, monitor["publicId"])
    assert item["reverseDns"] == FACTS_JSON
    assert item["sideChecks"] == {"reverse_dns": FACTS_JSON}


async def test_a_newer_agents_facts_are_stored_once_by_job(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    (cc,) = countries.take()
    monitor = await create(api, org)
    res = result(job_ids, monitor, cc, side_checks={"reverse_dns": FACTS})
    payload = json.loads(encode(res))
    await _publish(pipeline, payload)
    await _publish(pipeline, payload)
    assert await pipeline.ingester.burst() == 1
    assert [r["facts"] for r in await _stored(pipe_pool, res.job_id)] == [FACTS_JSON]
    item = await _api_result(api, org, monitor["publicId"])
    assert item["sideChecks"] == {"reverse_dns": FACTS_JSON} and item["reverseDns"] == FACTS_JSON


async def test_facts_that_do_not_fit_or_of_an_unknown_side_check_are_dropped_the_result_kept(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    (cc,) = countries.take()
    monitor = await create(api, org)
    payload = json.loads(encode(result(job_ids, monitor, cc)))
    payload["sideChecks"] = {"reverse_dns": {"addresses": "all of them"}, "dkim": {"keys": []}}
    await _publish(pipeline, payload)
    with capture_logs() as logs:
        assert await pipeline.ingester.burst() == 1
    assert await _stored(pipe_pool, payload["jobId"]) == []
    dropped = [e for e in logs if e["event"] == "side facts malformed: dropped"]
    assert [("reverse_dns" in e["error"]) for e in dropped] == [True]
    item = await _api_result(api, org, monitor["publicId"])
    assert item["status"] == "up" and item["sideChecks"] == {} and item["reverseDns"] is None


async def test_the_stored_status_rule_is_pythons_missed_kinds(pipe_pool: asyncpg.Pool) -> None:
    """The statement's status rule is one SQL function (`result_stored_status`, migration
    0083): a `down` of each of MISSED_KINDS is `missed`, any other kind stays `down`, and
    `inconclusive` goes with its error kind either way."""
    kinds = sorted(MISSED_KINDS)
    cases = [("down", k, "missed") for k in kinds] + [
        ("down", "timeout", "down"),
        ("down", None, "down"),
        ("up", None, "up"),
        ("up", "expired", "up"),
        ("inconclusive", "inconclusive", INCONCLUSIVE),
        ("down", INCONCLUSIVE, INCONCLUSIVE),
        ("inconclusive", "timeout", INCONCLUSIVE),
    ]
    async with pipe_pool.acquire() as conn:
        got = await conn.fetch(
            "SELECT result_stored_status(s, k) AS stored FROM unnest($1::text[], $2::text[])"
            " WITH ORDINALITY AS u(s, k, n) ORDER BY n",
            [s for s, _, _ in cases],
            [k for _, k, _ in cases],
        )
    assert [r["stored"] for r in got] == [want for _, _, want in cases]


RELAY_TAKEN = {
    "sender": "probe@example.com",
    "recipient": "x@example.net",
    "mailFrom": "250 ok",
    "rcptTo": "250 ok",
}


async def test_an_older_agents_side_facts_are_held_to_what_the_monitors_rounds_ask(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    """An agent of the previous version answers the open relay test in the result's `relay`:
    stored for a monitor that opted in to it (its DNS rounds ask it, by `relayCheck` too),
    dropped for one that did not, as a newer agent's `sideChecks.relay` is; both results kept."""
    (cc,) = countries.take()
    smtp = {"auth": {"user": "username", "pass": "password"}}
    opted_in = await create(api, org, smtpConfig={**smtp, "relayCheck": True})
    never = await create(api, org, smtpConfig=smtp)
    sent = []
    for monitor in (opted_in, never):
        payload = json.loads(encode(result(job_ids, monitor, cc)))
        del payload["sideChecks"]
        payload |= {"mailDns": None, "reputation": None, "reverseDns": None, "relay": RELAY_TAKEN}
        await _publish(pipeline, payload)
        sent.append(payload["jobId"])
    with capture_logs() as logs:
        assert await pipeline.ingester.burst() == 2
    async with pipe_pool.acquire() as conn:
        kept = await conn.fetch(
            "SELECT job::text FROM side_relay WHERE job = ANY($1::uuid[])", sent
        )
    assert [r["job"] for r in kept] == [sent[0]]
    [line] = [
        e for e in logs if e["event"] == "side facts its monitor's rounds do not ask: dropped"
    ]
    assert (line["monitor_id"], line["side_checks"]) == (never["publicId"], ["relay"])
    for monitor in (opted_in, never):
        item = await _api_result(api, org, monitor["publicId"])
        assert item["status"] == "up"
    assert (await _api_result(api, org, never["publicId"]))["sideChecks"] == {}


async def test_a_newer_agents_legacy_fields_are_dropped_named_and_its_side_checks_kept(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    """An agent that echoes its job's sealed asks announced `sideChecks`: facts it also sends
    in the fields of older agents (`reverseDns`, `relay`) are not read. They are dropped with a
    log line naming them (`legacy_fields`); what its `sideChecks` says is stored, and the
    result is kept."""
    (cc,) = countries.take()
    monitor = await create(api, org)
    other = {**FACTS_JSON, "addresses": [{**FACTS_JSON["addresses"][0], "names": ["forged.test"]}]}
    res = result(job_ids, monitor, cc, side_checks={"reverse_dns": FACTS})
    payload = json.loads(encode(res))
    asks: dict[str, Any] = {"reverse_dns": {}}
    payload |= {
        "asks": asks,
        "asksSeal": job_ids.asks.seal(payload["jobId"], asks),
        "reverseDns": other,
        "relay": RELAY_TAKEN,
    }
    await _publish(pipeline, payload)
    with capture_logs() as logs:
        assert await pipeline.ingester.burst() == 1
    refused = [e for e in logs if e.get("reason") == "legacy_fields"]
    assert [e["side_checks"] for e in refused] == [["reverse_dns", "relay"]]
    assert [r["facts"] for r in await _stored(pipe_pool, res.job_id)] == [FACTS_JSON]
    item = await _api_result(api, org, monitor["publicId"])
    assert item["sideChecks"] == {"reverse_dns": FACTS_JSON} and item["relay"] is None
    # Without its sideChecks, the same agent's legacy field alone stores nothing.
    later = result(job_ids, monitor, cc, at=utcnow() + timedelta(minutes=1))
    alone = json.loads(encode(later))
    alone |= {
        "asks": asks,
        "asksSeal": job_ids.asks.seal(alone["jobId"], asks),
        "reverseDns": other,
    }
    await _publish(pipeline, alone)
    with capture_logs() as logs:
        assert await pipeline.ingester.burst() == 1
    assert [e["side_checks"] for e in logs if e.get("reason") == "legacy_fields"] == [
        ["reverse_dns"]
    ]
    assert await _stored(pipe_pool, later.job_id) == []
