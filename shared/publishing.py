"""Many messages into one JetStream stream, acknowledged together (fast-ingest batches).

`publish_async` costs a PubAck per message: one more message for the server to send and the
client to read, decode and match to a future. A fast-ingest batch (nats-server 2.14+, a
stream with `allow_batched`) carries its control state in each message's reply subject,
`<inbox>.<batch>.<flow>.fail.<seq>.<op>.$FI`, and the server answers only every `flow`
messages (a flow ack, `{"type":"ack","seq":N,"msgs":F}`) and once at the commit (a PubAck
with the batch's id and `count`). With gap mode `fail`, a flow ack for N says that messages
1..N are stored, and a commit's PubAck whose `count` is the batch's length says all were:
anything else is an error for the caller, who publishes again (each message carries its
`Nats-Msg-Id`, which the stream's duplicate window honours inside a batch too: a message
already stored is dropped and still counted).

The replies to every batch a `Publisher` sends come through one subscription of its own
(`ReplyInbox`), each batch's told apart by its id in the reply subject.

The first message of a batch waits for its reply (the server may lower the flow, or say the
stream does not take batches); after it, at most `OUTSTANDING` flow windows go unanswered
before publishing waits. A stalled wait pings the batch (op 4), which makes the server send
its last flow ack again. A server or stream without fast batches answers the first message
with a plain PubAck or an error: `BatchesUnsupported`, and the caller publishes one by one.
"""

import asyncio
import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import msgspec
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import PubAck

from shared.messages import encode_bundle

# The flow the client asks for (the server may lower it, never raise it) and how many flow
# windows may be unanswered before publishing waits (the ADR's recommended 2).
FLOW = 100
OUTSTANDING = 2
# A wait for a flow ack longer than this pings the batch for the server's last one.
PING_AFTER_S = 1.0
# A batch's id is at most 64 characters.
_ID_BYTES = 12

_START, _APPEND, _COMMIT, _PING = 0, 1, 2, 4

log = structlog.get_logger()


class BatchesUnsupported(NatsError):
    """The server or the stream does not take fast-ingest batches; publish one by one."""


class BatchError(NatsError):
    """The batch was not stored whole: publish it again (duplicates are dropped by id)."""


class _ApiError(msgspec.Struct):
    code: int = 0
    err_code: int = 0
    description: str = ""


class _Reply(msgspec.Struct):
    """A flow ack, a gap report or a PubAck: one shape for the three, told apart by fields."""

    type: str = ""
    seq: int = 0
    msgs: int = 0
    last_seq: int = 0
    stream: str = ""
    batch: str = ""
    count: int = 0
    error: _ApiError | None = None


_decode = msgspec.json.Decoder(_Reply).decode


@dataclass(frozen=True, slots=True)
class Outgoing:
    subject: str
    payload: bytes
    msg_id: str


class _Replies:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[_Reply] = asyncio.Queue()

    def arrived(self, msg: Msg) -> None:
        try:
            self.queue.put_nowait(_decode(msg.data))
        except msgspec.DecodeError:
            self.queue.put_nowait(_Reply(error=_ApiError(description="undecodable reply")))


class ReplyInbox:
    """One subscription for the replies to every batch published through it, each batch's told
    apart by its id (the reply subject's first token after the inbox). A subscription made and
    removed per batch costs the server a SUB and an UNSUB, each of which also clears what its
    subject-interest cache holds for the stream's subjects (bench/results/nats-cost.md)."""

    def __init__(self, nc: NATS) -> None:
        self._nc = nc
        self.prefix = nc.new_inbox()
        self._sub: Subscription | None = None
        self._subscribing = asyncio.Lock()
        self._batches: dict[str, _Replies] = {}

    async def open(self, batch: str) -> _Replies:
        """The replies to `batch`, from now until `done(batch)`."""
        async with self._subscribing:  # batches published at once share the one subscription
            if self._sub is None:
                self._sub = await self._nc.subscribe(f"{self.prefix}.>", cb=self.arrived)
        replies = self._batches[batch] = _Replies()
        return replies

    async def done(self, batch: str) -> None:
        """What comes for `batch` from now on is dropped."""
        self._batches.pop(batch, None)

    async def close(self) -> None:
        if self._sub is not None:
            sub, self._sub = self._sub, None
            await sub.unsubscribe()

    async def arrived(self, msg: Msg) -> None:
        """A reply: to its batch's, when that batch is still open."""
        batch = msg.subject[len(self.prefix) + 1 :].split(".", 1)[0]
        if (replies := self._batches.get(batch)) is not None:
            replies.arrived(msg)


def _connection(js: JetStreamContext) -> NATS:
    """nats-py keeps a context's connection here and exposes it nowhere else."""
    return js._nc


def takes_batches(js: JetStreamContext) -> bool:
    """Whether the connected server knows fast-ingest batches (nats-server 2.14+)."""
    version = _connection(js).connected_server_version
    return (version.major, version.minor) >= (2, 14)


async def publish_batch(
    js: JetStreamContext,
    messages: Sequence[Outgoing],
    *,
    timeout_s: float,
    flow: int = FLOW,
    inbox: ReplyInbox | None = None,
) -> int:
    """Publish `messages` as one fast-ingest batch and return once the server has stored them
    all (its commit PubAck's `count` is their number): the stream sequence of the last. The
    replies come to `inbox` (one of the batch's own when None, removed after it).
    Raises `BatchesUnsupported` when the first message was not taken as a batch (nothing is
    known stored then beyond that message, which a plain publish of it again dedupes),
    `BatchError` when the server reports an error or a gap, TimeoutError after `timeout_s`."""
    if not messages:
        raise ValueError("an empty batch")
    nc = _connection(js)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    own = inbox is None
    replies_to = ReplyInbox(nc) if inbox is None else inbox
    batch = secrets.token_hex(_ID_BYTES)
    replies = await replies_to.open(batch)
    prefix = replies_to.prefix

    async def send(seq: int, op: int, out: Outgoing) -> None:
        await nc.publish(
            out.subject,
            out.payload,
            reply=f"{prefix}.{batch}.{flow}.fail.{seq}.{op}.$FI",
            headers={"Nats-Msg-Id": out.msg_id},
        )

    async def ping(seq: int) -> None:
        await nc.publish(
            messages[0].subject, b"", reply=f"{prefix}.{batch}.{flow}.fail.{seq}.{_PING}.$FI"
        )

    async def next_reply(sent: int) -> _Reply:
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError(f"batch of {len(messages)}: no answer within {timeout_s} s")
            try:
                return await asyncio.wait_for(replies.queue.get(), min(left, PING_AFTER_S))
            except TimeoutError:
                await ping(sent)

    try:
        n = len(messages)
        await send(1, _COMMIT if n == 1 else _START, messages[0])
        first = await next_reply(1)
        if first.error is not None and first.error.err_code == _DISABLED:
            raise BatchesUnsupported(first.error.description)
        if first.error is None and first.type == "" and not first.batch:
            # A server without fast batches stored the message as a plain publish.
            if n == 1:
                return first.seq
            raise BatchesUnsupported("the server answered a batch with a plain PubAck")
        if n == 1 or first.type != "ack":
            return _committed(first, batch, n)
        acked, window = first.seq, max(1, first.msgs)
        for seq in range(2, n + 1):
            while seq > acked + window * OUTSTANDING:
                reply = await next_reply(seq - 1)
                if reply.type == "ack":
                    acked, window = max(acked, reply.seq), max(1, reply.msgs)
                elif reply.type != "gap":
                    # A PubAck before the commit: the batch ended early (an error, a gap).
                    return _committed(reply, batch, n)
            await send(seq, _COMMIT if seq == n else _APPEND, messages[seq - 1])
        return _committed(await _final(next_reply, n), batch, n)
    finally:
        await replies_to.done(batch)
        if own:
            await replies_to.close()


# "batch publish is disabled": the stream was not made with `allow_batched`.
_DISABLED = 10205


async def _final(next_reply: Callable[[int], Awaitable[_Reply]], sent: int) -> _Reply:
    while True:
        reply = await next_reply(sent)
        if reply.type not in ("ack", "gap"):
            return reply


def _committed(ack: _Reply, batch: str, n: int) -> int:
    if ack.error is not None:
        raise BatchError(f"batch not stored: {ack.error.description} ({ack.error.err_code})")
    if ack.batch != batch or ack.count != n:
        raise BatchError(f"batch stored {ack.count} of {n} messages")
    return ack.seq


# A batch of fewer messages costs as many replies as publishing them one by one, and waits a
# round trip for its start.
BATCH_MIN = 3
# A stream that took no batches is asked again after this (a rolling upgrade may turn them on).
RETRY_BATCHES_S = 600.0


class Publisher:
    """Messages to one stream, as one fast-ingest batch when there are at least `BATCH_MIN`
    and the stream takes batches, else one by one (`publish_async`, pipelined). A batch the
    server refuses or ends early (too many batches in flight on the stream, a gap) is published
    again one by one, the ids deduping what it stored: no one else's batches can hold these
    messages back. A stream that takes no batches at all (an older controller wrote its config,
    or the server is older) is asked again only after `RETRY_BATCHES_S`."""

    def __init__(
        self,
        js: JetStreamContext,
        *,
        timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._js = js
        self._timeout_s = timeout_s
        self._clock = clock
        self._refused_at: float | None = None  # when the stream last said it takes no batches
        self._inbox = ReplyInbox(_connection(js))

    @property
    def batches(self) -> bool:
        """Whether the next publish of `BATCH_MIN` or more goes as a batch."""
        if self._refused_at is not None and self._clock() - self._refused_at >= RETRY_BATCHES_S:
            self._refused_at = None
        return self._refused_at is None

    async def publish(self, messages: Sequence[Outgoing]) -> list[BaseException | None]:
        """Each message's outcome, in order: None once stored, else what its publish raised.
        Raises TimeoutError when a batch got no answer within the timeout."""
        if len(messages) >= BATCH_MIN and self.batches:
            try:
                await publish_batch(
                    self._js, messages, timeout_s=self._timeout_s, inbox=self._inbox
                )
                return [None] * len(messages)
            except BatchesUnsupported as e:
                self._refused_at = self._clock()
                log.warning(
                    "stream takes no fast-ingest batches: publishing one by one",
                    why=str(e),
                    asking_again_in_s=RETRY_BATCHES_S,
                )
            except BatchError as e:
                log.warning("batch refused: published again one by one", error=str(e))
        return await self._one_by_one(messages)

    async def _one_by_one(self, messages: Sequence[Outgoing]) -> list[BaseException | None]:
        acks: list[asyncio.Future[PubAck]] = []
        try:
            for out in messages:
                acks.append(
                    await self._js.publish_async(
                        out.subject, out.payload, headers={"Nats-Msg-Id": out.msg_id}
                    )
                )
            settled = await asyncio.wait_for(
                asyncio.gather(*acks, return_exceptions=True), self._timeout_s
            )
        finally:
            for ack in acks:
                if not ack.done():
                    ack.cancel()
        return [e if isinstance(e, BaseException) else None for e in settled]


# A bundle carries at most this many bytes of messages, and at most half the server's
# max_payload (1 MiB by default); a message this large or larger goes alone.
BUNDLE_MAX_BYTES = 256 * 1024


def bundles(
    messages: Sequence[Outgoing], subject: str, max_bytes: int = BUNDLE_MAX_BYTES
) -> list[tuple[Outgoing, list[int]]]:
    """`messages` as few messages on `subject`, each the JSON array of up to `max_bytes` of
    them (`shared.messages.encode_bundle`), with the positions of the messages it carries. A
    message that would go alone keeps its own subject and id. A bundle's id is a hash of its
    messages' ids: only the same messages again are a duplicate to the stream's window."""
    groups: list[list[int]] = []
    size = max_bytes
    for i, out in enumerate(messages):
        if size + len(out.payload) + 1 > max_bytes:
            groups.append([])
            size = 1
        groups[-1].append(i)
        size += len(out.payload) + 1
    sent: list[tuple[Outgoing, list[int]]] = []
    for group in groups:
        if len(group) == 1:
            sent.append((messages[group[0]], group))
            continue
        ids = "\n".join(messages[i].msg_id for i in group).encode()
        digest = hashlib.blake2b(ids, digest_size=16).hexdigest()
        payload = encode_bundle([messages[i].payload for i in group])
        sent.append((Outgoing(subject, payload, f"bundle-{digest}"), group))
    return sent


class Outbox:
    """Messages to one stream from many callers, published together (`Publisher`): what is
    handed in within `linger_s` of the first (or `max_batch` of it, at once) goes out in one
    write; each caller waits for its own message to be stored, and gets its own failure. With
    `bundle_subject`, the messages handed in with `bundle` that go out together are carried by
    as few messages on that subject as `bundles` makes, and each caller gets its bundle's
    outcome."""

    def __init__(
        self,
        js: JetStreamContext,
        *,
        linger_s: float,
        timeout_s: float,
        max_batch: int = 500,
        bundle_subject: str | None = None,
        max_payload: Callable[[], int] = lambda: 2 * BUNDLE_MAX_BYTES,
    ) -> None:
        """`max_payload`: the largest message the server takes now (nats-py's `max_payload`
        from the server's INFO); a bundle is at most half of it."""
        self._publisher = Publisher(js, timeout_s=timeout_s)
        self._linger_s = linger_s
        self._max_batch = max_batch
        self._bundle_subject = bundle_subject
        self._max_payload = max_payload
        self._pending: list[tuple[Outgoing, bool, asyncio.Future[None]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._sends: set[asyncio.Task[None]] = set()

    @property
    def batches(self) -> bool:
        return self._publisher.batches

    async def publish(
        self, subject: str, payload: bytes, msg_id: str, *, bundle: bool = False
    ) -> None:
        """Return once the stream stored the message; raise what its publish raised.
        `bundle`: it may go in a bundle (with a `bundle_subject`)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((Outgoing(subject, payload, msg_id), bundle, done))
        if len(self._pending) >= self._max_batch:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._linger_s, self.flush)
        await done

    def flush(self) -> None:
        """Send what is pending now, without waiting for the linger."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        items, self._pending = self._pending, []
        if items:
            task = asyncio.create_task(self._send(items))
            self._sends.add(task)
            task.add_done_callback(self._sends.discard)

    async def _send(self, items: list[tuple[Outgoing, bool, asyncio.Future[None]]]) -> None:
        bundled = [i for i, (_, bundle, _) in enumerate(items) if bundle]
        sent = [(out, [i]) for i, (out, bundle, _) in enumerate(items) if not bundle]
        if bundled and self._bundle_subject is not None:
            sent += [
                (out, [bundled[k] for k in carried])
                for out, carried in bundles(
                    [items[i][0] for i in bundled],
                    self._bundle_subject,
                    min(BUNDLE_MAX_BYTES, self._max_payload() // 2),
                )
            ]
        else:
            sent += [(items[i][0], [i]) for i in bundled]
        outcomes: list[BaseException | None] = [None] * len(items)
        try:
            for (_, carried), outcome in zip(
                sent, await self._publisher.publish([out for out, _ in sent]), strict=True
            ):
                for i in carried:
                    outcomes[i] = outcome
        except Exception as e:  # every waiting caller gets the failure
            outcomes = [e] * len(items)
        for (_, _, done), outcome in zip(items, outcomes, strict=True):
            if done.done():  # its caller was cancelled
                continue
            if outcome is None:
                done.set_result(None)
            else:
                done.set_exception(outcome)
