"""The token service: the access token each OAuth2 login of a monitor needs for a round.

A token is cached until shortly before it expires (controller.oauth2.rules), in memory and in
PostgreSQL (`oauth2_tokens`, sealed) so every replica's scheduler shares it; the grant is held
by an advisory lock while its endpoint is asked, so a rotated refresh token is used once and
stored back (sealed) before anyone asks again. Calls are counted against the organization's
hourly budget (OAUTH2_TOKEN_CALLS_PER_HOUR). A grant the endpoint refused or that got no answer
is asked again only after a wait (or at once once it changes), and its organization's owners
get one notice per failure with the endpoint's error.

No database transaction is open while an endpoint is asked: the grant's lock is a session lock
on a connection outside any transaction, and what the answer changes is written in a short
transaction after it. The scheduler never waits for an endpoint either: in its transaction it
takes only tokens that are `ready` (cached, or a failure waiting for its retry); for the others
it `start`s a fetch in the background and claims the monitor again once it is done
(`fetching`). A replica runs at most `fetches` of them at once (OAUTH2_TOKEN_FETCHES), one
organization at most `ORG_CONCURRENCY`, and a slot that frees goes to the waiting organization
holding the fewest (controller.oauth2.slots); each fetch gives its slot back at the latest when
the fetcher's timeout ends it (or another replica's, asking for the same grant). So
organizations whose endpoints hang keep another organization's fetch waiting only until the
next slots free.
"""

import asyncio
from datetime import datetime
from typing import Final

import asyncpg
import structlog

from controller.db.pool import Conn
from controller.monitors import kinds
from controller.monitors.oauth2_grants import Grant, endpoint
from controller.monitors.store import Monitor
from controller.notify import budget_store as budget_db
from controller.notify import recipients
from controller.notify.entry import Notice, Source, notify
from controller.notify.links import NO_LINKS, Links
from controller.notify.texts import render_oauth2_token
from controller.oauth2 import rules
from controller.oauth2 import token_store as store
from controller.oauth2.fetcher import TokenError, TokenFetcher
from controller.oauth2.rules import TokenFailure as TokenFailure
from controller.oauth2.slots import FairSlots
from controller.secrets.box import SealedSecret, SecretBox, SecretBoxError
from shared.clock import Clock
from shared.guards import BrokenInvariant
from shared.secret import Secret

log = structlog.get_logger(__name__)

NOTICE_KIND: Final = "oauth2_token"
ORG_CONCURRENCY: Final = 3  # grants of one organization asked at once by one replica
MEMORY_MAX: Final = 10_000  # tokens one replica keeps in memory (PostgreSQL keeps them all)


class TokenService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        box: SecretBox,
        fetcher: TokenFetcher,
        *,
        calls_per_hour: int = 600,
        fetches: int = 8,
        links: Links = NO_LINKS,
        clock: Clock,
    ) -> None:
        """`fetches`: grants asked at once (each holds a connection of `pool` meanwhile);
        `links`: where the owners' notice points them; `clock`: what tokens' expiry, retries and
        the hour's calls are judged by."""
        self._pool = pool
        self._clock = clock
        self._links = links
        self._box = box
        self._fetcher = fetcher
        self._calls_per_hour = calls_per_hour
        self._key = box.subkeys(rules.GRANT_KEY_PURPOSE)[0]
        self._memory: dict[str, tuple[Secret, datetime]] = {}
        self.slots = FairSlots(fetches, ORG_CONCURRENCY)
        # Background fetches by monitor id, and their outcomes until the scheduler takes them
        # (with the grant keys they were for: an edited grant is not served a stale answer).
        self._fetching: dict[int, asyncio.Task[None]] = {}
        self._fetched: dict[int, tuple[tuple[str, ...], dict[str, Secret] | TokenFailure]] = {}

    def fetching(self) -> list[int]:
        """The monitors whose tokens are being fetched in the background."""
        return list(self._fetching)

    def _keys(self, monitor: Monitor) -> tuple[str, ...]:
        return tuple(
            rules.grant_key(self._key, monitor.id, path, grant)
            for path, grant in monitor.grants.items()
        )

    async def ready(
        self, conn: Conn, monitor: Monitor, needed_until: datetime
    ) -> dict[str, Secret] | TokenFailure | None:
        """The monitor's tokens (or why there are none) when they are known without asking an
        endpoint: a background fetch's outcome, a cached token, a failure waiting for its
        retry; None when an endpoint must be asked (`start`). Reads only, takes no lock."""
        keys = self._keys(monitor)
        done = self._fetched.pop(monitor.id, None)
        if done is not None and done[0] == keys:
            return done[1]
        now = self._clock.now()
        out: dict[str, Secret] = {}
        for (path, _), key in zip(monitor.grants.items(), keys, strict=True):
            cached = self._memory.get(key)
            if cached is not None and rules.usable(cached[1], needed_until):
                out[path] = cached[0]
                continue
            row = await store.get(conn, key)
            if row is None:
                return None
            if row.access_token and row.expires_at and rules.usable(row.expires_at, needed_until):
                try:
                    token = Secret(self._box.open(row.access_token))
                except SecretBoxError:
                    return None  # the fetch says what is wrong
                self._remember(key, token, row.expires_at)
                out[path] = token
            elif row.error and row.retry_at and row.retry_at > now:
                return TokenFailure(path, row.error, row.error_message or "")
            else:
                return None
        return out

    def start(self, monitor: Monitor, needed_until: datetime) -> None:
        """Fetch the monitor's tokens in the background, once at a time per monitor; `ready`
        answers with the outcome."""
        if monitor.id in self._fetching:
            return
        keys = self._keys(monitor)

        async def fetch() -> None:
            try:
                got = await self.tokens(monitor, needed_until)
            except Exception as exc:  # the database, say: the next claim starts it again
                log.error(
                    "OAuth2 token fetch failed", monitor_id=str(monitor.public_id), error=repr(exc)
                )
            else:
                if len(self._fetched) >= MEMORY_MAX:
                    self._fetched.pop(next(iter(self._fetched)))
                self._fetched[monitor.id] = (keys, got)
            finally:
                self._fetching.pop(monitor.id, None)

        self._fetching[monitor.id] = asyncio.create_task(fetch(), name=f"oauth2-{monitor.id}")

    async def settled(self) -> None:
        """Wait for the background fetches started so far."""
        await asyncio.gather(*self._fetching.values(), return_exceptions=True)

    async def close(self) -> None:
        """Stop the background fetches (the next claim starts them again)."""
        tasks = list(self._fetching.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def tokens(
        self, monitor: Monitor, needed_until: datetime
    ) -> dict[str, Secret] | TokenFailure:
        """An access token per grant of the monitor (by the grant's path), each living past
        `needed_until`; the first failure instead. Asks the endpoints as needed and waits for
        them (the scheduler only in the background: `start`)."""
        out: dict[str, Secret] = {}
        for path, grant in monitor.grants.items():
            got = await self._token(monitor, path, grant, needed_until)
            if isinstance(got, TokenFailure):
                return got
            out[path] = got
        return out

    async def _token(
        self, monitor: Monitor, path: str, grant: Grant, needed_until: datetime
    ) -> Secret | TokenFailure:
        key = rules.grant_key(self._key, monitor.id, path, grant)
        cached = self._memory.get(key)
        if cached is not None and rules.usable(cached[1], needed_until):
            return cached[0]
        async with self.slots.slot(monitor.organization_id), self._pool.acquire() as conn:
            try:
                await store.hold(conn, key)
                return await self._locked(conn, monitor, path, grant, key, needed_until)
            finally:
                try:
                    await store.release(conn, key)
                except BaseException:
                    conn.terminate()  # a session lock never outlives this use of the connection
                    raise

    async def _locked(
        self,
        conn: Conn,
        monitor: Monitor,
        path: str,
        grant: Grant,
        key: str,
        needed_until: datetime,
    ) -> Secret | TokenFailure:
        """Holding the grant's lock: the cached token, or one from the endpoint (asked with no
        transaction open), or why there is none."""
        bound = log.bind(monitor_id=str(monitor.public_id), login=path, grant=grant.grant)
        now = self._clock.now()
        try:
            async with conn.transaction():
                row = await store.get(conn, key)
                known = await self._known(conn, monitor, path, grant, key, row, needed_until, now)
            if known is not None:
                return known
            opened = self._opened(grant, row)
            config_user = rules.user(monitor.config, path)
            kind = kinds.of_type(monitor.type)
            protocol = rules.protocol(kind, path, monitor.config, monitor.type)
        except SecretBoxError as exc:
            bound.error("OAuth2 grant secret does not open", error=str(exc))
            return TokenFailure(path, "secret", "a stored secret does not open (SECRETS_KEY)")
        try:
            issued = await self._fetcher.fetch(opened, protocol, config_user, self._clock.now())
        except TokenError as exc:
            failure = TokenFailure(path, exc.error, str(exc))
            bound.warning("no OAuth2 token", error=exc.error, refused=exc.refused)
            async with conn.transaction():
                await self._failed(conn, monitor, grant, key, row, failure, refused=exc.refused)
            return failure
        expires = rules.expires_at(self._clock.now(), issued.expires_in)
        rotated = None
        if issued.refresh_token and issued.refresh_token != opened.refresh_token.reveal():
            rotated = self._box.seal(issued.refresh_token)
        sealed = self._box.seal(issued.access_token)
        await store.issued(conn, key, monitor.id, sealed, expires, rotated, self._clock.now())
        bound.info("OAuth2 token issued", rotated=rotated is not None, expires_at=expires)
        token = Secret(issued.access_token)
        self._remember(key, token, expires)
        if not rules.usable(expires, needed_until):
            return TokenFailure(
                path, "short_lived", "the endpoint's token expires before the check would run"
            )
        return token

    async def _known(
        self,
        conn: Conn,
        monitor: Monitor,
        path: str,
        grant: Grant,
        key: str,
        row: store.Cached | None,
        needed_until: datetime,
        now: datetime,
    ) -> Secret | TokenFailure | None:
        """What the stored row answers without asking the endpoint (a token another replica got
        meanwhile, a failure waiting for its retry, a spent budget); None: ask it (one call of
        the organization's budget taken)."""
        if row is not None and row.access_token and rules.usable(row.expires_at, needed_until):
            token = Secret(self._box.open(row.access_token))
            if row.expires_at is None:
                raise BrokenInvariant("tokens.TokenService._known: row.expires_at is unset")
            self._remember(key, token, row.expires_at)
            return token
        if row is not None and row.error and row.retry_at and row.retry_at > now:
            return TokenFailure(path, row.error, row.error_message or "")
        hour = now.replace(minute=0, second=0, microsecond=0)
        if await store.take_call(conn, monitor.organization_id, hour, self._calls_per_hour):
            return None
        failure = TokenFailure(
            path,
            "budget",
            "the organization's token endpoint calls this hour are spent"
            " (OAUTH2_TOKEN_CALLS_PER_HOUR)",
        )
        await self._failed(conn, monitor, grant, key, row, failure, refused=False)
        return failure

    def _remember(self, key: str, token: Secret, expires: datetime) -> None:
        """Keep a token in memory; past MEMORY_MAX the expired ones go, then the oldest."""
        if len(self._memory) >= MEMORY_MAX:
            now = self._clock.now()
            for old in [k for k, (_, at) in self._memory.items() if at <= now]:
                del self._memory[old]
            while len(self._memory) >= MEMORY_MAX:
                del self._memory[next(iter(self._memory))]
        self._memory[key] = (token, expires)

    def _opened(self, grant: Grant, row: store.Cached | None) -> Grant:
        """The grant with its secrets opened, its refresh token the rotated one if any."""

        def open_(secret: Secret) -> Secret:
            if isinstance(secret, SealedSecret):
                return Secret(self._box.open(secret.reveal()))
            return secret

        refresh = (
            Secret(self._box.open(row.refresh_token))
            if row is not None and row.refresh_token
            else open_(grant.refresh_token)
        )
        return Grant(
            mechanism=grant.mechanism,
            grant=grant.grant,
            provider=grant.provider,
            tenant=grant.tenant,
            token_url=grant.token_url,
            client_id=grant.client_id,
            scopes=list(grant.scopes),
            subject=grant.subject,
            client_secret=open_(grant.client_secret),
            refresh_token=refresh,
            private_key=open_(grant.private_key),
        )

    async def _failed(
        self,
        conn: Conn,
        monitor: Monitor,
        grant: Grant,
        key: str,
        row: store.Cached | None,
        failure: TokenFailure,
        *,
        refused: bool,
    ) -> None:
        """Record the failure; tell the owners once, until a token comes or the grant changes.
        The caller holds a transaction."""
        told = row is not None and row.told and row.error is not None
        now = self._clock.now()
        if not told:
            _, owners = await budget_db.owners(conn, monitor.organization_id)
            texts = render_oauth2_token(
                monitor, endpoint(grant), failure.error, failure.message, self._links
            )
            notice = f"{NOTICE_KIND}:{key[:16]}:{now.isoformat()}"
            notes = recipients.to_owners(NOTICE_KIND, owners, texts, notice)
            notes += recipients.to_channels(NOTICE_KIND, texts, notice)
            org = monitor.organization_id
            await notify(conn, Notice(Source.ACCOUNT, org, monitor, None, notes), now)
        await store.failed(
            conn,
            key,
            monitor.id,
            failure.error,
            failure.message,
            rules.retry_at(now, refused),
            True,
            now,
        )
        self._memory.pop(key, None)
