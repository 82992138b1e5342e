"""The outbox worker (alerter role): pending notifications → their channel, with retries.

The worker has `senders` sends at once (SENDERS: relays limit connections per client, and the
worker's own connections never pass it). As soon as one is free it claims the next due
notification: which one is fair between organizations (`controller.notify.fair_share`): each
organization's share of the senders, its notifications in its own order (outage notices
first, then the oldest due), the organization that held senders least lately first, so one
organization's notices, however many and however slow their channels, never hold another's.
A notification channel has one send at a time and a breaker (`controller.notify.breaker`),
both across the controllers (`notification_channel_state`: the send's lease taken in the claim,
the breaker moved in its outcome's write-back): a channel that never answers holds one sender
of one controller until its deadline, and after a few failures in a row, whoever saw them, none
while it is open. There is no batch to wait for: each send is written back as it ends.

A claim leases its rows in one short transaction with FOR UPDATE SKIP LOCKED (attempts
counted, hidden from other workers for `LEASE_S`, renewed every third of it while they are
sent); each outcome is written back with its line in `alert_history`. A worker claims only rows
of the channels it has configured (the others wait for a replica that has them), only rows with
attempts left, and a row only when no older one of its source to the same recipient about the
same monitor is pending, so a recovery never overtakes its down notice. A failed send is
retried with exponential backoff until `max_attempts`, unless the refusal is permanent; one
that reached no receiver for a cause of mailprobe's own (its database away, its file
descriptors used up) is retried after `SOON_S`. Whatever a send raises becomes a recorded
failure, so every outcome is written.

Each organization's notifications draw on its hourly budget per source and channel family
(`controller.notify.budget`), taken in the claim's transaction: past it a claimed row is dropped
unsent, its history line saying why, and the organization's owners get one notice an hour per
budget. Outage notices draw on budgets nothing else draws on. The time a send holds a sender
(retries included) counts against its organization's share.

Delivery is at least once, each notice under an idempotency key stable across attempts (an
e-mail's Message-ID, the SMS webhook's Idempotency-Key, a channel's event id or its
service's dedup key: docs/alerts.md), so receivers can drop a repeat. A write-back that fails
(the database lost mid-commit, a failover) is tried again every `WRITE_BACK_RETRY_S` until it
lands, so a notice sent while the primary went away is recorded within seconds of the new
one's arrival and the notices queued behind it go on; should the worker die first, its lease
runs out within `LEASE_S` and the row is sent again. A write-back only lands while the row is
still the writer's lease (same attempt), so a late worker never overwrites the outcome of the
one that claimed the row after it; written twice, it lands the same.
"""

import asyncio
import random
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import NamedTuple

import asyncpg
import structlog

from controller.db.pool import DB_AWAY, Conn
from controller.monitors import store as monitors
from controller.notify import NAMES, Channel, DeliveryError, Notification, fair_share, recipients
from controller.notify import budget as notify_budget
from controller.notify import budget_store as budget_db
from controller.notify import channel_state_store as channel_state
from controller.notify import outbox_store as outbox_db
from controller.notify.breaker import CLOSED, Breaker, is_open
from controller.notify.budget import HELD_BACK, Budget, Pot
from controller.notify.entry import Notice, notify
from controller.notify.links import NO_LINKS, Links
from controller.notify.outbox_store import Claimed
from controller.notify.shortage import not_sent, own_shortage
from controller.notify.sources import Source
from controller.notify.texts import render_held_back
from controller.observability import metrics
from shared.guards import BrokenInvariant

log = structlog.get_logger(__name__)

BATCH = 50  # rows one `deliver` claims (tests, tools)
SEND_TIMEOUT_S = 60.0
# Sends at once per worker: relays limit connections per client, and each send holds one
# connection, so the worker's own never pass it.
SENDERS = 10
# The share of the senders one organization holds while another organization's notices wait.
ORG_SHARE = 0.5
# How long a claimed row stays hidden from other workers without news of its worker: renewed
# every third of it while it is sent, so it bounds how long a dead worker's notices
# (and those queued behind them) wait to be sent again, not how long a send may take.
LEASE_S = 10.0
# A write-back that failed is tried again this often, for at most this long: past that the
# lease has long run out and the row is sent again anyway.
WRITE_BACK_RETRY_S = 0.5
WRITE_BACK_WITHIN_S = 120.0
# A send that reached no receiver for a cause of mailprobe's own (its database away, its file
# descriptors used up) is tried again this soon.
SOON_S = 2.0
MAX_BACKOFF_S = 3600.0
# Replicas' idle polls drift apart, so each claims about half the sends.
JITTER = 0.5
# A sender freed while most are busy waits this long for others to free before they claim
# together (one claim per send would cost a transaction each).
GATHER_S = 0.05


class Outcome(NamedTuple):
    error: str | None  # None: delivered
    permanent: bool = False
    soon: bool = False


def failure(exc: Exception, channel: str) -> Outcome:
    """The outcome of a send that raised `exc` on `channel`: a cause of the controller's own
    (its file descriptors used up: controller.notify.shortage) is retried soon and blames no
    endpoint, whatever the channel made of it."""
    if isinstance(exc, DeliveryError) and exc.soon:
        return Outcome(str(exc), soon=True)
    if (own := own_shortage(exc)) is not None:
        return Outcome(not_sent(own, f"the {channel} endpoint"), soon=True)
    if isinstance(exc, DeliveryError):
        return Outcome(str(exc), exc.permanent, exc.soon)
    return Outcome(f"internal error: {type(exc).__name__}: {exc}"[:300])


class _Flight(NamedTuple):
    """A row this worker renews the lease of, from its claim to the end of its send."""

    row: Claimed
    organization_id: int


class OutboxWorker:
    def __init__(
        self,
        pool: asyncpg.Pool,
        channels: Mapping[str, Channel],
        *,
        max_attempts: int = 40,
        backoff_s: float = 30.0,
        interval_s: float = 1.0,
        batch: int = BATCH,
        lease_s: float = LEASE_S,
        senders: int = SENDERS,
        org_share: float = ORG_SHARE,
        budget: Budget | None = None,
        links: Links = NO_LINKS,
        clock: Callable[[], datetime],
    ) -> None:
        """`links`: where the owners' notice that the budget was reached points them."""
        self._pool = pool
        self._links = links
        self._budget = budget or Budget()
        self._channels = channels
        self._max_attempts = max_attempts
        self._backoff_s = backoff_s
        self._interval_s = interval_s
        self._batch = batch
        self._lease_s = lease_s
        self._senders = senders
        self._cap = fair_share.org_cap(senders, org_share)
        self._clock = clock
        self._flight: dict[int, _Flight] = {}  # by outbox id
        # Held while leases are renewed: a row leaves `_flight` under it, so no renewal lands
        # after its outcome is written.
        self._renewing = asyncio.Lock()
        self._usage = fair_share.Usage()
        self._breaker = Breaker()
        # Outcomes waiting for their write-back, and the task writing them.
        self._to_write: list[tuple[Claimed, Outcome, datetime | None, asyncio.Future[None]]] = []
        self._writing: asyncio.Task[None] | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Send until `stop` is set: free senders claim the next due notifications at once
        (within GATHER_S, while most are busy), an idle worker looks every `interval_s` (with
        jitter). Sends under way when `stop` is
        set end (each bounded by its deadline) and are written back."""
        log.info("outbox worker started", channels=sorted(self._channels))
        for name in NAMES:
            if name not in self._channels:
                log.warning(
                    "notification channel not configured here: its notifications wait for a"
                    " controller that has it",
                    channel=name,
                )
        loop = asyncio.get_running_loop()
        sending: set[asyncio.Task[bool]] = set()
        stopping = asyncio.create_task(stop.wait())
        renewing = asyncio.create_task(self._renew())
        freed_at: float | None = None  # when a sender became free since the last claim
        try:
            while not stop.is_set():
                wait = self._interval_s * random.uniform(1 - JITTER, 1 + JITTER)
                if free := self._senders - len(sending):
                    freed_at = loop.time() if freed_at is None else freed_at
                    gathered = loop.time() - freed_at
                    if 2 * free >= self._senders or gathered >= GATHER_S:
                        freed_at = None
                        try:
                            _, rows = await self._claim(free)
                        except Exception:  # never the loop's end, as any periodic pass
                            log.exception("outbox claim failed")
                            rows = []
                        sending.update(asyncio.create_task(self._one(*r)) for r in rows)
                    else:
                        wait = GATHER_S - gathered
                done, _ = await asyncio.wait(
                    [*sending, stopping], timeout=wait, return_when=asyncio.FIRST_COMPLETED
                )
                sending -= done
            if sending:
                await asyncio.wait(sending)
        finally:
            for task in (*sending, stopping, renewing):
                task.cancel()
            await asyncio.gather(*sending, stopping, renewing, return_exceptions=True)

    async def burst(self) -> int:
        """Deliver until nothing this worker can claim is due; return how many were sent
        (tests, tools)."""
        sent = 0
        while True:
            claimed, delivered = await self._pass()
            sent += delivered
            if not claimed:
                return sent

    def backoff(self, attempts: int) -> timedelta:
        return timedelta(seconds=min(self._backoff_s * 2 ** max(0, attempts - 1), MAX_BACKOFF_S))

    def retry_at(self, row: Claimed, outcome: Outcome, now: datetime) -> datetime | None:
        """When a failed send is tried again; None when never (delivered, refused for good,
        out of attempts)."""
        if outcome.error is None or outcome.permanent or row.attempts >= self._max_attempts:
            return None
        return now + (timedelta(seconds=SOON_S) if outcome.soon else self.backoff(row.attempts))

    async def deliver(self) -> int:
        """One batch: settle, claim up to `batch` rows (fairly), send them `senders` at a
        time, record; return how many were delivered."""
        return (await self._pass())[1]

    async def _pass(self) -> tuple[int, int]:
        """One batch; (claimed, delivered)."""
        claimed, rows = await self._claim(self._batch)
        if not rows:
            return claimed, 0
        gate = asyncio.Semaphore(self._senders)

        async def one(row: Claimed, organization_id: int) -> bool:
            async with gate:
                return await self._one(row, organization_id)

        renewing = asyncio.create_task(self._renew())
        try:
            done = await asyncio.gather(*(one(*r) for r in rows))
        finally:
            renewing.cancel()
            await asyncio.wait([renewing])
        sent = sum(done)
        log.info("notifications delivered", sent=sent, failed=len(rows) - sent)
        return claimed, sent

    async def _claim(self, most: int) -> tuple[int, list[tuple[Claimed, int]]]:
        """Settle, then claim up to `most` due rows as `fair_share.choose` orders them, within
        their budgets; (how many were claimed, the rows to send with their organizations)."""
        now = self._clock()
        async with self._pool.acquire() as conn:
            if not await outbox_db.outbox_due(conn, now):
                return 0, []
        at = now.timestamp()
        held = Counter(f.organization_id for f in self._flight.values())
        # its own sends' channels; the claim skips those of other controllers' sends and those
        # whose breaker is open
        waiting = sorted(
            {f.row.channel_id for f in self._flight.values() if f.row.channel_id is not None}
        )
        async with self._pool.acquire() as conn, conn.transaction():
            await outbox_db.settle_outbox(conn, now, self._max_attempts)
            offered = await outbox_db.due(
                conn, now, list(self._channels), self._max_attempts, most, waiting
            )
            chosen = fair_share.choose(offered, most, held, self._cap, self._usage.all(at), waiting)
            if not chosen:
                return 0, []
            rows = await outbox_db.claim_outbox(
                conn, now, [d.id for d in chosen], self._lease_s, self._max_attempts
            )
            claimed = len(rows)
            rows = await self._within_budget(conn, rows, now)
        turn = {d.id: (i, d.organization_id) for i, d in enumerate(chosen)}
        rows.sort(key=lambda r: turn[r.id][0])
        for r in rows:
            self._flight[r.id] = _Flight(r, turn[r.id][1])
        return claimed, [(r, turn[r.id][1]) for r in rows]

    async def _one(self, row: Claimed, organization_id: int) -> bool:
        """Send one claimed row and write its outcome back; whether it was delivered. The
        time it held a sender counts against its organization; a channel's outcome moves its
        breaker (in the write-back)."""
        try:
            started = self._clock().timestamp()
            outcome = await self._send(row)
        finally:
            async with self._renewing:
                self._flight.pop(row.id, None)
        now = self._clock()
        ended = now.timestamp()
        self._usage.charge(organization_id, ended - started, ended)
        await self._written(row, outcome, self.retry_at(row, outcome, now))
        metrics.notifications([row.channel], [outcome.error])
        return outcome.error is None

    async def _written(self, row: Claimed, outcome: Outcome, retry_at: datetime | None) -> None:
        """Write `row`'s outcome back, with those of the sends that ended meanwhile (one
        transaction for them all); return once it is written (or given up)."""
        landed = asyncio.get_running_loop().create_future()
        self._to_write.append((row, outcome, retry_at, landed))
        if self._writing is None or self._writing.done():
            self._writing = asyncio.create_task(self._write_pending())
        await asyncio.shield(landed)

    async def _write_pending(self) -> None:
        while self._to_write:
            batch, self._to_write = self._to_write, []
            try:
                await self._write_back([b[0] for b in batch], [(b[1], b[2]) for b in batch])
            except Exception:  # never a sender's end: its row is sent again after its lease
                log.exception("outcomes not written back")
            finally:
                for *_, landed in batch:
                    if not landed.done():
                        landed.set_result(None)

    async def _renew(self) -> None:
        """Every third of the lease, extend the leases of the rows this worker holds: a send
        may take a minute (SEND_TIMEOUT_S), yet a dead worker's rows are free again within
        LEASE_S. A renewal that fails (the database away) is tried at the next; meanwhile the
        lease may run out and another worker send a row again, which its key lets receivers
        drop."""
        while True:
            await asyncio.sleep(self._lease_s / 3)
            async with self._renewing:
                rows = [f.row for f in self._flight.values()]
                if not rows:
                    continue
                until = self._clock() + timedelta(seconds=self._lease_s)
                try:
                    async with asyncio.timeout(self._lease_s / 3), self._pool.acquire() as conn:
                        await outbox_db.renew(conn, rows, until)
                except Exception as exc:  # never the sends' end: they go on
                    log.warning("notification leases not renewed", error=repr(exc))

    async def _write_back(
        self, rows: list[Claimed], settled: list[tuple[Outcome, datetime | None]]
    ) -> None:
        """Record each outcome, and give back its channel's lease and move its breaker, in one
        transaction; while the database is away, again every WRITE_BACK_RETRY_S for up to
        WRITE_BACK_WITHIN_S (each write lands once however often it is tried:
        `record_attempts`)."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + WRITE_BACK_WITHIN_S
        while True:
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    outcomes = [(outcome.error, retry_at) for outcome, retry_at in settled]
                    lost = await outbox_db.record_attempts(conn, rows, outcomes, self._clock())
                    await self._channels_ended(conn, rows, [o for o, _ in settled])
                break
            except DB_AWAY as exc:
                if loop.time() > give_up:
                    log.error(
                        "outcomes not written back: the database stayed away; the rows are"
                        " sent again once their leases run out",
                        count=len(rows),
                        error=repr(exc),
                    )
                    return
                log.warning("outcomes not written back yet; trying again", error=repr(exc))
                await asyncio.sleep(WRITE_BACK_RETRY_S)
        for row in lost:
            log.warning(
                "outcome not written back: the lease ran out and the row moved on",
                outbox_id=row.id,
                attempt=row.attempts,
            )

    async def _channels_ended(
        self, conn: Conn, rows: list[Claimed], outcomes: list[Outcome]
    ) -> None:
        """Each notification channel's send of `rows` gives its lease back and moves the
        channel's breaker, as of its write-back (in channel order, as claims lock them)."""
        now = self._clock()
        ends = sorted(
            ((r.channel_id, r, o) for r, o in zip(rows, outcomes, strict=True) if r.channel_id),
            key=lambda end: end[0],
        )
        for channel_id, row, outcome in ends:
            was = await channel_state.state(conn, channel_id)
            if was is None:  # the channel deleted since
                continue
            after = was
            if outcome.error is None:
                after = CLOSED
            elif not outcome.permanent and not outcome.soon:
                after = self._breaker.failed(was, now)
                if is_open(after, now):
                    log.warning(
                        "notification channel not taking notices: they wait a while untried",
                        channel_id=channel_id,
                        until=after.open_until.isoformat() if after.open_until else None,
                        error=outcome.error,
                    )
            await channel_state.ended(conn, channel_id, row.id, row.attempts, after)

    async def _within_budget(self, conn: Conn, rows: list[Claimed], now: datetime) -> list[Claimed]:
        """The claimed rows their budgets let through; the others are dropped, and the owners
        told at the window's first drop of each budget. A row counts at its first attempt only;
        the owners' notice is outside every budget."""
        charged = [r for r in rows if r.attempts == 1 and notify_budget.charged(Source(r.source))]
        if not charged:
            return rows
        org_of = await budget_db.organizations(
            conn, [r.monitor_id for r in charged if r.monitor_id is not None]
        )
        groups: dict[tuple[int, Pot], list[Claimed]] = {}
        for r in sorted(charged, key=lambda r: r.id):  # the oldest first, as written
            org = r.organization_id if r.monitor_id is None else org_of[r.monitor_id]
            if org is None:
                raise BrokenInvariant(
                    "outbox.OutboxWorker._within_budget: the table's owner check: a monitor or an"
                    " organization"
                )
            pot = notify_budget.budget_of(Source(r.source), r.channel)
            groups.setdefault((org, pot), []).append(r)
        start = notify_budget.window(now)
        dropped: set[int] = set()
        for (org, pot), group in sorted(groups.items()):  # one lock order for replicas
            per_hour = self._budget.per_hour(pot)
            taken, held_before = await budget_db.take(conn, org, pot, start, per_hour, len(group))
            over = group[taken:]
            if not over:
                continue
            await outbox_db.drop_claimed(
                conn, [r.id for r in over], notify_budget.dropped_reason(pot, per_hour, start)
            )
            await channel_state.give_back(
                conn, [(r.channel_id, r.id, r.attempts) for r in over if r.channel_id is not None]
            )
            dropped.update(r.id for r in over)
            metrics.notifications_dropped(pot.source, pot.family, len(over))
            log.warning(
                "notifications dropped: organization's hourly budget used up",
                organization_id=org,
                source=str(pot.source),
                channel=pot.family,
                per_hour=per_hour,
                dropped=len(over),
            )
            if not held_before and over[0].monitor_id is not None:
                await self._tell_owners(conn, org, pot, per_hour, start, over[0].monitor_id, now)
        return [r for r in rows if r.id not in dropped]

    async def _tell_owners(
        self,
        conn: Conn,
        org: int,
        pot: Pot,
        per_hour: int,
        start: datetime,
        first_monitor_id: int,
        now: datetime,
    ) -> None:
        """Queue the owners' one notice of the window that `pot` was reached, in the alert
        history of the monitor whose notification was the first dropped."""
        name, owners = await budget_db.owners(conn, org)
        try:
            watched = await monitors.watched(conn, first_monitor_id)
        except monitors.MonitorConfigError as exc:
            log.error(
                "monitor config unreadable: owners not told the notification budget was reached",
                organization_id=org,
                monitor=first_monitor_id,
                error=str(exc),
            )
            return
        if watched is None or not owners:
            log.warning("no owner to tell the notification budget was reached", organization_id=org)
            return
        texts = render_held_back(
            name,
            notify_budget.what(pot),
            notify_budget.setting(pot),
            per_hour,
            start + notify_budget.WINDOW,
            watched.monitor,
            self._links,
        )
        # The outage budgets keep the keys they had (`held_back:1:email:…`).
        of = pot.family if pot.source is Source.OUTAGE else f"{pot.source}:{pot.family}"
        key = f"held_back:{org}:{of}:{start.isoformat()}"
        notes = recipients.to_owners(HELD_BACK, owners, texts, key)
        await notify(conn, Notice(Source.OWNERS, org, watched.monitor, None, notes), now)

    async def _send(self, row: Claimed) -> Outcome:
        """Deliver one row; whatever goes wrong is an outcome, never an exception."""
        note = Notification(
            row.target,
            row.subject,
            row.body_text,
            row.body_html,
            row.dedupe_key,
            list_unsubscribe=row.list_unsubscribe,
            channel_id=row.channel_id,
            payload=row.payload,
            thread=row.thread_key,
        )
        permanent = soon = False
        try:
            await asyncio.wait_for(self._channels[row.channel].send(note), SEND_TIMEOUT_S)
        except DeliveryError as exc:
            error, permanent, soon = failure(exc, row.channel)
        except TimeoutError:
            error = f"no answer within {SEND_TIMEOUT_S:.0f} s"
        except Exception as exc:
            if own_shortage(exc) is not None:
                error, permanent, soon = failure(exc, row.channel)
            else:
                error = f"internal error: {type(exc).__name__}: {exc}"[:300]
                log.error("notification send raised", outbox_id=row.id, exc_info=True)
        else:
            return Outcome(None)
        log.warning(
            "notification not delivered",
            outbox_id=row.id,
            channel=row.channel,
            attempt=row.attempts,
            permanent=permanent,
            error=error,
        )
        return Outcome(error, permanent, soon)
