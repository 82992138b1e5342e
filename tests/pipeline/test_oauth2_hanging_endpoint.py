"""A token endpoint that hangs holds nothing up: the scheduler fetches OAuth2 access tokens in
the background, with no transaction open, bounded per organization. While one organization's
loopback endpoint takes no answer, another organization's monitors (a password-less one and one
with OAuth2 on its own endpoint) get their rounds at once, the hanging organization's monitors
hold no row lock and no session sits `idle in transaction`; when the endpoint then fails, each
of its rounds is recorded `missed` / `oauth2_token` with one notice to the owners, never a
check of the server. The fetch slots are fair: as many organizations as there are slots, all
hanging, hold up a later organization's round by one fetch timeout at most, and none holds more
than its share once the slots went round."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import trustme

from controller.db.pool import create_pool
from controller.oauth2.fetcher import TokenFetcher
from controller.oauth2.tokens import ORG_CONCURRENCY, TokenService
from controller.scheduling import rules as schedule
from controller.secrets.box import SecretBox
from controller.settings import ControllerSettings
from controller.web.app import create_app
from shared.clock import WALL
from shared.messages import FEATURE_OAUTH2
from testkit.oauth2.issuer import TokenIssuer
from testkit.oauth2.token_endpoint import TokenEndpoint, ca_context, serve
from testkit.serving import http_client, serve_app
from tests.agent.helpers import until
from tests.conftest import Tenant, make_tenant
from tests.pipeline.conftest import Countries, SchedulerWith, WiredPipeline

USER = "probe@example.com"
# A pass that waited for a hanging endpoint would wait until the test ends; one that does not
# takes milliseconds, seconds on a loaded machine.
PASS_S = 3.0
CLIENT, SECRET = "mailprobe-app", "hang-secret-4711"


def _grant(url: str) -> dict[str, Any]:
    return {
        "grant": "client_credentials",
        "provider": "custom",
        "tokenUrl": url,
        "clientId": CLIENT,
        "scopes": ["mail"],
        "clientSecret": SECRET,
    }


@pytest.fixture(scope="module")
async def oauth_api_url(
    settings: ControllerSettings, pipe_pool: asyncpg.Pool, pipeline: WiredPipeline
) -> AsyncIterator[str]:
    """The API with token endpoints on loopback allowed, served once for the module."""
    allowing = settings.replace(oauth2_token_hosts="127.0.0.1")
    async with serve_app(create_app(allowing, pipe_pool, pipeline)) as url:
        yield url


@pytest.fixture
async def oauth_api(oauth_api_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(base_url=oauth_api_url, timeout=10) as client:
        yield client


async def _monitor(
    api: httpx.AsyncClient, org: Tenant, cc: str, grant: dict[str, Any] | None
) -> tuple[int, str]:
    """An IMAP monitor of `org` checked from `cc`: (id, public id)."""
    login = {"oauth2": grant} if grant is not None else {"password": "plain-password"}
    r = await api.post(
        "/api/imap-pop-monitors",
        headers=org.auth(),
        json={
            "customerId": org.customer_id,
            "name": "mailbox",
            "hostname": "mail.example.com",
            "allowedCheckCountryCodes": [cc],
            "imapPopConfig": {"protocol": "imap", "tls": True, "user": USER, **login},
        },
    )
    assert r.status_code == 201, r.text
    return r.json()["id"], r.json()["publicId"]


async def _stuck_in_transaction(pool: asyncpg.Pool, seconds: float = 1.0) -> list[str]:
    """The statements of sessions that sat idle in one transaction for `seconds` without a
    statement: one wrapping a fetch that hangs stays so; a short transaction caught between
    its last statement and its COMMIT on a loaded machine does not."""

    async def idle() -> dict[tuple[int, object], str]:
        async with pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT pid, state_change, coalesce(query, '') AS q FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND state LIKE 'idle in transaction%'"
            )
        return {(r["pid"], r["state_change"]): r["q"] for r in rows}

    first = await idle()
    await asyncio.sleep(seconds)
    again = await idle()
    return [q for key, q in first.items() if key in again]


async def test_a_hanging_token_endpoint_delays_no_other_organization(
    oauth_api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    settings: ControllerSettings,
    tmp_path: Path,
    scheduler_with: SchedulerWith,
) -> None:
    (cc,) = countries.take(1)
    await countries.live(cc, features=[FEATURE_OAUTH2])
    box = SecretBox(settings.secrets.secrets_key or "")
    other = await make_tenant(pipe_pool)
    ca = trustme.CA()
    issuer = TokenIssuer(tmp_path)
    held = asyncio.Event()
    hanging = TokenEndpoint(issuer, USER, clients={CLIENT: SECRET}, held=held)
    working = TokenEndpoint(issuer, USER, clients={CLIENT: SECRET})
    async with serve(hanging, ca), serve(working, ca):
        try:
            scheduler = scheduler_with(
                tokens=TokenService(
                    pipe_pool,
                    box,
                    TokenFetcher(verify=ca_context(ca), allow_private=True),
                    clock=WALL,
                ),
            )
            # More hanging grants than one organization may fetch at once.
            made = [
                await _monitor(oauth_api, org, cc, _grant(hanging.url))
                for _ in range(ORG_CONCURRENCY + 2)
            ]
            made += [
                await _monitor(oauth_api, other, cc, None),
                await _monitor(oauth_api, other, cc, _grant(working.url)),
            ]
            public = dict(made)
            stuck, ours = [m for m, _ in made[:-2]], {m for m, _ in made[-2:]}
            async with pipe_pool.acquire() as conn:
                await conn.execute(
                    "UPDATE monitors SET next_due_at = now() WHERE id = ANY($1::bigint[])",
                    list(public),
                )

            # The other organization's rounds go while the hanging fetches still hang: waiting
            # behind them would take their whole timeout (the fetcher's 10 s), after which the
            # hanging organization's monitors would be recorded, not due and unrecorded (below).
            sent: set[str] = set()
            while {public[m] for m in ours} - sent:
                run = asyncio.create_task(scheduler.run_due())
                # The hanging fetches are under way meanwhile, and hang until the test ends.
                assert await _stuck_in_transaction(pipe_pool) == []
                done, _ = await asyncio.wait([run], timeout=PASS_S)
                assert done, "a scheduler pass waited for a token endpoint"
                await run
                sent = {job.monitor_id for job, _ in await countries.jobs(cc)}
            assert len(working.calls) == 1
            assert not {public[m] for m in stuck} & sent
            assert hanging.waiting == ORG_CONCURRENCY  # the organization's bound

            async with pipe_pool.acquire() as conn, conn.transaction():
                # No row lock is held on the hanging organization's monitors, and they are still
                # due, unrecorded.
                locked = await conn.fetch(
                    "SELECT id, next_due_at <= now() AS due FROM monitors"
                    " WHERE id = ANY($1::bigint[]) FOR UPDATE NOWAIT",
                    stuck,
                )
                assert len(locked) == len(stuck) and all(r["due"] for r in locked)
                assert not await conn.fetchval(
                    "SELECT count(*) FROM check_results WHERE monitor_public_id = ANY($1::uuid[])",
                    [public[m] for m in stuck],
                )

            hanging.down = True  # it answers at last: 503
            held.set()
            await scheduler.planner.settled()
            await scheduler.run_due()
            await scheduler.planner.settled()
            await scheduler.run_due()
        finally:
            held.set()  # the server stops only once its requests are answered

    async with pipe_pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT monitor_public_id::text AS m, scheduled_at, status, error_kind"
            " FROM check_results WHERE monitor_public_id = ANY($1::uuid[])",
            [public[m] for m in stuck],
        )
        intervals = {
            r["id"]: r["check_interval"]
            for r in await conn.fetch(
                "SELECT id, check_interval FROM monitors WHERE id = ANY($1::bigint[])", stuck
            )
        }
        notices = await conn.fetch(
            "SELECT monitor_id, count(*) AS n FROM notification_outbox"
            " WHERE kind = 'oauth2_token' AND monitor_id = ANY($1::bigint[]) GROUP BY 1",
            stuck,
        )
    # Each waiting monitor's round is recorded once, as `oauth2_token`. Its due time was set to
    # "now", off its grid: when a grid time passed while it waited, the off-grid round is
    # recorded `overdue` and the grid's round `oauth2_token`, as any late round would be; a
    # grid time that falls due after the off-grid round was recorded and before the test's
    # last pass is a round of its own, `oauth2_token` too (no token came).
    assert {(r["status"], r["error_kind"]) for r in rows} <= {
        ("missed", "oauth2_token"),
        ("missed", "overdue"),
    }
    for m in stuck:
        mine = [r for r in rows if r["m"] == public[m]]
        phase = schedule.phase_ms(public[m], intervals[m])
        off_grid = [
            r
            for r in mine
            if r["scheduled_at"] != schedule.last_due(phase, intervals[m], r["scheduled_at"])
        ]
        assert len(off_grid) == 1, [dict(r) for r in rows]  # the round set to "now"
        assert len({r["scheduled_at"] for r in mine}) == len(mine), [dict(r) for r in rows]
        assert [r for r in mine if r not in off_grid and r["error_kind"] != "oauth2_token"] == []
        assert any(r["error_kind"] == "oauth2_token" for r in mine), [dict(r) for r in rows]
    assert {r["monitor_id"]: r["n"] for r in notices} == dict.fromkeys(stuck, 1)


async def test_organizations_whose_endpoints_hang_hold_no_more_than_their_share(
    oauth_api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipe_database_url: str,
    pipeline: WiredPipeline,
    countries: Countries,
    settings: ControllerSettings,
    tmp_path: Path,
    scheduler_with: SchedulerWith,
) -> None:
    """As many organizations as the replica has fetch slots, each with more monitors than it may
    fetch for at once, all hanging on their endpoints, then one organization whose endpoint
    answers: its round goes out within one fetch timeout (the first slots that free are its
    turn), not once the hanging fetches ahead of it have each timed out; and no hanging
    organization holds more than a fair share of the slots."""
    (cc,) = countries.take(1)
    await countries.live(cc, features=[FEATURE_OAUTH2])
    box = SecretBox(settings.secrets.secrets_key or "")
    ca = trustme.CA()
    issuer = TokenIssuer(tmp_path)
    held = asyncio.Event()
    fetches, timeout_s = 8, 4.0
    attackers = [await make_tenant(pipe_pool) for _ in range(fetches)]
    clients = {f"app-{n}": SECRET for n in range(len(attackers))}
    hanging = TokenEndpoint(issuer, USER, clients=clients, held=held)
    working = TokenEndpoint(issuer, USER, clients={CLIENT: SECRET})
    tokens_pool = await create_pool(pipe_database_url, fetches + 2)
    try:
        async with serve(hanging, ca), serve(working, ca):
            try:
                service = TokenService(
                    tokens_pool,
                    box,
                    TokenFetcher(verify=ca_context(ca), allow_private=True, timeout_s=timeout_s),
                    fetches=fetches,
                    clock=WALL,
                )
                scheduler = scheduler_with(tokens=service)
                stuck = [
                    (await _monitor(oauth_api, tenant, cc, grant))[0]
                    for n, tenant in enumerate(attackers)
                    for grant in [_grant(hanging.url) | {"clientId": f"app-{n}"}] * 3
                ]
                victim, victim_public = await _monitor(oauth_api, org, cc, _grant(working.url))
                async with pipe_pool.acquire() as conn:
                    await conn.execute(
                        "UPDATE monitors SET next_due_at = now() WHERE id = ANY($1::bigint[])",
                        stuck,
                    )
                    await conn.execute(
                        "UPDATE monitors SET next_due_at = now() + interval '1 day' WHERE id = $1",
                        victim,
                    )
                await scheduler.run_due()
                await until(
                    lambda: sum(service.slots.holding().values()) == hanging.waiting == fetches,
                    within=10,
                )
                # Every slot hangs, and the other fetches wait; within the organization's cap.
                # (on a loaded host the first fetches may have timed out by now: not all wait)
                assert 0 < sum(service.slots.waiting().values()) <= len(stuck) - fetches
                assert max(hanging.waiting_by_client.values()) == ORG_CONCURRENCY

                async with pipe_pool.acquire() as conn:
                    await conn.execute(
                        "UPDATE monitors SET next_due_at = now() WHERE id = $1", victim
                    )
                # Counted in hanging fetches that timed out from the moment its fetch queued:
                # its turn comes as the slots held then free (each at its timeout; one more,
                # as the organizations freed first may take theirs back first), not after
                # every fetch queued ahead of it.
                queued_ahead = sum(service.slots.waiting().values())
                at_its_queueing: list[int] = []
                at_its_fetch: list[int] = []
                working.on_answer = lambda: at_its_fetch.append(hanging.gone)

                async def its_queueing() -> None:
                    while not at_its_queueing:
                        slots = service.slots
                        if org.org_id in slots.waiting() or org.org_id in slots.holding():
                            at_its_queueing.append(hanging.gone)
                        elif at_its_fetch:  # a slot was free: it never waited
                            at_its_queueing.append(at_its_fetch[0])
                        await asyncio.sleep(0.005)

                watching = asyncio.create_task(its_queueing())
                sent: set[str] = set()
                most = 0
                while victim_public not in sent:
                    await scheduler.run_due()
                    most = max(most, *hanging.waiting_by_client.values())
                    sent = {job.monitor_id for job, _ in await countries.jobs(cc)}
                    await asyncio.sleep(0.2)
                assert len(working.calls) == 1
                await watching
                timed_out = at_its_fetch[0] - at_its_queueing[0]
                print(
                    f"its fetch came after {timed_out} hanging fetches timed out,"
                    f" {queued_ahead} queued ahead of it"
                )
                assert timed_out <= fetches + 1, (at_its_queueing, at_its_fetch, queued_ahead)
                # Once every slot went round once: the first 3 organizations' fetches timed out,
                # the 8 slots went to the 6 others still fetching and to the one that answers:
                # one each, one more for the first in turn.
                await until(lambda: hanging.waiting == fetches, within=timeout_s)
                assert max(hanging.waiting_by_client.values()) <= 2, hanging.waiting_by_client
                assert most <= ORG_CONCURRENCY
            finally:
                hanging.down = True
                held.set()  # the server stops only once its requests are answered
                await service.close()
    finally:
        await tokens_pool.close()
