"""Debian's Prometheus scrapes the controller with the sharded example job
(deploy/grafana/prometheus.sharded.example.yaml, pointed at the test's loopback API) and the
controller's own job, and answers every query of the Grafana dashboard through its HTTP API:
the per-monitor panels (uptime included) show the monitor, the others evaluate."""

import asyncio
import json
import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
import yaml

from controller.jobs.rules import JobIds
from shared import embedded
from testkit.serving import http_client
from tests.api.helpers import create
from tests.conftest import make_tenant
from tests.console.helpers import Browserish, store_result
from tests.console.test_monitor_metrics import scrape_token

PROMETHEUS = "/usr/bin/prometheus"
GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
# Short enough for a test, long enough for a loaded host: a scrape that takes longer than its
# timeout (at most the interval) fails, and Prometheus marks every series of the target stale,
# so an instant query then finds none of them.
INTERVAL_S = 5
INTERVAL = f"{INTERVAL_S}s"

pytestmark = pytest.mark.skipif(
    shutil.which(PROMETHEUS) is None, reason="Debian's prometheus is not installed (make test)"
)


def _config(api_url: str, token_file: Path) -> dict[str, Any]:
    """The example jobs as a deployment has them, on the test's loopback API, plain HTTP."""
    host = urlsplit(api_url).netloc
    (sharded,) = yaml.safe_load((GRAFANA / "prometheus.sharded.example.yaml").read_text())[
        "scrape_configs"
    ]
    plain = yaml.safe_load((GRAFANA / "prometheus.example.yaml").read_text())["scrape_configs"]
    (controller,) = [j for j in plain if j["job_name"] == "mailprobe-controller"]
    for job in (sharded, controller):
        job |= {"scheme": "http", "scrape_interval": INTERVAL, "scrape_timeout": INTERVAL}
        for group in job["static_configs"]:
            group["targets"] = [host]
    sharded["authorization"]["credentials_file"] = str(token_file)
    return {"scrape_configs": [sharded, controller]}


@asynccontextmanager
async def _prometheus(workdir: Path, config: dict[str, Any]) -> AsyncIterator[str]:
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = embedded.free_port()
    log = (workdir / "prometheus.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        PROMETHEUS,
        f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        stdout=log,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with http_client() as client:
            for _ in range(300):
                try:
                    if (await client.get(f"{url}/-/ready")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert proc.returncode is None, (workdir / "prometheus.log").read_text()
                await asyncio.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        await proc.wait()
        log.close()


async def _world(pool: asyncpg.Pool, monitor: str) -> None:
    """An open finding, a raised listing and a resolver not believed, for the world's panels."""
    async with pool.acquire() as conn:
        mid = await conn.fetchval("SELECT id FROM monitors WHERE public_id = $1::uuid", monitor)
        await conn.execute(
            "INSERT INTO posture_findings (monitor_id, code, country, severity, detail,"
            " appeared_at, last_seen_at) VALUES ($1, 'spf_missing', 'DE', 'warning', 'x',"
            " now(), now())",
            mid,
        )
        await conn.execute(
            "INSERT INTO blocklist_listings (monitor_id, zone, name, since, countries, raised_at)"
            " VALUES ($1, 'zz.example.net', '192.0.2.9', now(), '{DE}', now())",
            mid,
        )
        await conn.execute(
            "INSERT INTO oracle_health (oracle, country, state, reason, since)"
            " VALUES ('dns', 'ZZ', 'unhealthy', 'NXDOMAIN for a.root-servers.net', now())"
            " ON CONFLICT (oracle, country) DO UPDATE SET state = 'unhealthy'"
        )


def _panels() -> list[tuple[str, str]]:
    dashboard = json.loads((GRAFANA / "mailprobe.json").read_text())
    return [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p["targets"]]


def _expand(expr: str, name: str) -> str:
    """Grafana's variables as the dashboard uses them: one monitor chosen (its regex
    characters escaped as Grafana escapes them inside a PromQL string), a 1 h range."""
    chosen = re.sub(r"[\\^$*+?.()|\[\]{}]", lambda m: "\\\\" + m.group(0), name)
    return expr.replace("$__range", "1h").replace("$name", chosen)


async def _query(client: httpx.AsyncClient, url: str, expr: str) -> list[dict[str, Any]]:
    r = await client.get(f"{url}/api/v1/query", params={"query": expr})
    assert r.status_code == 200, (expr, r.text)
    body = r.json()
    assert body["status"] == "success", (expr, body)
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


async def test_prometheus_scrapes_the_shards_and_answers_the_dashboard(
    client: Browserish,
    pool: asyncpg.Pool,
    http: httpx.AsyncClient,
    job_ids: JobIds,
    api_url: str,
    tmp_path: Path,
) -> None:
    org = await make_tenant(pool)
    name = "Relay (prom) 1"
    mine = await create(http, org, "smtp", name=name)
    others = [await create(http, org, "smtp", name=f"other {n}") for n in range(5)]
    # up from one country, down from the other: degraded, every panel has something to show
    await store_result(
        pool, job_ids, mine, "DE", "up", response_ms=120.0, cert_not_after="2031-05-04T03:02:01Z"
    )
    await store_result(pool, job_ids, mine, "US", "down", error_kind="refused")
    for other in others:
        await store_result(pool, job_ids, other, "DE", "down", error_kind="refused")
    await _world(pool, mine["publicId"])
    token_file = tmp_path / "scrape-token"
    token_file.write_text(await scrape_token(client, org.tokens["admin"]))
    monitor = mine["publicId"]

    config = _config(api_url, token_file)
    shards = int(config["scrape_configs"][0]["params"]["shards"][0])
    async with _prometheus(tmp_path, config) as prom, http_client(timeout=10) as api:
        # every shard's target up, each monitor in exactly one of them
        for _ in range(300):
            targets = (await api.get(f"{prom}/api/v1/targets")).json()["data"]
            health = [t["health"] for t in targets["activeTargets"]]
            seen = await _query(api, prom, "count(mailprobe_monitor_info)")
            if health.count("up") == shards + 1 and seen and seen[0]["value"][1] == "6":
                break
            await asyncio.sleep(0.2)
        else:
            raise AssertionError((targets, (tmp_path / "prometheus.log").read_text()))
        info = await _query(api, prom, f'mailprobe_monitor_info{{monitor="{monitor}"}}')
        assert len(info) == 1 and info[0]["metric"]["name"] == name
        assert info[0]["metric"]["shard"] in {str(k) for k in range(shards)}
        await asyncio.sleep(INTERVAL_S)  # a second sample for the ranges

        answers = {}
        for title, expr in _panels():
            answers[(title, expr)] = await _query(api, prom, _expand(expr, name))
        per_monitor = {
            key: got
            for key, got in answers.items()
            if re.search(r"mailprobe_(monitor|check|tls)_", key[1])
        }
        assert len(per_monitor) >= 10, list(per_monitor)
        for (title, expr), got in per_monitor.items():
            assert got, (title, expr)
            labelled = [s for s in got if {"name", "monitor"} & s["metric"].keys()]
            assert all(
                s["metric"].get("name", name) == name
                and s["metric"].get("monitor", monitor) == monitor
                for s in labelled
            ), (title, got)

        def value(title: str) -> list[float]:
            return [
                float(s["value"][1])
                for (t, _), got in per_monitor.items()
                if t.startswith(title)
                for s in got
            ]

        assert value("Uptime") == [0.5]
        assert value("Monitors degraded") == [1.0]
        assert value("Monitors up") == value("Monitors down") == [0.0]  # others not chosen
        assert sorted(value("Checks up per country")) == [0.0, 1.0]
        assert value("Response time") == [0.12]
        assert value("Phases")  # the example asks for them
        days = value("Certificate days left")
        assert len(days) == 1 and days[0] > 365

        def series(title: str) -> list[dict[str, str]]:
            return [
                s["metric"] for (t, _), got in answers.items() if t.startswith(title) for s in got
            ]

        # The world's panels (issue 65): findings, oracles, listings (the reports' evaluate).
        assert {"code": "spf_missing", "severity": "warning"} in series("Open findings")
        assert {"code": "blocklisted", "severity": "warning"} in series("Open findings")
        assert {"oracle": "dns", "country": "ZZ", "state": "unhealthy"} in series("Oracles")
        assert {"list": "zz.example.net", "severity": "warning"} in series("Blocklist listings")
        names = await _query(api, prom, "group by (name) (mailprobe_monitor_info)")
        assert {s["metric"]["name"] for s in names} == {name} | {f"other {n}" for n in range(5)}
