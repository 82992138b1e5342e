"""Moving the product's streams from one JetStream to another, every message and consumer kept.

A JetStream server's streams do not become a cluster's when it joins one (the cluster's meta
layer has no record of them), so a deployment on a single hub moves to the 3-node cluster by
copying: each stream's JetStream snapshot (`$JS.API.STREAM.SNAPSHOT`: the store's files, its
durable consumers and their state) is taken from the old server and restored onto the cluster
(`$JS.API.STREAM.RESTORE`) on `replicas` servers. A restored stream has the same messages under
the same sequence numbers and timestamps (JOBS still ages them out on time), and `jobs-CC` and
`ingest` deliver on from where they were: nothing stored is delivered twice, nothing pending is
skipped. `python -m controller streams-move` runs it (docs/operating.md, "Moving a single hub to
the cluster").

The source must be quiet meanwhile (controllers and agents stopped): a message published or a
consumer's ack taken by the source after its snapshot would not reach the cluster. The move
checks it: each source stream and consumer is read again once its copy is restored, and a
difference fails the move (its copies on the target removed, so it may run again) with nothing
changed on the source. A stream the target already has is refused unless it is empty (a
controller started on the cluster before the move made it), which is replaced. A cluster
electing a new leader meanwhile (a node starved on a loaded host) is waited for (`_ask`).
"""

import asyncio
import json
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import msgspec
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from shared.arrivals import RECEIVERS_BUCKET
from shared.json_value import Json, JsonObject
from shared.subjects import ARRIVALS_STREAM, EVENTS_STREAM, JOBS_STREAM, RESULTS_STREAM

log = structlog.get_logger(__name__)

# The receivers' addresses live in a KV bucket, a stream named `KV_<bucket>`.
PRODUCT_STREAMS = (
    JOBS_STREAM,
    RESULTS_STREAM,
    EVENTS_STREAM,
    ARRIVALS_STREAM,
    f"KV_{RECEIVERS_BUCKET}",
)
# Bytes per snapshot message and per restore request (JetStream's own tools use 128-512 KiB).
CHUNK_BYTES = 256 * 1024
# One JetStream API call, on a cluster that may have formed a moment ago on a busy host; the
# last restore request waits for the server to unpack the whole snapshot and place it, which
# takes longer the larger the stream (RESTORE_DONE_TIMEOUT_S).
API_TIMEOUT_S = 30.0
# A cluster without a leader: how long the move waits for one (an election takes 4-9 s, and
# rounds may repeat on a starved host), asking again every RETRY_S; a request whose repeat
# does no harm is sent again when unanswered for RESEND_S (`_ask`).
LEADER_WAIT_S = 60.0
RETRY_S = 0.25
# The least one request waits for its answer.
REQUEST_MIN_S = 1.0
RESEND_S = 5.0
# JetStream's err_codes the move acts on: "temporarily unavailable" (no leader), "no suitable
# peers" (a replica's node away), "already in use, cannot restore", "stream not found".
UNAVAILABLE = 10008
NO_PEERS = 10005
RESTORING = 10130
NOT_FOUND = 10059
RETRIED = (UNAVAILABLE, NO_PEERS, RESTORING)
NO_RESPONDERS = "503"
RESTORE_DONE_TIMEOUT_S = 3600.0
# How long a cluster may take to place a restored stream's consumers.
CONSUMERS_PLACED_S = 30.0
# How long a snapshot may go without a chunk before the move gives up on it.
CHUNK_SILENCE_S = 30.0


class StreamMoveError(Exception):
    """The move cannot go on; the message says why and what to do."""


@dataclass(frozen=True)
class Moved:
    """One stream as restored on the target: what the source had, found again."""

    stream: str
    messages: int
    first_seq: int
    last_seq: int
    consumers: tuple[str, ...]
    replicas: int


class _ApiError(msgspec.Struct):
    """A JetStream API error answer's `error`."""

    code: int = 0
    err_code: int | None = None
    description: str | None = None


class _Answer(msgspec.Struct):
    """A JetStream API answer: an `error` when the request failed."""

    error: _ApiError | None = None


class StreamState(msgspec.Struct):
    """The part of a stream's state the move compares."""

    messages: int = 0
    first_seq: int = 0
    last_seq: int = 0
    first_ts: str = ""


class _ReplicasConfig(msgspec.Struct):
    num_replicas: int = 1


class StreamInfo(_Answer):
    """`$JS.API.STREAM.INFO`'s answer: the stream's state and replicas."""

    config: _ReplicasConfig = msgspec.field(default_factory=_ReplicasConfig)
    state: StreamState = msgspec.field(default_factory=StreamState)


class _SequenceInfo(msgspec.Struct):
    stream_seq: int = 0


class _ConsumerInfo(msgspec.Struct):
    name: str
    delivered: _SequenceInfo = msgspec.field(default_factory=_SequenceInfo)
    ack_floor: _SequenceInfo = msgspec.field(default_factory=_SequenceInfo)
    num_ack_pending: int = 0


class _ConsumerPage(_Answer):
    """`$JS.API.CONSUMER.LIST`'s answer: one page of the stream's consumers; a cluster names
    apart those whose servers did not answer in time (`missing`) or are offline."""

    consumers: list[_ConsumerInfo] | None = None
    missing: list[str] | None = None
    offline: dict[str, str] | None = None
    total: int = 0


class _SnapshotAnswer(_Answer):
    """`$JS.API.STREAM.SNAPSHOT`'s answer: the stream's config and state, kept as sent to be
    handed back to the restore."""

    config: msgspec.Raw = msgspec.Raw(b"{}")
    state: msgspec.Raw = msgspec.Raw(b"{}")


class _RestoreStarted(_Answer):
    """`$JS.API.STREAM.RESTORE`'s answer: where to send the snapshot's chunks."""

    deliver_subject: str = ""


class _RestoreDone(_Answer):
    """The answer to a restore's last (empty) chunk: the restored stream's state."""

    state: StreamState | None = None


@dataclass
class SnapshotMeta:
    """A snapshot's stream config and state as JetStream sent them (every field, handed back to
    the restore), and the state's span the move compares."""

    config: JsonObject
    state: JsonObject
    span: StreamState


A = TypeVar("A", bound=_Answer)


def _decoded(data: bytes, into: type[A]) -> A:
    return msgspec.json.decode(data or b"{}", type=into)


async def _ask(nc: NATS, subject: str, payload: bytes, *, repeatable: bool = False) -> Msg:
    """A JetStream API request, sent again until answered or LEADER_WAIT_S, every send
    answered on one inbox so that the first answer to any of them counts.

    A cluster electing a leader (a node lost, or starved for seconds on a loaded host) answers
    no one for a moment (no responders, or silence while the others still follow the starved
    leader), then `temporarily unavailable` (UNAVAILABLE), or `no suitable peers` (NO_PEERS)
    while a replica's node is away: nothing was done, and the request is sent again after
    RETRY_S. A `repeatable` request (a read, a restore's start, a delete) unanswered within
    RESEND_S is sent again too, its earlier sends' answers still awaited (a cluster's listing
    waits seconds for a silent node before it answers); any other waits API_TIMEOUT_S. A
    restore sent again may be refused as `already in use` (RESTORING) by the restore an
    earlier send began: that send's answer is awaited, and a restore sent no chunk is dropped
    by the server after 5 s, so a later send starts afresh."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LEADER_WAIT_S
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    try:
        while True:
            await nc.publish(subject, payload, reply=inbox)
            wait = RESEND_S if repeatable else API_TIMEOUT_S
            resend = loop.time() + wait
            while True:
                left = min(resend, deadline) if repeatable else resend
                try:
                    msg = await sub.next_msg(timeout=max(left - loop.time(), 0.01))
                except NatsTimeoutError:
                    if not repeatable or loop.time() >= deadline:
                        raise
                    break
                code = _retried_code(msg)
                if code is None or loop.time() >= deadline:
                    if _no_responders(msg):
                        raise NoRespondersError
                    return msg
                if code != RESTORING:
                    log.info("jetstream_leaderless_waiting", subject=subject, err_code=code)
                    await asyncio.sleep(RETRY_S)
                    break
    finally:
        await sub.unsubscribe()


def _no_responders(msg: Msg) -> bool:
    return not msg.data and (msg.headers or {}).get("Status") == NO_RESPONDERS


def _retried_code(msg: Msg) -> int | None:
    """The err_code of an answer that asks for the request again (no responders counts as
    UNAVAILABLE); None for any other answer."""
    if _no_responders(msg):
        return UNAVAILABLE
    error = _decoded(msg.data, _Answer).error
    code = error.err_code if error is not None else None
    return code if code in RETRIED else None


async def _api(
    nc: NATS,
    subject: str,
    into: type[A],
    body: JsonObject | None = None,
    *,
    repeatable: bool = False,
) -> A:
    """One JetStream API request; its answer, StreamMoveError for an error answer."""
    payload = json.dumps(body).encode() if body is not None else b""
    msg = await _ask(nc, subject, payload, repeatable=repeatable)
    answer = _decoded(msg.data, into)
    if error := answer.error:
        raise StreamMoveError(f"{subject}: {_described(error)} (err_code {error.err_code})")
    return answer


def _described(error: _ApiError) -> str:
    return error.description or msgspec.json.encode(error).decode()


async def stream_info(nc: NATS, stream: str) -> StreamInfo | None:
    """The stream's info as JetStream sends it; None when there is no such stream."""
    msg = await _ask(nc, f"$JS.API.STREAM.INFO.{stream}", b"", repeatable=True)
    answer = _decoded(msg.data, StreamInfo)
    if error := answer.error:
        if error.code == 404:
            return None
        raise StreamMoveError(f"stream info {stream}: {_described(error)}")
    return answer


async def consumer_states(nc: NATS, stream: str) -> dict[str, tuple[int, int, int]]:
    """Each durable consumer of the stream whose server answered: (last delivered, ack floor,
    pending acks)."""
    states: dict[str, tuple[int, int, int]] = {}
    offset = 0
    while True:
        page = await _api(
            nc,
            f"$JS.API.CONSUMER.LIST.{stream}",
            _ConsumerPage,
            {"offset": offset},
            repeatable=True,
        )
        infos = page.consumers or []
        unanswered = set(page.missing or ()) | set(page.offline or {})
        for info in infos:
            if info.name not in unanswered:
                states[info.name] = (
                    info.delivered.stream_seq,
                    info.ack_floor.stream_seq,
                    info.num_ack_pending,
                )
        listed = len(infos) + len(unanswered - {info.name for info in infos})
        offset += listed
        if not listed or offset >= page.total:
            return states


async def snapshot(nc: NATS, stream: str, into: Path) -> SnapshotMeta:
    """Write the stream's snapshot (messages and durable consumers) to `into`; return the
    stream's config and state the snapshot holds."""
    inbox = nc.new_inbox()
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    received = asyncio.Event()
    with into.open("wb") as out:

        async def chunk(msg: Msg) -> None:
            received.set()
            if not msg.data:  # the end: an empty message, an error in its headers if any
                if not done.done():
                    status = (msg.headers or {}).get("Status")
                    error = StreamMoveError(f"snapshot of {stream} failed: {msg.headers}")
                    if status and status not in ("200", "204"):
                        done.set_exception(error)
                    else:
                        done.set_result(None)
                return
            out.write(msg.data)
            if msg.reply:  # flow control: the server sends on once chunks are acked
                await nc.publish(msg.reply, b"")

        sub = await nc.subscribe(inbox, cb=chunk, pending_msgs_limit=-1, pending_bytes_limit=-1)
        try:
            answer = await _api(
                nc,
                f"$JS.API.STREAM.SNAPSHOT.{stream}",
                _SnapshotAnswer,
                {"deliver_subject": inbox, "no_consumers": False, "chunk_size": CHUNK_BYTES},
            )
            while not done.done():
                received.clear()
                try:
                    await asyncio.wait_for(received.wait(), CHUNK_SILENCE_S)
                except TimeoutError:
                    raise StreamMoveError(
                        f"snapshot of {stream}: no data for {CHUNK_SILENCE_S:.0f} s"
                    ) from None
            await done
        finally:
            await sub.unsubscribe()
    return SnapshotMeta(
        config=_object(answer.config),
        state=_object(answer.state),
        span=msgspec.json.decode(answer.state, type=StreamState),
    )


def _object(raw: msgspec.Raw) -> JsonObject:
    """A JSON object kept as sent (every field, of any shape), to be sent back."""
    value: Json = json.loads(bytes(raw))
    if not isinstance(value, dict):
        raise StreamMoveError(f"a JetStream API answer holds {value!r} for an object")
    return value


async def restore(nc: NATS, meta: SnapshotMeta, data: Path) -> StreamState:
    """Restore a snapshot written by `snapshot` (its config as given in `meta`); return the
    restored stream's state."""
    name = meta.config.get("name")
    started = await _api(
        nc,
        f"$JS.API.STREAM.RESTORE.{name}",
        _RestoreStarted,
        {"config": meta.config, "state": meta.state},
        repeatable=True,
    )
    deliver = started.deliver_subject
    with data.open("rb") as src:
        while chunk := src.read(CHUNK_BYTES):
            reply = await served(nc, deliver, chunk, API_TIMEOUT_S)
            if reply.data:
                _raise_error(reply.data, f"restore of {name}")
    reply = await served(nc, deliver, b"", RESTORE_DONE_TIMEOUT_S)
    return _raise_error(reply.data, f"restore of {name}").state or StreamState()


async def served(nc: NATS, subject: str, data: bytes, within_s: float) -> Msg:
    """A request sent again while its subject has no responder, for `within_s`: a restore's
    deliver subject may be served a moment after the start was answered (a loaded cluster's
    stream leader subscribes it then). A request nobody received is safe to send again. No
    attempt starts that could not wait REQUEST_MIN_S for its answer (a "no responders" status
    takes a round trip to the server): the last one may end that much after `within_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        try:
            return await nc.request(
                subject, data, timeout=max(deadline - loop.time(), REQUEST_MIN_S)
            )
        except NoRespondersError:
            if loop.time() + RETRY_S >= deadline:
                raise
            await asyncio.sleep(RETRY_S)


def _raise_error(data: bytes, what: str) -> _RestoreDone:
    if data.startswith(b"-ERR"):
        raise StreamMoveError(f"{what}: {data.decode(errors='replace')}")
    answer = _decoded(data, _RestoreDone)
    if error := answer.error:
        raise StreamMoveError(f"{what}: {_described(error)}")
    return answer


async def _cleared_target(target: NATS, stream: str) -> None:
    """Refuse a target stream that holds messages; remove an empty one."""
    info = await stream_info(target, stream)
    if info is None:
        return
    state = info.state
    if state.messages or state.last_seq:
        raise StreamMoveError(
            f"the target already has stream {stream} with {state.messages} messages"
            f" (last sequence {state.last_seq}): the move only fills a cluster that"
            " has none of the product's streams, or empty ones. Delete it there (`nats stream"
            f" rm {stream}`) if its messages are not needed"
        )
    await _deleted(target, stream)
    log.info("stream_move_empty_target_replaced", stream=stream)


async def _deleted(nc: NATS, stream: str) -> None:
    """Delete the stream; one already gone (a delete sent again) is deleted too."""
    msg = await _ask(nc, f"$JS.API.STREAM.DELETE.{stream}", b"", repeatable=True)
    error = _decoded(msg.data, _Answer).error
    if error is not None and error.err_code != NOT_FOUND:
        raise StreamMoveError(f"stream delete {stream}: {_described(error)}")


async def move_stream(
    source: NATS, target: NATS, stream: str, replicas: int, workdir: Path
) -> Moved | None:
    """Move one stream (None when the source has none of that name)."""
    if await stream_info(source, stream) is None:
        return None
    await _cleared_target(target, stream)
    consumers_before = await consumer_states(source, stream)
    data = workdir / f"{stream}.tar.s2"
    meta = await snapshot(source, stream, data)
    meta.config["num_replicas"] = replicas
    try:
        state = await restore(target, meta, data)
        moved = await _checked(source, target, stream, meta.span, consumers_before, state)
    except BaseException:
        # Nothing half-moved stays behind: a new run starts from an empty target.
        if await stream_info(target, stream) is not None:
            await _deleted(target, stream)
        raise
    finally:
        data.unlink(missing_ok=True)
    log.info(
        "stream_moved",
        stream=stream,
        messages=moved.messages,
        last_seq=moved.last_seq,
        consumers=len(moved.consumers),
        replicas=replicas,
    )
    return moved


def _span(state: StreamState) -> tuple[int, int, int]:
    """Messages, first and last sequence; an empty stream's first sequence is no message's
    (JetStream reports 0 or the next one) and counts as 0."""
    return (state.messages, state.first_seq if state.messages else 0, state.last_seq)


async def _checked(
    source: NATS,
    target: NATS,
    stream: str,
    snapped: StreamState,
    consumers_before: dict[str, tuple[int, int, int]],
    restored: StreamState,
) -> Moved:
    """The restored stream holds what the source's snapshot held, and the source took no
    write (message, consumer, ack) since its consumers were read before the snapshot."""
    source_now = await stream_info(source, stream)
    consumers_now = await consumer_states(source, stream)
    if (
        source_now is None
        or _span(source_now.state) != _span(snapped)
        or consumers_now != consumers_before
    ):
        raise StreamMoveError(
            f"the source's stream {stream} changed during the move (a publisher, agent or"
            " controller still connected to it): stop every controller and agent, then run the"
            " move again; its copy on the target was removed"
        )
    if _span(restored) != _span(snapped):
        raise StreamMoveError(
            f"stream {stream} restored with {_span(restored)} (messages, first, last sequence)"
            f" where the source has {_span(snapped)}"
        )
    # A cluster places the restored stream's consumers after answering the restore.
    want = {name: state[:2] for name, state in consumers_before.items()}
    deadline = asyncio.get_running_loop().time() + CONSUMERS_PLACED_S
    while True:
        on_target = await consumer_states(target, stream)
        if {name: state[:2] for name, state in on_target.items()} == want:
            break
        if asyncio.get_running_loop().time() > deadline:
            raise StreamMoveError(
                f"stream {stream}'s consumers restored as {on_target}, the source has"
                f" {consumers_before}"
            )
        await asyncio.sleep(0.2)
    messages, first, last = _span(restored)
    info = await stream_info(target, stream)
    replicas = info.config.num_replicas if info is not None else 1
    return Moved(stream, messages, first, last, tuple(sorted(on_target)), replicas)


async def move_streams(
    source: NATS,
    target: NATS,
    replicas: int,
    streams: Iterable[str] = PRODUCT_STREAMS,
    workdir: Path | None = None,
) -> list[Moved]:
    """Move each of `streams` the source has onto the target on `replicas` servers, one after
    the other, the snapshots kept in `workdir` (a temporary directory when None) only until
    restored."""
    if workdir is not None:
        await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
        return [
            m for s in streams if (m := await move_stream(source, target, s, replicas, workdir))
        ]
    with tempfile.TemporaryDirectory(prefix="mailprobe-streams-") as tmp:
        return await move_streams(source, target, replicas, streams, Path(tmp))
