"""A standing pull request on a durable JetStream consumer, on nats-py's public calls only.

A pull request is a message to the server, and one that ends empty is answered with a status
message: asking again for every few messages, or every second when idle, costs the server
more than delivering what it asks for. So one request is kept open at a time, for `batch`
messages and `expires_s`: what the consumer gets is delivered through it as it comes, and the
next request is sent only once it has ended (all its messages delivered, or the server's status
for it: 408 expired, 404, 409), or when its expiry is past or the connection was re-established
(the server forgets a request whose client went away, without a word).

A take that lingers (the ingester's: a short batch topped up with what arrives within
`linger_s`) waits for its first message with a standing request for one, and gathers the rest
with `no_wait` requests: at once when the consumer already holds the batch (the first
message's `num_pending` says so; a full batch never waits), else when the linger is over, so
that what comes meanwhile waits in the stream and arrives in one delivery instead of waking
the client's loop once per message (a wake-up cost more CPU than a message's parsing). That is
two requests and at most one status per batch.

Never more than one request is open, and each asks for at most what the caller can take when
it is sent, so what arrives never exceeds that, except after a reconnect, when a request the
server still held may deliver beside the new one: callers bound what they keep (the agent's
`within_room`). Each request has a reply subject of its own under one subscription, so the
status of a past request cannot end the current one. No request is sent while disconnected
(nats-py would buffer them and send them all at the reconnect).
"""

import asyncio
import json
from collections import deque
from dataclasses import dataclass

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError
from nats.js import api

from shared.guards import BrokenInvariant

# Statuses that end a pull request without an error: no messages (404), expired (408). 100 is
# an idle heartbeat; any other (409 consumer deleted or leadership change, 503 no responders:
# the consumer or its stream is gone) is an error for the caller.
_ENDED = frozenset({api.StatusCode.NO_MESSAGES, api.StatusCode.REQUEST_TIMEOUT})
# How long past its expiry a request that got no status is still taken to be open.
_GRACE_S = 1.0


class PullError(NatsError):
    """The server answered a pull request with an error status (e.g. the consumer is gone)."""


@dataclass
class _Request:
    reply: str
    remaining: int
    deadline: float  # loop time
    reconnects: int


class StandingPull:
    """Messages of `durable` on `stream`, through one pull request open at a time."""

    def __init__(self, nc: NATS, stream: str, durable: str, *, expires_s: float) -> None:
        self._nc = nc
        self._subject = f"{api.DEFAULT_PREFIX}.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._inbox = nc.new_inbox()
        self._expires_s = expires_s
        # What arrived and was not taken yet; `_waiter` is resolved when a message arrives
        # while `_next` waits (a deque and one future: an asyncio.Queue's bookkeeping per
        # message cost more than the rest of the hand-over).
        self._queue: deque[Msg] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._sub: Subscription | None = None
        self._sent = 0
        self._open: _Request | None = None
        self._error: PullError | None = None  # to raise once what arrived before it is taken
        self._kept: list[Msg] = []  # what arrived while end() waited, for close()

    @property
    def requests_sent(self) -> int:
        return self._sent

    async def _arrived(self, msg: Msg) -> None:
        self._queue.append(msg)
        if (waiter := self._waiter) is not None and not waiter.done():
            waiter.set_result(None)

    async def take(self, batch: int, wait_s: float, *, linger_s: float = 0.0) -> list[Msg]:
        """What has arrived; else the first message within `wait_s`; then, with `linger_s`,
        the rest of `batch` gathered (`_gather`). A request, when one is needed, asks for
        `batch` (less what is in hand), or for one message when it will be gathered after.
        What arrived is returned whole (more than `batch` only after a reconnect, see
        above)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        msgs: list[Msg] = []
        self._take_arrived(msgs)
        while not msgs:
            if (error := self._error) is not None:
                self._error = None
                raise error
            left = deadline - loop.time()
            if left <= 0:
                return msgs
            if not self._nc.is_connected:
                await asyncio.sleep(min(left, 0.1))
                continue
            await self._keep_open(1 if linger_s > 0 else batch)
            if self._open is None:
                raise BrokenInvariant("pulling.StandingPull.take: self._open is unset")
            if (msg := await self._next(min(deadline, self._open.deadline))) is None:
                continue
            self._handle(msg, msgs)
            self._take_arrived(msgs)
        if linger_s > 0:
            await self._gather(batch, loop.time() + linger_s, msgs)
        return msgs

    async def _gather(self, batch: int, until: float, msgs: list[Msg]) -> None:
        """Add to `msgs` up to `batch` in all: what the consumer holds now when that fills the
        batch (as the last message delivered counts it: a full batch never waits), else what
        it holds at `until`, each asked for by one `no_wait` request, so that what arrives
        meanwhile waits in the stream and comes in one delivery, not a wake-up of this loop
        per message."""
        loop = asyncio.get_running_loop()
        waited = False
        while len(msgs) < batch and self._error is None and self._nc.is_connected:
            if self._open is not None:
                return  # a request is still open (after a reconnect): what it brings is taken next
            wanted = batch - len(msgs)
            if msgs[-1].metadata.num_pending < wanted and not waited:
                waited = True
                await asyncio.sleep(max(0.0, until - loop.time()))
                continue
            before = len(msgs)
            try:
                await self._ask_now(wanted, msgs)
            except NatsError:
                return  # what is in hand is taken; the next take asks again
            if waited or len(msgs) == before:
                return

    async def _ask_now(self, batch: int, msgs: list[Msg]) -> None:
        """One `no_wait` request for `batch`: what the consumer holds, up to that, added to
        `msgs` once the request has ended (its status, or all it asked for delivered)."""
        loop = asyncio.get_running_loop()
        if self._sub is None:
            self._sub = await self._nc.subscribe(f"{self._inbox}.*", cb=self._arrived)
        self._sent += 1
        reply = f"{self._inbox}.{self._sent}"
        deadline = loop.time() + _GRACE_S
        request = _Request(reply, batch, deadline, int(self._nc.stats["reconnects"]))
        self._open = request
        # no `expires`: with it the server would keep the request open instead
        await self._nc.publish(self._subject, b'{"batch":%d,"no_wait":true}' % batch, reply)
        while self._open is request:
            if (msg := await self._next(deadline)) is None:
                self._open = None  # no answer (the connection was lost): the next asks again
                return
            self._handle(msg, msgs)
            self._take_arrived(msgs)

    async def _next(self, until: float) -> Msg | None:
        """The next message to arrive by `until` (loop time), else None. A timeout scope, not
        `wait_for`, which runs the wait as a task of its own per message."""
        if not self._queue:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout_at(until):
                    await self._waiter
            except TimeoutError:
                return None
            finally:
                self._waiter = None
        return self._queue.popleft()

    async def _keep_open(self, batch: int) -> None:
        """Send a request for `batch` unless one is open."""
        loop = asyncio.get_running_loop()
        reconnects = int(self._nc.stats["reconnects"])
        if self._open is not None and (
            self._open.deadline <= loop.time() or self._open.reconnects != reconnects
        ):
            self._open = None
        if self._open is not None:
            return
        if self._sub is None:
            self._sub = await self._nc.subscribe(f"{self._inbox}.*", cb=self._arrived)
        self._sent += 1
        reply = f"{self._inbox}.{self._sent}"
        request = {"batch": batch, "expires": int(self._expires_s * 1e9)}
        self._open = _Request(reply, batch, loop.time() + self._expires_s + _GRACE_S, reconnects)
        await self._nc.publish(self._subject, json.dumps(request).encode(), reply)

    def _take_arrived(self, msgs: list[Msg]) -> None:
        while self._queue:
            self._handle(self._queue.popleft(), msgs)

    def _handle(self, msg: Msg, msgs: list[Msg]) -> None:
        status = msg.headers.get(api.Header.STATUS) if msg.headers else None
        current = self._open
        if status is None:
            msgs.append(msg)
            if current is not None:
                current.remaining -= 1
                if current.remaining <= 0:
                    self._open = None
            return
        if current is None or msg.subject != current.reply:
            return  # a past request's status, or an idle heartbeat
        if status == api.StatusCode.CONTROL_MESSAGE:
            return
        self._open = None
        if status not in _ENDED:
            description = msg.headers.get(api.Header.DESCRIPTION, "") if msg.headers else ""
            self._error = PullError(f"pull request failed: {status} {description}")

    async def end(self, bound_s: float) -> None:
        """Wait until the open request has ended: all it asked for delivered, or its own
        status (the one answer attributable to it, on its own reply subject), or `bound_s`
        past the time this client stops counting on it (its expiry plus a grace), or the
        connection lost or re-established (the server forgets a request whose client went
        away). The server times a request from when it receives it, so it outlives the take
        that sent it by the client-to-server latency, and a subscriber that leaves before its
        end cannot stop it taking a message (through an account import the server does not
        see the interest go). What arrives meanwhile is kept for `close()`."""
        loop = asyncio.get_running_loop()
        request = self._open
        if request is None:
            return
        until = request.deadline + bound_s
        while self._open is request and self._nc.is_connected:
            if request.reconnects != int(self._nc.stats["reconnects"]):
                break
            if until <= loop.time():
                break
            if (msg := await self._next(min(until, loop.time() + 0.1))) is not None:
                self._handle(msg, self._kept)
        self._error = None  # nobody takes again

    async def close(self) -> list[Msg]:
        """Unsubscribe (the server drops a request nobody listens to any more, when it sees
        the interest go: `end()` first to be sure) and return what had arrived and was not
        taken, for the caller to hand back."""
        if self._sub is not None:
            sub, self._sub = self._sub, None
            await sub.unsubscribe()
        self._open = None
        msgs, self._kept = self._kept, []
        while self._queue:
            msg = self._queue.popleft()
            if not (msg.headers and msg.headers.get(api.Header.STATUS)):
                msgs.append(msg)
        return msgs
