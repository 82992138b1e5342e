"""A blocklist that differs between countries, end to end on real parts (issue 58).

Two real `python -m agent` processes, DE's and US's, each in a network namespace of its own
(testkit/netns.py) whose resolver (`/etc/netns/<name>/resolv.conf`, which the agent's blocklist
lookups use when no `AGENT_BLOCKLIST_RESOLVER` is set) is a DNS peer on that namespace's host
side, unreachable from the other namespace (nftables drops it). Both peers serve the same list
`rbl.example.net`, healthy in both (RFC 5782 test entries); DE's lists the monitored server's
address, US's does not. A third namespace's host side holds the NATS server and the monitored
SMTP server. The controller (scheduler, ingester, the blocklist watch, the API) runs here, on
PostgreSQL, as `serve` runs it: no answer is written by the test.

The NATS server and the database are this module's own.
"""

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import nats
import pytest

from controller.db.pool import create_pool
from controller.fleet.live import LiveAgents
from controller.ingest.ingester import Ingester
from controller.jobs.rules import JobIds
from controller.runtime.pipeline import PUBLISH_ASYNC_MAX_PENDING, Pipeline
from controller.secrets.box import SecretBox
from controller.secrets.seal_keys import CountryKeys
from controller.settings import ControllerSettings
from controller.sidechecks.blocklists.rules import parse_lists
from controller.sidechecks.blocklists.watch import BlocklistWatch
from controller.web.app import create_app
from shared import embedded
from shared.clock import WALL
from shared.loop import run_every
from shared.streams import ensure_streams
from testkit.netns import Netns, missing, namespace
from testkit.peers.dnsbl import DnsblPeer, healthy, label
from testkit.peers.smtp import SmtpPeer
from testkit.scheduling import Answered, wired_scheduler
from testkit.sealing import KeyRing
from testkit.serving import http_client, serve_app
from tests.api.helpers import SMTP
from tests.conftest import PROCESS_START_S, Tenant, make_tenant, scratch_database
from tests.e2e.helpers import make_due_now, smtp_monitor

pytestmark = [
    pytest.mark.skipif(missing() is not None, reason=str(missing())),
    pytest.mark.timeout(240),
    pytest.mark.slow,
]

ROOT = Path(__file__).parents[2]
DE, US = "DE", "US"
HOST = "mx.lists.test"  # the monitored server by name: each country's resolver answers it
ZONE = "rbl.example.net"
LISTS = f"{ZONE}:ip:major"
WITHIN = 20.0
WATCH_S = 0.2  # serve moves the listings every minute; this test cannot wait that long
RECENT_S = 3.0  # the agents' memory of their answers (AGENT_BLOCKLIST_RECENT_SECONDS, 60 s)


@dataclass
class Country:
    code: str
    ns: Netns
    dns: DnsblPeer


async def until(check: Callable[[], Awaitable[Any]], what: str, within: float = WITHIN) -> Any:
    """Poll `check` until it returns something true; that."""
    deadline = time.monotonic() + within
    while not (found := await check()):
        assert time.monotonic() < deadline, f"{what} not within {within} s"
        await asyncio.sleep(0.2)
    return found


def agent_env(nats_url: str, agent_id: str, country: str) -> dict[str, str]:
    """No resolver setting: the agent resolves (and asks the lists) through its namespace's
    resolv.conf."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT_", "NATS_", "LOG_"))}
    return {
        **env,
        "LOG_FORMAT": "json",
        "AGENT_METRICS_PORT": "0",
        "NATS_URL": nats_url,
        "AGENT_COUNTRY": country,
        "AGENT_ID": agent_id,
        "AGENT_ALLOW_PRIVATE_TARGETS": "true",
        "AGENT_BLOCKLIST_RECENT_SECONDS": str(RECENT_S),
    }


async def unreachable(ns: Netns, resolver: str) -> str:
    """What a lookup from inside `ns` through `resolver` ends in."""
    code = (
        "import dns.resolver\n"
        "r = dns.resolver.Resolver(configure=False)\n"
        f"r.nameservers = [{resolver!r}]\n"
        "try:\n"
        f"    r.resolve({HOST!r}, 'A', lifetime=2)\n"
        "    print('answered')\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__)\n"
    )
    _, out = await ns.run(sys.executable, "-c", code, env=dict(os.environ), within=15)
    return out.strip()


async def notices(pool: asyncpg.Pool, public_id: str) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return await conn.fetch(
            "SELECT o.kind, o.subject, o.body_text FROM notification_outbox o"
            " JOIN monitors m ON m.id = o.monitor_id WHERE m.public_id = $1::uuid ORDER BY o.id",
            public_id,
        )


@pytest.fixture
async def lists_on(settings: ControllerSettings) -> ControllerSettings:
    return settings.replace(
        blocklists=LISTS, blocklist_interval_seconds=3600, blocklist_hold_seconds=0
    )


async def test_a_list_that_differs_between_countries_is_a_finding_from_the_country_seeing_it(
    database_url: str, lists_on: ControllerSettings, job_ids: JobIds, tmp_root: Path
) -> None:
    """Pins: each agent asks the list through its own country's resolver only; the
    `blocklisted` finding (raised at once: no hold here) names DE alone, and `GET
    …/blocklists` shows the server's address listed from DE and not listed from US, the list
    healthy in both. Then US's resolver lists it too: the next round past the agents' memory
    of their answers (`RECENT_S`) moves the finding to DE and US, one notice ("now seen from DE
    and US"), and further watch passes tell nothing."""
    lists = parse_lists(LISTS)
    async with AsyncExitStack() as stack:
        site = await stack.enter_async_context(namespace())
        ip = site.host_ip
        proc, nats_url = await asyncio.to_thread(
            embedded.start_nats, tmp_root / "nats-blocklists", host=ip
        )
        stack.callback(embedded.stop, proc)
        await stack.enter_async_context(SmtpPeer().at(ip, 25))
        listed = healthy(**{label(ip): ["127.0.0.2"]})
        countries: dict[str, Country] = {}
        for cc, zone in ((DE, listed), (US, healthy())):
            ns = await stack.enter_async_context(namespace())
            peer = DnsblPeer({ZONE: zone}, records={(HOST, "A"): [ip]})
            await stack.enter_async_context(peer.at(ns.host_ip, 53))
            ns.use_resolver(ns.host_ip)
            countries[cc] = Country(cc, ns, peer)
        de, us = countries[DE], countries[US]
        # Each country's resolver is its own: the other's is unreachable from it.
        de.ns.filter_egress(drop_to=[us.ns.host_ip])
        us.ns.filter_egress(drop_to=[de.ns.host_ip])
        assert await unreachable(de.ns, us.ns.host_ip) != "answered"
        assert await unreachable(us.ns, de.ns.host_ip) != "answered"

        keys = KeyRing(tmp_root / "blocklists-seal-keys", (DE, US))
        url = await stack.enter_async_context(
            scratch_database(database_url, "mailprobe_blocklists")
        )
        pool = await create_pool(url, 10)
        stack.push_async_callback(pool.close)
        nc = await nats.connect(nats_url)
        stack.push_async_callback(nc.drain)
        js = nc.jetstream(publish_async_max_pending=PUBLISH_ASYNC_MAX_PENDING)
        await ensure_streams(js)
        live = LiveAgents(nc, warmup_s=0, wall=WALL.now)
        await live.start()
        stack.push_async_callback(live.stop)
        scheduler = wired_scheduler(
            pool,
            js,
            live,
            SecretBox(lists_on.secrets.secrets_key or ""),
            CountryKeys(str(keys.directory)),
            default_countries=2,
            blocklists=Answered(lists, lists_on.reputation.blocklist_interval_seconds),
        )
        ingester = Ingester(pool, nc, js, job_ids, durable="ingest-blocklists", clock=WALL)
        stack.push_async_callback(ingester.close)
        watch = BlocklistWatch(
            pool,
            lists,
            interval_s=lists_on.reputation.blocklist_interval_seconds,
            hold_s=lists_on.reputation.blocklist_hold_seconds,
            clock=WALL,
        )
        stop = asyncio.Event()
        workers = [
            scheduler.run(stop),
            ingester.run(stop),
            run_every(WATCH_S, watch.run_once, name="blocklist findings", stop=stop),
        ]
        tasks = [asyncio.create_task(w) for w in workers]

        async def stopped() -> None:
            stop.set()
            await asyncio.gather(*tasks)

        stack.push_async_callback(stopped)
        pipeline = Pipeline(nc, js, live, scheduler, ingester, clock=WALL)
        base = await stack.enter_async_context(serve_app(create_app(lists_on, pool, pipeline)))
        api = await stack.enter_async_context(http_client(base_url=base, timeout=10))
        org = await make_tenant(pool)

        for c in countries.values():
            agent_id = f"{c.code}-lists-{os.getpid()}"
            log = tmp_root / f"{agent_id}.log"
            with log.open("wb") as out:
                await c.ns.spawn(
                    sys.executable,
                    "-m",
                    "agent",
                    env=agent_env(nats_url, agent_id, c.code),
                    cwd=ROOT,
                    stdout=out,
                    stderr=asyncio.subprocess.STDOUT,
                )
        await until(lambda: both_live(api, org), "both agents live", within=PROCESS_START_S)

        created = await smtp_monitor(
            api,
            org,
            25,
            hostname=HOST,
            allowedCheckCountryCodes=[DE, US],
            notificationEmail="oncall@customer.test",
        )
        pid = created["publicId"]  # its first round is due at once, and asks the list

        async def raised() -> list[asyncpg.Record]:
            return await notices(pool, pid)

        (notice,) = await until(raised, "the blocklisted notice")
        first_answered = time.monotonic()
        assert notice["kind"] == "finding"
        assert notice["subject"] == "[mailprobe] Blocklisted on rbl.example.net: e2e"
        assert "Seen from: DE\n" in notice["body_text"], notice["body_text"]
        r = await api.get(f"{SMTP}/{pid}/blocklists", headers=org.auth("readonly"))
        assert r.status_code == 200, r.text
        body = r.json()
        (name,) = body["names"]
        assert (name["name"], name["sources"], name["countries"]) == (ip, ["host"], [DE, US])
        (on,) = name["lists"]
        cells = {c["country"]: c for c in on["countries"]}
        assert (cells[DE]["state"], cells[US]["state"]) == ("listed", "not_listed")
        (listing,) = body["listings"]
        assert (listing["name"], listing["countries"], listing["clearedAt"]) == (ip, [DE], None)
        assert listing["raisedAt"] is not None
        r = await api.get("/api/blocklists", headers=org.auth("readonly"))
        assert r.status_code == 200, r.text
        (health,) = r.json()["lists"]
        assert {(c["country"], c["state"]) for c in health["countries"]} == {
            (DE, "healthy"),
            (US, "healthy"),
        }
        # Each country asked the list through its own resolver alone.
        for c in (de, us):
            assert (f"{label(ip)}.{ZONE}", "A") in c.dns.asked

        us.dns.zones[ZONE] = listed  # US's view of the list changes: it lists the server too
        # Nothing is fresh to this test's scheduler (its `Answered` holds no answer), but an
        # agent asks no list again about a name it answered within `RECENT_S`.
        await asyncio.sleep(max(0.0, RECENT_S - (time.monotonic() - first_answered)))
        await make_due_now(pool, pid)

        async def moved() -> list[asyncpg.Record]:
            found = await notices(pool, pid)
            return found[1:]

        (notice,) = await until(moved, "the notice of the listing seen from US too")
        assert notice["subject"] == "[mailprobe] On rbl.example.net, now seen from DE and US: e2e"
        assert "(newly from US)" in notice["body_text"]
        await asyncio.sleep(10 * WATCH_S)  # passes over the same countries tell nothing
        assert len(await notices(pool, pid)) == 2
        r = await api.get(f"{SMTP}/{pid}/blocklists", headers=org.auth("readonly"))
        (listing,) = r.json()["listings"]
        assert listing["countries"] == [DE, US]
        await asyncio.gather(*(c.ns.stop_processes() for c in countries.values()))


async def both_live(api: httpx.AsyncClient, org: Tenant) -> bool:
    r = await api.get("/api/agents", headers=org.auth("operator"))
    assert r.status_code == 200, r.text
    return {c["country"] for c in r.json()["countries"] if c["agents"]} >= {DE, US}
