"""`GET /metrics/monitors`: per-monitor, per-country series for one organization, behind a scrape
token that owners and admins make in the console (shown once, stored as a digest)."""

import re

import asyncpg
import httpx
from prometheus_client.parser import text_string_to_metric_families

from controller.scheduling.rules import JobIds
from tests.api.helpers import create
from tests.conftest import make_tenant
from tests.console.helpers import Browserish, store_result

_TOKEN = re.compile(r'id="new-token">([^<]+)<')


async def _scrape_token(client: Browserish, session: str) -> str:
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
    await store_result(pool, job_ids, mine, "DE", "up", response_ms=250.0, cert_days_left=17)
    await store_result(pool, job_ids, mine, "US", "down", error_kind="refused")
    await store_result(pool, job_ids, theirs, "DE", "up")
    token = await _scrape_token(client, org.tokens["admin"])
    assert (await http.get("/metrics/monitors")).status_code == 401
    r = await http.get("/metrics/monitors", headers={"Authorization": "Bearer mps_wrong"})
    assert r.status_code == 401
    r = await http.get("/metrics/monitors", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    assert theirs["publicId"] not in r.text and "relay.org.test" not in r.text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }
    m = mine["publicId"]
    assert samples[("mailprobe_check_up", (("country", "DE"), ("monitor", m)))] == 1
    assert samples[("mailprobe_check_up", (("country", "US"), ("monitor", m)))] == 0
    assert (
        samples[("mailprobe_check_response_seconds", (("country", "DE"), ("monitor", m)))] == 0.25
    )
    assert samples[("mailprobe_tls_cert_days_left", (("country", "DE"), ("monitor", m)))] == 17
    phase = (
        "mailprobe_check_phase_seconds",
        (("country", "DE"), ("monitor", m), ("phase", "greeting")),
    )
    assert samples[phase] == 0.02
    state = {
        dict(labels)["state"]: v
        for (name, labels), v in samples.items()
        if name == "mailprobe_monitor_state"
    }
    assert state == {"up": 0, "degraded": 1, "down": 0, "missed": 0, "unknown": 0}
    names = {dict(labels).get("name") for (name, labels), _ in samples.items()}
    assert 'Relay "quoted" \\ name' in names  # escaped on the wire, intact when parsed


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
    token = await _scrape_token(client, org.tokens["admin"])
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
