"""The pipeline under a NATS fault: a nats-server of its own, killed with SIGKILL and started
again on the same port and store while the ingester runs (alone, or with the scheduler, an
agent and the alerter around it), as in the fault campaign (testkit.campaigns.soak)."""

import asyncio
import contextlib
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import nats
import pytest
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from structlog.testing import capture_logs

from agent.worker import Worker
from controller.alerting.rules import closes_at
from controller.db.pool import connect, create_pool
from controller.ingest.ingester import LANES, Ingester
from controller.jobs.rules import JobIds
from controller.notify.links import NO_LINKS
from controller.runtime.pipeline import build_alerter, connect_nats, open_pipeline
from controller.scheduling import rules as schedule
from controller.secrets.box import SecretBox
from controller.settings import ControllerSettings
from shared import embedded
from shared.clock import WALL
from shared.heartbeats import WARMUP_S
from shared.streams import ensure_streams
from shared.subjects import RESULTS_STREAM, agent_inbox_prefix
from shared.timefmt import utcnow
from testkit.campaigns.soak import report
from testkit.campaigns.soak_figures import (
    Figures,
    Window,
    alerts,
    figures,
    grid,
    published_results,
    stored_rows,
)
from testkit.common import seed_monitors
from testkit.peers.smtp import SmtpPeer
from tests.api.helpers import create
from tests.conftest import Tenant, scratch_database
from tests.pipeline.conftest import Countries
from tests.pipeline.test_ingest import publish, result

pytestmark = pytest.mark.breadth


class Server:
    """A nats-server on a fixed port and store directory that can be killed and restarted."""

    def __init__(self, store: Path) -> None:
        self.store, self.port = store, embedded.free_port()
        self.proc, self.url = embedded.start_nats(store, self.port)

    def kill(self) -> None:
        self.proc.kill()  # SIGKILL: no flush, no goodbye to the clients
        self.proc.wait()

    def restart(self) -> None:
        self.proc, _ = embedded.start_nats(self.store, self.port)


RETRYING = "fetching results failed; retrying"


async def _lanes_pulling(js: JetStreamContext, durable: str) -> bool:
    """Whether each of the ingester's lanes has a pull request waiting at the server."""
    with contextlib.suppress(NatsError):
        info = await js.consumer_info(RESULTS_STREAM, durable)
        return (info.num_waiting or 0) >= LANES
    return False


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    s = Server(tmp_path / "nats")
    yield s
    embedded.stop(s.proc)


async def stored_at(pool: asyncpg.Pool, job_ids: list[str]) -> dict[str, float]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT job_id, extract(epoch FROM stored_at) AS at FROM check_results"
            " WHERE job_id = ANY($1::text[])",
            job_ids,
        )
    return {r["job_id"]: float(r["at"]) for r in rows}


async def until_stored(pool: asyncpg.Pool, job_ids: list[str], within_s: float) -> dict[str, float]:
    deadline = time.monotonic() + within_s
    while len(found := await stored_at(pool, job_ids)) < len(job_ids):
        assert time.monotonic() < deadline, f"{len(job_ids) - len(found)} results not stored"
        await asyncio.sleep(0.05)
    return found


async def test_ingest_stays_prompt_after_a_nats_kill_9_and_no_lane_dies(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    countries: Countries,
    job_ids: JobIds,
    server: Server,
) -> None:
    """Killed with SIGKILL under a running ingester, until its connection has seen it go: once
    the server is back every lane pulls again (none died), results published after the
    restart are each stored, the consumer has no more pull requests waiting than the
    ingester's lanes (none left over from the outage), and no lane failed for any other
    reason than the server being gone. How fast they are stored is bench/'s (`make bench
    ingest`); the median is printed."""
    (cc,) = countries.take()
    monitor = await create(api, org)
    nc: NATS = await connect_nats(server.url)
    js = nc.jetstream()
    await ensure_streams(js)
    ingester = Ingester(
        pipe_pool, nc, js, job_ids, durable=f"ingest-kill-{uuid.uuid4().hex[:6]}", clock=WALL
    )
    stop = asyncio.Event()
    with capture_logs() as logs:
        run = asyncio.create_task(ingester.run(stop))
        try:
            before = [result(job_ids, monitor, cc, at=utcnow()) for _ in range(1)]
            for res in before:
                await publish(js, res)
            await until_stored(pipe_pool, [r.job_id for r in before], 10)

            server.kill()
            async with asyncio.timeout(20):  # the ingester's connection has seen it go
                while nc.is_connected:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            server.restart()
            async with asyncio.timeout(20):  # JetStream back, every lane pulling again
                while not (nc.is_connected and await _lanes_pulling(js, ingester.durable)):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)

            delays = []
            for i in range(100):
                res = result(job_ids, monitor, cc, at=utcnow())
                sent = time.time()
                await publish(js, res)
                (at,) = (await until_stored(pipe_pool, [res.job_id], 10)).values()
                delays.append(at - sent)
                if i == 50:
                    info = await js.consumer_info(RESULTS_STREAM, ingester.durable)
                    assert (info.num_waiting or 0) <= LANES
            print(f"stored after the restart: median {statistics.median(delays):.3f} s")
        finally:
            stop.set()
            await asyncio.wait_for(run, 10)
            await ingester.close()
            await nc.close()
    errors = [e for e in logs if e["event"] == RETRYING]
    assert not [e for e in errors if "AttributeError" in e.get("error", "")], errors


# The shortest check interval a monitor may have; what the fault campaign runs.
INTERVAL = 10
MONITORS = 5
# Down longer than the agents' TTL less the controller's warm-up: beats from before the kill,
# aged by the outage, would be past the TTL when the rounds held through it go out.
DOWN_S = 4.0
# The agent reconnects this long after NATS is back, after the controller's warm-up, as an
# agent on a busy host does: its beats from before the kill must keep it live meanwhile (the
# outage does not age them). The rounds due in the outage still start before their jobs expire.
AGENT_LATE_S = 3.0
TIMEOUT_S = 2  # a check's; a round closes an interval, its timeout and a grace after it is due
HOME = "DE"  # the only country: NATS and the database are this test's own


@pytest.fixture
async def own_database(database_url: str) -> AsyncIterator[str]:
    """A database of its own: the running scheduler claims every due monitor of its database."""
    async with scratch_database(database_url, "mailprobe_natskill") as url:
        yield url


async def _agent_connection(url: str, agent_id: str) -> NATS:
    """Connected as `python -m agent` connects (reconnecting forever, its country's inboxes),
    but trying again only AGENT_LATE_S after NATS is back (the first try, at the kill, fails)."""
    return await nats.connect(
        servers=[url],
        name=agent_id,
        inbox_prefix=agent_inbox_prefix(HOME),
        max_reconnect_attempts=-1,
        reconnect_time_wait=DOWN_S + AGENT_LATE_S,
    )


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_the_rounds_through_a_nats_kill_9_get_one_row_each_and_no_alert(
    settings: ControllerSettings, own_database: str, server: Server
) -> None:
    """The product's pipeline as `controller serve` builds it (scheduler, ingester, alerter),
    one agent (a Worker on a connection of its own, back AGENT_LATE_S after NATS), MONITORS
    SMTP monitors of a healthy loopback server every INTERVAL s; NATS killed with SIGKILL
    mid-rounds for DOWN_S and started again on its port and store. Judged as the fault
    campaign judges its windows (testkit.campaigns.soak_figures), once the rounds up to an
    interval after the warm-up that follows NATS's return are stored and those touched by the
    outage closed and evaluated: every grid cell has exactly one row (one due while NATS was
    away, or in that warm-up, may have been coalesced into a later round, by design), none
    `down`, no `no_agent` (the agent was there throughout), every result the agent published
    stored as it said, no notification queued nor incident opened, no monitor `down`."""
    async with SmtpPeer() as peer:
        monitors = await seed_monitors(
            own_database,
            MONITORS,
            interval=INTERVAL,
            countries=[HOME],
            hostname="127.0.0.1",
            port=peer.port,
            timeout_seconds=TIMEOUT_S,
        )
        pool = await create_pool(own_database, 10)
        # A recipient each, so that a false alert is queued and counted.
        await pool.execute("UPDATE monitors SET notification_email = 'oncall@example.com'")
        roles = settings.replace(
            controller_roles="scheduler,ingester,alerter",
            database_url=own_database,
            nats_url=server.url,
        )
        agent_id = f"{HOME}-natskill"
        agent_nc = await _agent_connection(server.url, agent_id)
        stop = asyncio.Event()
        try:
            async with open_pipeline(roles, pool, clock=WALL) as pipeline:
                assert pipeline.scheduler is not None and pipeline.ingester is not None
                box = SecretBox(roles.secrets.secrets_key or "")
                alerter = build_alerter(
                    roles,
                    pool,
                    pipeline.js,
                    JobIds.from_box(box, pipeline.seeded),
                    NO_LINKS,
                    clock=WALL.now,
                )
                worker = Worker.of(
                    agent_nc, HOME, agent_id=agent_id, allow_private=True, clock=WALL
                )
                tasks = [
                    asyncio.create_task(pipeline.scheduler.run(stop)),
                    asyncio.create_task(pipeline.ingester.run(stop)),
                    asyncio.create_task(alerter.run(stop)),
                ]
                run = asyncio.create_task(worker.run())
                try:
                    windows = await _nats_killed_mid_rounds(pool, server, monitors)
                    found = await _figures(own_database, server.url, monitors, windows)
                    # The alert state the alerter left, having judged those rounds.
                    down = await pool.fetch(
                        "SELECT m.public_id::text, s.state FROM monitors m"
                        " JOIN monitor_alert_state s ON s.monitor_id = m.id"
                        " WHERE s.state = 'down' OR s.down_since IS NOT NULL"
                    )
                finally:
                    stop.set()
                    worker.stop()
                    await asyncio.gather(*tasks, run)
                    await pipeline.ingester.close()
        finally:
            await agent_nc.drain()
            await pool.close()
    report(found, concurrency=200)  # every figure in the output of a failing run
    for f in found:
        assert f.expected > 0, f.name
        bad = {
            "missing": f.missing,
            "duplicated": f.duplicated,
            "down": f.down,
            "no_agent": f.no_agent,
            "dropped": f.dropped,
            "alerts": f.alerts,
            "incidents": f.incidents,
        }
        assert bad == dict.fromkeys(bad, 0), f.name
    assert [tuple(r) for r in down] == []


async def _nats_killed_mid_rounds(
    pool: asyncpg.Pool, server: Server, monitors: list[str]
) -> list[Window]:
    """Once every monitor's first round and a round of the grid are stored, NATS killed for
    DOWN_S.
    Returns once every round due up to an interval after the warm-up that follows its return
    is stored, or could have been coalesced; and every round due from the kill to the end of
    that warm-up has closed and the alerter has evaluated every monitor due by then (a round
    of them with no result is judged at its close). The two windows: from the first rounds to the
    kill, and from it."""

    async def first_rounds() -> bool:
        return bool(await pool.fetchval("SELECT count(*) FROM check_results") >= len(monitors))

    assert await _until(first_rounds, 30), "every monitor's first round is stored"
    # A monitor's first round goes at once when it is made, off its grid; its grid's rounds
    # follow from the first point more than half an interval after it (`first_grid_round`).
    firsts = await pool.fetch(
        "SELECT monitor_public_id::text AS m, min(scheduled_at) AS at FROM check_results GROUP BY 1"
    )
    start = max(
        schedule.first_grid_round(schedule.phase_ms(r["m"], INTERVAL), INTERVAL, r["at"])
        for r in firsts
    ).timestamp()

    async def grid_rounds() -> bool:
        found = await pool.fetchval("SELECT count(*) FROM check_results")
        return bool(found >= 2 * len(monitors))

    # Mid-rounds: once a round of every monitor's grid is stored, before the next ones are due.
    assert await _until(grid_rounds, 1.5 * INTERVAL + 10), "a round of each grid is stored"
    killed = time.time()
    server.kill()
    await asyncio.sleep(DOWN_S)
    server.restart()
    back = time.time()
    end = back + WARMUP_S + 2.0 + INTERVAL
    windows = [
        Window("no fault", start, start, killed, away=False),
        Window(f"NATS kill -9, {DOWN_S:.0f} s down", killed, back, end, away=True),
    ]
    required = {
        (m, due)
        for m, _, due in grid(monitors, [HOME], INTERVAL, Window("", start, start, end, False))
        if due >= (back + WARMUP_S + 2.0) * 1000 or due < killed * 1000
    }
    touched = grid(monitors, [HOME], INTERVAL, Window("", killed, back, back + WARMUP_S + 2, True))
    last_close = max(
        (
            closes_at(datetime.fromtimestamp(due / 1000, UTC), INTERVAL, TIMEOUT_S)
            for _, _, due in touched
        ),
        default=utcnow(),
    )

    async def settled() -> bool:
        rows = await pool.fetch(
            "SELECT monitor_public_id::text AS m,"
            " (extract(epoch FROM scheduled_at) * 1000)::bigint AS due FROM check_results"
        )
        if not required <= {(r["m"], r["due"]) for r in rows} or utcnow() <= last_close:
            return False
        due = await pool.fetchval("SELECT count(*) FROM alert_queue WHERE due_at <= $1", last_close)
        return bool(due == 0)

    # At the latest 25 s after the last of them is due (the last close comes ~7 s after
    # it): the figures judge what is there then.
    await _until(settled, end - time.time() + 25)
    return windows


async def _until(condition: Callable[[], Awaitable[bool]], within_s: float) -> bool:
    """Whether `condition` came true within `within_s`."""
    deadline = time.monotonic() + within_s
    while not await condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.2)
    return True


async def _figures(
    database_url: str, nats_url: str, monitors: list[str], windows: list[Window]
) -> list[Figures]:
    published = await published_results(nats_url)
    conn = await connect(database_url)
    try:
        rows = await stored_rows(conn, windows[0].start, windows[-1].end)
        found = []
        for w in windows:
            cells = grid(monitors, [HOME], INTERVAL, w)
            f = figures(w, cells, rows, published, lambda _cc, _at: True, [])
            # Every notification queued and incident opened from the first window on.
            f.alerts, f.incidents = await alerts(conn, w.start, time.time())
            found.append(f)
        return found
    finally:
        await conn.close()
