"""Each organization's report mailbox read on a schedule (alerter role), one replica at a time
(`turns.REPORT_MAILBOXES`): every `TICK_S` the mailboxes due are read, `CONCURRENCY` at once,
each read bounded by `READ_TIMEOUT_S` and `mailbox.MAX_MESSAGES` messages (an organization's
whole share of a pass), then due again `interval_s` later whatever became of it. How it went
(messages, reports stored and rejected, or the error in words) is kept on its row for the API.

A password is opened from its seal; an OAuth2 grant's access token comes from the grant's token
endpoint (controller.oauth2.fetcher, the monitors' fetcher), counted against the organization's
hourly budget of token calls and cached sealed on the row until shortly before it expires, with
the refresh token the endpoint rotated to. Only this worker asks for it, one replica at a time,
so a rotated refresh token is used once.
"""

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta

import aioimaplib
import asyncpg
import structlog

from controller.db import turns
from controller.monitors import oauth2_grants as grants
from controller.notify.links import Links
from controller.oauth2 import rules as oauth2_rules
from controller.oauth2 import token_store
from controller.oauth2.fetcher import TokenError, TokenFetcher
from controller.reports import intake, mailbox
from controller.reports import mailbox_store as db
from controller.reports.mailbox import MailboxError, ReportMailbox
from controller.secrets.box import SealedSecret, SecretBox, SecretBoxError
from shared.clock import Clock
from shared.guards import BrokenInvariant
from shared.loop import run_every
from shared.secret import Secret
from shared.strangers import kept

log = structlog.get_logger(__name__)

TICK_S = 60.0
CONCURRENCY = 4  # mailboxes read at once by the replica whose turn it is
BATCH = 100  # mailboxes taken per pass (the rest are due at the next)
READ_TIMEOUT_S = 300.0
ERROR_MAX = 500
MASK = "********"


@dataclass(frozen=True, slots=True)
class Reader:
    """What a read needs besides the rows: the box opening secrets, the token fetcher, the
    organization's token calls an hour, whether private addresses may be read, the interval,
    the bounds per domain on what is taken."""

    box: SecretBox
    fetcher: TokenFetcher
    links: Links
    clock: Clock  # the instant reads are due, begun, ended and tokens expire at
    interval_s: float = 300.0
    calls_per_hour: int = 600
    allow_private: bool = False
    limits: intake.Limits = intake.DEFAULT_LIMITS


async def one_pass(pool: asyncpg.Pool, reader: Reader) -> int:
    """Read every due mailbox (none when another replica's pass is under way); how many."""
    async with pool.acquire() as conn, turns.turn(conn, turns.REPORT_MAILBOXES) as mine:
        if not mine:
            return 0
        due = await db.due(conn, reader.clock.now(), BATCH)
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(stored: db.StoredMailbox) -> None:
            async with gate:
                try:
                    await _read(pool, reader, stored)
                except Exception:  # the database, say: this mailbox waits, the others go on
                    log.exception(
                        "report mailbox read failed", organization_id=stored.organization_id
                    )

        await asyncio.gather(*(one(s) for s in due))
        return len(due)


async def _read(pool: asyncpg.Pool, reader: Reader, stored: db.StoredMailbox) -> None:
    org = stored.organization_id
    started = reader.clock.now()
    error: str | None = None
    counts = None
    box: ReportMailbox | None = None
    try:
        async with asyncio.timeout(READ_TIMEOUT_S):
            box = await _mailbox(pool, reader, stored, started)
            done = await mailbox.read(pool, box, reader.links)
        counts = (done.messages, done.stored, done.rejected)
    except MailboxError as exc:
        error = str(exc)
    except TimeoutError:
        error = f"no answer within {READ_TIMEOUT_S:.0f} s"
    except (OSError, aioimaplib.AioImapException) as exc:
        error = f"the connection failed: {exc or type(exc).__name__}"
    if error is not None and box is not None:
        error = _scrubbed(error, box.password.reveal())
    if error is not None:  # a server's words: kept as a stranger's text is
        error = kept(error, ERROR_MAX)
    now = reader.clock.now()
    async with pool.acquire() as conn:
        await db.read_done(
            conn,
            org,
            now,
            now + timedelta(seconds=reader.interval_s),
            error,
            counts,
        )
    if error is None:
        if counts is None:
            raise BrokenInvariant("reading._read: counts is unset")
        log.info(
            "report mailbox read",
            organization_id=org,
            messages=counts[0],
            stored=counts[1],
            rejected=counts[2],
        )
    else:
        log.warning("report mailbox not read", organization_id=org, error=error)


def _scrubbed(error: str, secret: str) -> str:
    """The error without the secret, which a careless server's refusal may repeat."""
    return error.replace(secret, MASK) if secret else error


async def _mailbox(
    pool: asyncpg.Pool, reader: Reader, stored: db.StoredMailbox, now: datetime
) -> ReportMailbox:
    """The mailbox as mailbox.read takes it: its secret opened, or an access token got."""
    if stored.password is not None:
        secret, mechanism = Secret(_open(reader.box, stored.password)), ""
    else:
        secret, mechanism = await _token(pool, reader, stored, now)
    return ReportMailbox(
        organization_id=stored.organization_id,
        host=stored.host,
        port=stored.port,
        user=stored.user,
        password=secret,
        mechanism=mechanism,
        ca_pem=stored.ca_pem,
        folder=stored.folder,
        done=stored.done_folder,
        allow_private=reader.allow_private,
        protocol=stored.protocol,
        security=stored.security,
        limits=reader.limits,
        started=now,
    )


def _open(box: SecretBox, sealed: str) -> str:
    try:
        return box.open(sealed)
    except SecretBoxError:
        raise MailboxError("a stored secret does not open (SECRETS_KEY)") from None


async def _token(
    pool: asyncpg.Pool, reader: Reader, stored: db.StoredMailbox, now: datetime
) -> tuple[Secret, str]:
    grant = grants.stored(stored.oauth2)
    if grant is None or stored.oauth2 is None:
        raise MailboxError("the OAuth2 grant is not one this version reads")
    needed_until = now + timedelta(seconds=READ_TIMEOUT_S)
    if stored.access_token and oauth2_rules.usable(stored.token_expires_at, needed_until):
        return Secret(_open(reader.box, stored.access_token)), grant.mechanism
    hour = now.replace(minute=0, second=0, microsecond=0)
    async with pool.acquire() as conn:
        if not await token_store.take_call(
            conn, stored.organization_id, hour, reader.calls_per_hour
        ):
            raise MailboxError(
                "no OAuth2 token: the organization's token endpoint calls this hour are spent"
                " (OAUTH2_TOKEN_CALLS_PER_HOUR)"
            )
    opened = _opened(reader.box, grant, stored.refresh_token)
    try:
        issued = await reader.fetcher.fetch(
            opened, stored.protocol, stored.user, reader.clock.now()
        )
    except TokenError as exc:
        raise MailboxError(f"no OAuth2 token ({exc.error}): {exc}") from None
    expires = oauth2_rules.expires_at(reader.clock.now(), issued.expires_in)
    rotated = None
    if issued.refresh_token and issued.refresh_token != opened.refresh_token.reveal():
        rotated = reader.box.seal(issued.refresh_token)
    async with pool.acquire() as conn:
        await db.token_issued(
            conn,
            stored.organization_id,
            stored.oauth2,
            reader.box.seal(issued.access_token),
            expires,
            rotated,
        )
    return Secret(issued.access_token), grant.mechanism


def _opened(box: SecretBox, grant: grants.Grant, rotated: str | None) -> grants.Grant:
    """The grant with its secrets opened, its refresh token the rotated one if any."""

    def open_(secret: Secret) -> Secret:
        if isinstance(secret, SealedSecret):
            return Secret(_open(box, secret.reveal()))
        return secret

    return grants.Grant(
        mechanism=grant.mechanism,
        grant=grant.grant,
        provider=grant.provider,
        tenant=grant.tenant,
        token_url=grant.token_url,
        client_id=grant.client_id,
        scopes=list(grant.scopes),
        subject=grant.subject,
        client_secret=open_(grant.client_secret),
        refresh_token=Secret(_open(box, rotated)) if rotated else open_(grant.refresh_token),
        private_key=open_(grant.private_key),
    )


async def read_mailboxes(pool: asyncpg.Pool, reader: Reader, stop: asyncio.Event) -> None:
    """Every TICK_S until `stop`, the first pass at once."""

    async def run() -> None:
        await one_pass(pool, reader)

    await run_every(TICK_S, run, name="report mailboxes", stop=stop)
