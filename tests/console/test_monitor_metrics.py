"""`GET /metrics/monitors`: per-monitor, per-country series for one organization, behind a scrape
token that owners and admins make in the console (shown once, stored as a digest)."""

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
from prometheus_client.parser import text_string_to_metric_families

from controller.ingest import packer
from controller.jobs.rules import JobIds
from shared.timefmt import utcnow
from tests.api.helpers import create
from tests.api.test_roundtrip_monitors import make as make_roundtrip
from tests.conftest import make_tenant
from tests.console.helpers import Browserish, store_result

_TOKEN = re.compile(r'id="new-token">([^<]+)<')


async def scrape_token(client: Browserish, session: str) -> str:
    client.session = session
    token = await client.csrf("/console/scrape-tokens")
    r = await client.post("/console/scrape-tokens", {"name": "prom"}, token=token)
    assert r.status_code == 200
    found = _TOKEN.search(r.text)
    assert found, r.text[:400]
    return found.group(1)


async def test_series_of_one_organization_behind_its_scrape_token(
    client: Browserish, pool: asyncpg.Pool, http: httpx.AsyncClient, job_ids: JobIds
) -> None:
    org, other = await make_tenant(pool), await make_tenant(pool)
    mine = await create(http, org, "smtp", name='Relay "quoted" \\ name', hostname="relay.org.test")
    theirs = await create(http, other, "smtp", name="Their relay")
    await store_result(
        pool,
        job_ids,
        mine,
        "DE",
        "up",
        response_ms=250.0,
        cert_days_left=17,
        cert_not_after="2031-05-04T03:02:01Z",
    )
    await store_result(pool, job_ids, mine, "US", "down", error_kind="refused")
    await store_result(pool, job_ids, theirs, "DE", "up")
    token = await scrape_token(client, org.tokens["admin"])
    assert (await http.get("/metrics/monitors")).status_code == 401
    r = await http.get("/metrics/monitors", headers={"Authorization": "Bearer mps_wrong"})
    assert r.status_code == 401
    r = await http.get("/metrics/monitors", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    assert theirs["publicId"] not in r.text and "relay.org.test" not in r.text
    samples = _samples(r.text)
    m = mine["publicId"]
    assert samples[("mailprobe_check_up", (("country", "DE"), ("monitor", m)))] == 1
    assert samples[("mailprobe_check_up", (("country", "US"), ("monitor", m)))] == 0
    assert (
        samples[("mailprobe_check_response_seconds", (("country", "DE"), ("monitor", m)))] == 0.25
    )
    # expiry as a Unix timestamp, as blackbox_exporter's probe_ssl_earliest_cert_expiry
    expiry = datetime(2031, 5, 4, 3, 2, 1, tzinfo=UTC).timestamp()
    de = (("country", "DE"), ("monitor", m))
    assert samples[("mailprobe_tls_cert_expiry_timestamp_seconds", de)] == expiry
    assert not any(name == "mailprobe_tls_cert_days_left" for name, _ in samples)
    # the phases, a third of the samples, only when asked for
    assert not any(name == "mailprobe_check_phase_seconds" for name, _ in samples)
    phase = (
        "mailprobe_check_phase_seconds",
        (("country", "DE"), ("monitor", m), ("phase", "greeting")),
    )
    with_phases = _samples((await _scrape(http, token, "?phases=true")).text)
    assert with_phases[phase] == 0.02
    assert with_phases.keys() - samples.keys() == {
        ("mailprobe_check_phase_seconds", (("country", "DE"), ("monitor", m), ("phase", p)))
        for p in ("dns", "connect", "greeting")
    }
    state = {
        dict(labels)["state"]: v
        for (name, labels), v in samples.items()
        if name == "mailprobe_monitor_state"
    }
    assert state == {
        "up": 0,
        "degraded": 1,
        "down": 0,
        "recovering": 0,
        "missed": 0,
        "unknown": 0,
        "paused": 0,
    }
    # the free-text name only in the info series: a rename starts no new series elsewhere
    info = [
        dict(labels) for (name, labels), _ in samples.items() if name == "mailprobe_monitor_info"
    ]
    assert info == [
        {
            "monitor": m,
            "name": 'Relay "quoted" \\ name',
            "kind": "smtp",
            "customer": org.org_name.replace("org-", "Customer "),
        }
    ]
    named = {name for (name, labels), _ in samples.items() if "name" in dict(labels)}
    assert named == {"mailprobe_monitor_info"}


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def _scrape(http: httpx.AsyncClient, token: str, query: str = "") -> httpx.Response:
    return await http.get(f"/metrics/monitors{query}", headers={"Authorization": f"Bearer {token}"})


async def test_round_trip_phases_are_series(
    client: Browserish, pool: asyncpg.Pool, http: httpx.AsyncClient, job_ids: JobIds
) -> None:
    """A round trip's submission, delivery and fetch times are phases like any other."""
    org = await make_tenant(pool)
    rt = await make_roundtrip(http, org)
    phases = {"submitMs": 120.0, "deliveryMs": 2500.0, "fetchMs": 40.0}
    await store_result(pool, job_ids, rt, "DE", "up", phases=phases, monitor_type="roundtrip")
    r = await _scrape(http, await scrape_token(client, org.tokens["admin"]), "?phases=1")
    assert r.status_code == 200, r.text
    got = {
        dict(labels)["phase"]: v
        for (name, labels), v in _samples(r.text).items()
        if name == "mailprobe_check_phase_seconds"
    }
    assert got == {"submit": 0.12, "delivery": 2.5, "fetch": 0.04}


async def test_shards_split_the_series_and_cover_every_monitor_once(
    client: Browserish, pool: asyncpg.Pool, http: httpx.AsyncClient, job_ids: JobIds
) -> None:
    org = await make_tenant(pool)
    made: list[dict[str, Any]] = [await create(http, org, "smtp", name=f"m{n}") for n in range(7)]
    for m in made:
        await store_result(pool, job_ids, m, "DE", "up")
    token = await scrape_token(client, org.tokens["admin"])
    whole = _samples((await _scrape(http, token)).text)
    parts: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    seen: list[str] = []
    for k in range(3):
        r = await _scrape(http, token, f"?shards=3&shard={k}")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        shard = _samples(r.text)
        seen += [dict(lb)["monitor"] for n, lb in shard if n == "mailprobe_monitor_info"]
        parts |= shard
    assert sorted(seen) == sorted(m["publicId"] for m in made)  # each in exactly one shard
    assert parts == whole
    for query, field in [
        ("?shard=0", "shard"),
        ("?shards=0&shard=0", "shards"),
        ("?shards=3&shard=3", "shard"),
        ("?shards=1001&shard=0", "shards"),
        ("?shards=x&shard=0", "shards"),
        ("?shards=2&shard=-1", "shard"),
        ("?shards=2&shard=%00", "shard"),
        ("?phases=yes", "phases"),
        ("?shards=2&shard=0&phases=%00", "phases"),
    ]:
        r = await _scrape(http, token, query)
        assert r.status_code == 400, (query, r.text)
        assert field in r.text, (query, r.text)
    # a shard query is no way around the token
    r = await http.get("/metrics/monitors?shards=2&shard=0")
    assert r.status_code == 401


async def test_only_owners_and_admins_make_scrape_tokens(
    client: Browserish, pool: asyncpg.Pool
) -> None:
    org = await make_tenant(pool)
    for role in ("member", "readonly"):
        client.session = org.tokens[role]
        assert (await client.get("/console/scrape-tokens")).status_code == 403
        token = await client.csrf()
        assert (
            await client.post("/console/scrape-tokens", {"name": "x"}, token=token)
        ).status_code == 403


async def test_an_inconclusive_latest_check_is_no_check_up_series_but_its_own(
    client: Browserish, pool: asyncpg.Pool, http: httpx.AsyncClient, job_ids: JobIds
) -> None:
    """An agent whose own path failed says nothing of the server: no `mailprobe_check_up` 0
    (a dashboard would show the server down), but `mailprobe_check_inconclusive` 1."""
    org = await make_tenant(pool)
    mine = await create(http, org, "smtp")
    await store_result(pool, job_ids, mine, "DE", "up")
    await store_result(
        pool, job_ids, mine, "US", "inconclusive", error_kind="inconclusive", message="port 25"
    )
    token = await scrape_token(client, org.tokens["admin"])
    r = await http.get("/metrics/monitors", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    samples = {
        (s.name, dict(s.labels)["country"]): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
        if "country" in s.labels
    }
    assert samples[("mailprobe_check_up", "DE")] == 1
    assert ("mailprobe_check_up", "US") not in samples
    assert samples[("mailprobe_check_inconclusive", "US")] == 1
    assert samples[("mailprobe_check_inconclusive", "DE")] == 0
    assert samples[("mailprobe_check_missed", "US")] == 0


async def test_gzip_when_the_client_accepts_it(
    client: Browserish, pool: asyncpg.Pool, http: httpx.AsyncClient, job_ids: JobIds
) -> None:
    """Prometheus asks for gzip: the same text, compressed; a client that does not ask (or
    refuses it with q=0) gets it plain."""
    org = await make_tenant(pool)
    for n in range(3):
        await store_result(pool, job_ids, await create(http, org, "smtp", name=f"g{n}"), "DE", "up")
    token = await scrape_token(client, org.tokens["admin"])
    auth = {"Authorization": f"Bearer {token}"}
    plain = await http.get("/metrics/monitors", headers={**auth, "Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    packed = await http.get(
        "/metrics/monitors", headers={**auth, "Accept-Encoding": "deflate, gzip;q=1.0"}
    )
    assert packed.headers["content-encoding"] == "gzip"
    assert packed.headers["vary"] == "Accept-Encoding"
    # httpx undid the gzip: the same text, fewer bytes on the wire
    assert packed.text == plain.text
    assert packed.num_bytes_downloaded < len(plain.content) / 2
    for refusing in ("gzip;q=0", "gzip; q=0.000", "gzip;q=x", "*"):
        refused = await http.get("/metrics/monitors", headers={**auth, "Accept-Encoding": refusing})
        assert "content-encoding" not in refused.headers, refusing
        assert refused.text == plain.text


async def test_a_latest_result_in_a_packed_hour_keeps_its_series(
    client: Browserish, pool: asyncpg.Pool, http: httpx.AsyncClient, job_ids: JobIds
) -> None:
    """A monitor whose latest result is in an hour already packed (checked hourly, or paused)
    still has its response time, phases and certificate expiry."""
    org = await make_tenant(pool)
    mine = await create(http, org, "smtp")
    hour = utcnow().replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    for minutes, ms in ((40, 30.0), (50, 40.0)):  # the second is compact: the facts are the same
        await store_result(
            pool,
            job_ids,
            mine,
            "DE",
            "up",
            ago=utcnow() - hour - timedelta(minutes=minutes),
            response_ms=ms,
            cert_not_after="2031-05-04T03:02:01Z",
            cert_days_left=17,
        )
    async with pool.acquire() as conn:
        assert await packer.pack(conn, job_ids, hour, hour + timedelta(hours=1)) > 0
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM result_rows r JOIN monitors m ON m.id = r.monitor_id"
                " WHERE m.public_id = $1::uuid AND r.detail_ms IS NOT NULL",
                mine["publicId"],
            )
            == 0
        )
    token = await scrape_token(client, org.tokens["admin"])
    samples = _samples((await _scrape(http, token, "?phases=true")).text)
    de = (("country", "DE"), ("monitor", mine["publicId"]))
    assert samples[("mailprobe_check_response_seconds", de)] == 0.04
    assert samples[("mailprobe_check_phase_seconds", (*de, ("phase", "greeting")))] == 0.02
    expiry = datetime(2031, 5, 4, 3, 2, 1, tzinfo=UTC).timestamp()
    assert samples[("mailprobe_tls_cert_expiry_timestamp_seconds", de)] == expiry
