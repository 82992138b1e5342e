"""The ingester: `RESULTS` → `check_results`, in batches, acked only after the commit.

A message that does not decode, or holds a value PostgreSQL refuses (the batch is then stored
one result at a time to find it), is logged and terminated: JetStream stops redelivering it, and
it stays in the stream, which keeps days of history, so nothing is lost. A NUL character, which
PostgreSQL cannot store in text, becomes U+FFFD. A batch whose commit fails otherwise is not
acked and comes back after a short delay.

A message carries one result, or several as a bundle (a JSON array on `mon.results.CC.bundle`,
under the controller's `RESULT_BUNDLES`): each result of a bundle is checked alone and one bad
result is moved aside by itself; the message is acked once its results are stored, `nak`ed
when any of them must come again (stored again whole: the inserts are idempotent).

`run()` pipelines: one task pulls batches (a standing pull request for a batch's first result,
what else comes within LINGER_S gathered at its end: shared.pulling) while up to
`workers` others store earlier ones, each in its own transaction. The consumer's ack wait is
short (`INGEST_ACK_WAIT_S`), so a dead ingester's results go to another within seconds; a
message held longer than a third of it (its batch queued behind others, or a slow commit) is
kept with `in_progress` every third of it until settled. Concurrent batches are safe
because every insert is idempotent on the job id and `record.checked` locks state rows in one
fixed order; a batch that still fails (a deadlock, a lost connection) is nak'ed and stored
again later.
"""

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import asyncpg
import msgspec
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext

from controller.db.pool import Conn
from controller.ingest import job_window, record
from controller.ingest import store as results
from controller.ingest.store import CheckedResult
from controller.jobs.rules import JobIds
from controller.monitors import store as monitors
from controller.observability import metrics
from controller.oracles import store as oracles
from controller.sidechecks import legacy
from controller.sidechecks.asks import unasked
from controller.sidechecks.registry import WIRED
from shared.clock import Clock
from shared.loop import run_every
from shared.messages import result_parts
from shared.pulling import StandingPull
from shared.sidechecks import SIDE_CHECK_ERROR_KINDS, SideCheckError
from shared.streams import INGEST_ACK_WAIT_S, INGEST_CONSUMER, ingest_consumer_config
from shared.subjects import RESULTS_STREAM, RESULTS_SUBJECTS, results_bundle_country

log = structlog.get_logger(__name__)

BATCH = 1000
WORKERS = 6
FETCH_TIMEOUT_S = 0.5
RETRY_DELAY_S = 1.0
# Pull requests outstanding at once. One: results keep arriving through a lane's standing
# request (shared.pulling) while the storers commit earlier batches; more lanes would split a
# trickle into more, smaller batches, each a transaction.
LANES = 1
# A lane's standing pull request lasts this long when results do not fill it first: the
# idle cost of a lane is one request and its 408 per this many seconds.
PULL_EXPIRES_S = 10.0
# A batch that came short is topped up with what arrives this long after its first result:
# every batch costs a transaction and a handful of statements whatever its size, so a trickle
# of results stored a few at a time cost several times the CPU per result of full batches.
# What arrives meanwhile waits in the stream and comes in one delivery (shared.pulling): a
# linger costs no wake-ups, only store lag. It takes in a scheduler's pass of results (they
# come within ~0.1 s of it). Bounds the store lag it adds; a batch the consumer already holds
# whole never waits.
LINGER_S = 0.1


class Ingester:
    def __init__(
        self,
        pool: asyncpg.Pool,
        nc: NATS,
        js: JetStreamContext,
        job_ids: JobIds,
        *,
        durable: str = INGEST_CONSUMER,
        subject: str = RESULTS_SUBJECTS,
        default_countries: int = 2,
        ack_wait_s: float = INGEST_ACK_WAIT_S,
        batch: int = BATCH,
        accept_unsealed: bool = False,
        clock: Clock,
    ) -> None:
        """`durable` and `subject` name the consumer and what it reads (all results by default);
        `default_countries`: DEFAULT_CHECK_COUNTRIES; `ack_wait_s`: the consumer's ack wait,
        which it is created or updated with; `batch`: results a batch holds at most;
        `accept_unsealed`: ACCEPT_UNSEALED_SIDE_FACTS (side facts of a result without its job's
        sealed asks, from an older agent, taken cut to what they name; off: dropped); `clock`:
        what a batch is stored at (`stored_at`, the alert queue's due times). `run()` stores up
        to WORKERS batches at once, a short batch topped up for LINGER_S."""
        self._pool = pool
        self._nc = nc
        self._js = js
        self._job_ids = job_ids
        self.durable = durable
        self._subject = subject
        self._default_countries = default_countries
        self._pullers: dict[int, StandingPull] = {}
        self._consumer_ready = False
        self._ack_wait_s = ack_wait_s
        self._batch = batch
        self._accept_unsealed = accept_unsealed
        self._clock = clock
        # Messages taken and not yet settled, in the order they were taken, with that time.
        self._held: dict[int, tuple[Msg, float]] = {}

    async def _pull(self, lane: int) -> StandingPull:
        """Create (or update) the durable consumer once (again after a lane failed), then pull
        from it: each lane with a standing pull request of its own (shared.pulling), so one
        lane's messages arrive while another's are handled."""
        if not self._consumer_ready:
            config = ingest_consumer_config()
            config.durable_name = self.durable
            config.filter_subject = self._subject
            config.ack_wait = self._ack_wait_s
            await self._js.add_consumer(RESULTS_STREAM, config)
            self._consumer_ready = True
        if lane not in self._pullers:
            self._pullers[lane] = StandingPull(
                self._nc, RESULTS_STREAM, self.durable, expires_s=PULL_EXPIRES_S
            )
        return self._pullers[lane]

    async def _reset(self, lane: int) -> None:
        """After a lane failed: that lane gets a fresh inbox and the consumer is ensured again
        (it may be gone); the other lanes go on."""
        self._consumer_ready = False
        if (puller := self._pullers.pop(lane, None)) is not None:
            await _hand_back(await puller.close())

    async def close(self) -> None:
        """Unsubscribe, and hand back what arrived and was not taken (stored again at once by
        whoever pulls, not after ack_wait); needed before draining the connection, which
        otherwise waits for late pull-status messages nobody fetches anymore."""
        pullers, self._pullers = self._pullers, {}
        for puller in pullers.values():
            await _hand_back(await puller.close())

    async def run(self, stop: asyncio.Event) -> None:
        """Ingest until `stop` is set; errors are logged and retried, never fatal."""
        log.info("ingester started", batch=self._batch, workers=WORKERS)
        batches: asyncio.Queue[list[Msg] | None] = asyncio.Queue(WORKERS)
        storers = [asyncio.create_task(self._store_batches(batches)) for _ in range(WORKERS)]
        keeper = asyncio.create_task(self._keep_in_progress())
        try:
            await asyncio.gather(*(self._fetch_batches(stop, batches, n) for n in range(LANES)))
        finally:
            for _ in storers:
                await batches.put(None)
            await asyncio.gather(*storers)
            keeper.cancel()
            await asyncio.wait([keeper])

    async def _keep_in_progress(self) -> None:
        """Every third of the ack wait, tell JetStream the messages held longer than that are
        still being stored, so that none goes to another ingester while this one has it."""
        period = self._ack_wait_s / 3
        loop = asyncio.get_running_loop()

        async def one_pass() -> None:
            cutoff = loop.time() - period
            held: list[Msg] = []
            for msg, taken in self._held.values():
                if taken > cutoff:
                    break
                held.append(msg)
            for msg in held:  # a copy: batches are settled while this awaits
                with contextlib.suppress(NatsError):
                    await msg.in_progress()

        await run_every(period, one_pass, name="ingest in-progress keeper")

    async def _fetch_batches(
        self, stop: asyncio.Event, batches: "asyncio.Queue[list[Msg] | None]", lane: int
    ) -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            started = loop.time()
            try:
                msgs = await (await self._pull(lane)).take(
                    self._batch, FETCH_TIMEOUT_S, linger_s=LINGER_S
                )
            except Exception as exc:
                log.error(
                    "fetching results failed; retrying", lane=lane, error=repr(exc), exc_info=True
                )
                await self._reset(lane)
                await asyncio.sleep(RETRY_DELAY_S)
                continue
            if msgs:
                taken = loop.time()
                self._held.update((id(msg), (msg, taken)) for msg in msgs)
                await batches.put(msgs)
            elif loop.time() - started < FETCH_TIMEOUT_S / 2:
                await asyncio.sleep(0.05)  # ended early (another replica's turn): no spin

    async def _store_batches(self, batches: "asyncio.Queue[list[Msg] | None]") -> None:
        while (msgs := await batches.get()) is not None:
            try:
                await self.handle(msgs)
            except Exception:
                # Not one of the failures `handle` expects: still, what it did not settle comes
                # back soon rather than after ack_wait, when its round may have closed.
                log.exception("storing a batch failed; redelivering")
                with contextlib.suppress(Exception):
                    for msg in msgs:
                        if not msg.is_acked:
                            await msg.nak(delay=RETRY_DELAY_S)
            finally:
                for msg in msgs:
                    self._held.pop(id(msg), None)

    async def burst(self, timeout_s: float = 0.2) -> int:
        """Drain what is waiting and return the number of results newly stored (tests, tools)."""
        stored = 0
        while (count := await self.step(timeout_s)) is not None:
            stored += count
        return stored

    async def step(self, timeout_s: float) -> int | None:
        """Fetch one batch and store it; None when nothing came within `timeout_s`."""
        msgs = await self.fetch(timeout_s)
        if not msgs:
            return None
        return await self.handle(msgs)

    async def fetch(self, timeout_s: float, lane: int = 0) -> list[Msg]:
        return await (await self._pull(lane)).take(self._batch, timeout_s)

    async def handle(self, msgs: list[Msg]) -> int:
        """Store the results `msgs` carry, `batch` at a time, each batch in a transaction, and
        settle each message by what became of its results: `nak` when any of them comes back
        later, `term` when none was stored (moved aside), else `ack`."""
        started = time.perf_counter()
        decoded: list[tuple[Msg, CheckedResult]] = []
        for msg in msgs:
            carried = self._decode(msg)
            decoded += [(msg, result) for result in carried]
            if not carried:
                await msg.term()
        settle = _Settling()
        for first in range(0, len(decoded), self._batch):
            batch = decoded[first : first + self._batch]
            try:
                settle.stored += await self._store([result for _, result in batch])
            except _REFUSED:
                # A value PostgreSQL refuses must not hold back the batch: find it one by one.
                await self._store_one_by_one(batch, settle)
            except _UNAVAILABLE as exc:
                # PostgreSQL is away: this batch and the rest come again, none tried now.
                log.error(
                    "storing results failed; redelivering",
                    count=len(decoded) - first,
                    error=str(exc),
                )
                settle.again.update(id(msg) for msg, _ in decoded[first:])
                break
            else:
                settle.kept.update(id(msg) for msg, _ in batch)
        for msg in {id(msg): msg for msg, _ in decoded}.values():
            if id(msg) in settle.again:
                await msg.nak(delay=RETRY_DELAY_S)
            elif id(msg) in settle.kept:
                await msg.ack()
            else:
                await msg.term()
        if decoded:
            log.debug("results stored", received=len(decoded), stored=settle.stored)
        metrics.batch_ingested([result for _, result in decoded], time.perf_counter() - started)
        return settle.stored

    def _decode(self, msg: Msg) -> list[CheckedResult]:
        """The results `msg` carries (one, or a bundle's parts), without those (moved aside)
        that do not decode or are not what their subject and job id say: an agent may publish
        only under its own country's subjects, and only for rounds the scheduler sent to that
        country (`JobIds.matches`)."""
        data = msg.data
        if b"\\u0000" in data:
            # PostgreSQL stores no NUL in text; a server's banner may hold one. Keep the result.
            data = data.replace(b"\\u0000", b"\\ufffd")
        country = results_bundle_country(msg.subject)
        if country is None:
            result = self._checked(msg, data)
            return [] if result is None else [result]
        try:
            parts = result_parts(msg.subject, data)
        except msgspec.DecodeError as exc:
            _moved_aside(msg, "undecodable", str(exc))
            return []
        checked = (self._checked(msg, part, country, n) for n, part in enumerate(parts))
        return [result for result in checked if result is not None]

    def _checked(
        self, msg: Msg, data: bytes, bundled_in: str | None = None, part: int | None = None
    ) -> CheckedResult | None:
        """One result, or None (moved aside): alone, its subject must be the one its body
        names; in a bundle (`bundled_in` its subject's country), its country must be that."""
        try:
            result = results.decode_result(data)
        except msgspec.DecodeError as exc:
            _moved_aside(msg, "undecodable", str(exc), part)
            return None
        monitor_id = str(result.monitor_id)
        if bundled_in is None:
            subject = f"mon.results.{result.country}.{result.monitor_type}.{monitor_id}"
            if msg.subject != subject:
                _moved_aside(msg, "wrong_subject", f"its body belongs on {subject[:200]}")
                return None
        elif result.country != bundled_in:
            why = f"its body is of country {result.country[:20]!r}"
            _moved_aside(msg, "wrong_subject", why, part)
            return None
        if not self._job_ids.matches(
            result.job_id, monitor_id, result.country, result.scheduled_at
        ):
            why = "its jobId is not the id of a round sent to its country"
            _moved_aside(msg, "unsent_round", why, part)
            return None
        _within_window(result)
        _refuse_legacy(result)
        _bound_side(result)
        _bound_side_errors(result)
        self._within_asks(result)
        return result

    def _within_asks(self, result: CheckedResult) -> None:
        """`result`'s side facts cut to what its job asked: with the job's asks sealed with it
        (`asksSeal` opens for `asks`: controller.jobs.asks_seal), those of a side check it did
        not ask dropped (`unasked`) and each cut to its ask (`within_ask`, `unasked_names`);
        with a seal that does not open, all dropped (`unsealed`); without one (an older
        agent), all dropped unless ACCEPT_UNSEALED_SIDE_FACTS, then each cut to what the
        facts themselves name. The result itself is kept; a log line for each cut."""
        if not result.side_checks:
            return
        sealed = bool(result.asks_seal)
        if sealed and not self._job_ids.asks.opens(result.job_id, result.asks, result.asks_seal):
            _drop_side(result, list(result.side_checks), "unsealed", "its asksSeal does not open")
            return
        if not sealed and not self._accept_unsealed:
            _drop_side(result, list(result.side_checks), "unsealed", "its job's asks not echoed")
            return
        asks = result.asks if sealed else None
        if asks is not None:
            _drop_side(
                result,
                [name for name in result.side_checks if asks.get(name) is None],
                "unasked",
                "its job did not ask",
            )
        for name, facts in list(result.side_checks.items()):
            check = WIRED.get(name)
            if check is None or check.within_ask is None or check.wire is None:
                continue
            try:
                ask = None if asks is None else check.wire.ask_of(asks)
            except SideCheckError:
                _drop_side(result, [name], "unsealed", "its echoed ask does not decode")
                continue
            fitted = check.within_ask(ask, facts)
            if fitted is not facts:
                metrics.side_facts_dropped(name, "unasked_names")
                log.warning(
                    "side facts about what its job did not ask: cut",
                    job_id=result.job_id,
                    country=result.country,
                    side_check=name,
                )
                result.side_checks[name] = fitted

    async def _store(self, batch: list[CheckedResult]) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            await _drop_unasked(conn, batch)
            stored = await record.checked(conn, batch, self._default_countries, self._clock.now())
            # Each country's resolver canaries, from the DNS side checks' facts (a result
            # without side facts has none).
            await oracles.record_canaries(conn, [r for r in batch if r.side_checks])
            return stored

    async def _store_one_by_one(
        self, decoded: list[tuple[Msg, CheckedResult]], settle: "_Settling"
    ) -> None:
        for msg, result in decoded:
            try:
                settle.stored += await self._store([result])
            except _REFUSED as exc:
                why = f"PostgreSQL refused it: {exc}"
                _moved_aside(msg, "refused_value", why, job_id=result.job_id)
            except _UNAVAILABLE as exc:
                log.error("storing a result failed; redelivering", error=str(exc))
                settle.again.add(id(msg))
            else:
                settle.kept.add(id(msg))


@dataclass
class _Settling:
    """What became of a handled batch's messages, by `id()`: `again` holds a result to store
    later (nak), `kept` one stored or already there (ack); a message in neither had every
    result it carried moved aside (term)."""

    stored: int = 0
    again: set[int] = field(default_factory=set)
    kept: set[int] = field(default_factory=set)


# PostgreSQL or the connection to it is away for now (a restart, a lost connection): stored
# again shortly. A connection that drops inside a transaction surfaces as asyncpg's
# InterfaceError from the transaction's exit, not as a PostgresError.
_UNAVAILABLE = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)

# What PostgreSQL answers for a value it cannot store, the same every time, so never redelivered:
# class 22 (data exception: out of range, a bad character), 23 (a constraint), 54 (a limit, such
# as a job id too long for the primary key's index).
_REFUSED = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.ProgramLimitExceededError,
)


async def _hand_back(msgs: list[Msg]) -> None:
    for msg in msgs:
        with contextlib.suppress(NatsError):
            await msg.nak()


def _moved_aside(
    msg: Msg, reason: str, error: str, part: int | None = None, **context: object
) -> None:
    """It stays in RESULTS (days of history); the log line says where to find it (`part`: its
    place in a bundle), and it is counted by `reason` (metrics.REFUSAL_REASONS)."""
    metrics.result_refused(reason)
    if part is not None:
        context["part"] = part
    log.error(
        "malformed result moved aside",
        subject=msg.subject,
        stream_seq=msg.metadata.sequence.stream,
        error=error[:300],
        **context,
    )


def _bound_side(result: CheckedResult) -> None:
    """`result`'s side facts typed and cut to their side checks' bounds (an agent could send
    more than its own code keeps); those of a side check this controller does not know, or that
    do not fit its types, dropped (logged): the result itself is kept."""
    for name in list(result.side_checks):
        check = WIRED.get(name)
        try:
            facts = (
                None
                if check is None or check.wire is None
                else check.wire.facts_of(result.side_checks)
            )
        except SideCheckError as exc:
            log.warning("side facts malformed: dropped", job_id=result.job_id, error=str(exc)[:200])
            metrics.side_facts_dropped(name, "malformed")
            facts = None
        if check is None:
            log.warning("side facts of no known side check: dropped", job_id=result.job_id)
            metrics.side_facts_dropped("unknown", "unknown")
        if facts is None or check is None:
            del result.side_checks[name]
            continue
        fitted = facts if check.bound is None else check.bound(facts)
        if fitted is not facts:
            # An agent could send more than the bound its own code keeps: cut and flag it.
            log.warning("side facts over their bound: cut", job_id=result.job_id, side_check=name)
        result.side_checks[name] = fitted


def _bound_side_errors(result: CheckedResult) -> None:
    """`result`'s `sideCheckErrors` cut to the side checks this controller knows, of a kind it
    knows, with no facts beside them (at most one per registered side check), each counted by
    side check and kind, in one log line; the result itself is kept."""
    errors = result.side_check_errors
    if not errors:
        return
    kept = {
        name: kind
        for name, kind in errors.items()
        if name in WIRED and kind in SIDE_CHECK_ERROR_KINDS and name not in result.side_checks
    }
    result.side_check_errors = kept
    for name, kind in kept.items():
        metrics.side_check_error(name, kind)
    log.warning(
        "side checks gave no facts",
        job_id=result.job_id,
        monitor_id=str(result.monitor_id),
        country=result.country,
        side_check_errors=kept,
        unknown=len(errors) - len(kept),
    )


def _within_window(result: CheckedResult) -> None:
    """`result`'s started and finished times moved into its job's window
    (controller.ingest.job_window): an agent's clock a little off, or an agent dating its facts
    where no check of that job ran (the future, to keep an answer fresh for ever). Counted and
    logged; the result is kept."""
    times = job_window.clamp(result.scheduled_at, result.started_at, result.finished_at)
    if not times.clamped:
        return
    log.warning(
        "result times outside its job's window: clamped",
        job_id=result.job_id,
        country=result.country,
        agent_id=result.agent_id[:64],
        fields=list(times.clamped),
        started_at=result.started_at.isoformat(),
        finished_at=result.finished_at.isoformat(),
    )
    for name in times.clamped:
        metrics.result_clamped(name)
    result.started_at, result.finished_at = times.started_at, times.finished_at


def _refuse_legacy(result: CheckedResult) -> None:
    """Drop the legacy side fields of a result whose agent knows `sideChecks` (it echoes sealed
    asks: controller.sidechecks.legacy), counted as `legacy_fields`, in one log line; its
    `sideChecks` and the result itself are kept."""
    names = legacy.refused(result)
    if not names:
        return
    for name in names:
        metrics.side_facts_dropped(name, "legacy_fields")
    log.warning(
        "side facts dropped: legacy fields from an agent that announced sideChecks",
        job_id=result.job_id,
        monitor_id=str(result.monitor_id),
        country=result.country,
        side_checks=names,
        reason="legacy_fields",
    )


def _drop_side(result: CheckedResult, names: list[str], reason: str, why: str) -> None:
    """Drop `names` from `result`'s side facts, counted by `reason`, in one log line."""
    if not names:
        return
    for name in names:
        del result.side_checks[name]
        metrics.side_facts_dropped(name if name in WIRED else "unknown", reason)
    log.warning(
        "side facts dropped: " + why,
        job_id=result.job_id,
        monitor_id=str(result.monitor_id),
        country=result.country,
        side_checks=names,
        reason=reason,
    )


async def _drop_unasked(conn: Conn, batch: list[CheckedResult]) -> None:
    """Drop from `batch`'s results the facts of side checks their monitors' rounds do not ask
    (`asks.unasked`, the planner's rule: an agent cannot add a side check its job did not ask,
    which would be stored and judged as the monitor's), one log line per result, counted by
    side check; the results themselves are kept (their core check is the agent's to report)."""
    carrying = [r for r in batch if r.side_checks]
    if not carrying:
        return
    found = await monitors.by_public_ids(conn, [r.monitor_id for r in carrying])
    for result in carrying:
        refused = unasked(found.get(result.monitor_id), result.side_checks)
        if not refused:
            continue
        for name in refused:
            del result.side_checks[name]
            metrics.side_facts_dropped(name, "unasked")
        log.warning(
            "side facts its monitor's rounds do not ask: dropped",
            job_id=result.job_id,
            monitor_id=str(result.monitor_id),
            country=result.country,
            side_checks=refused,
        )
