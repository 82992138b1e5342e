"""The receiving addresses this agent takes mail for: the controller's KV bucket `RECEIVERS`
(shared.arrivals), followed as its country's NATS account allows (deploy/nats_conf.py): the
bucket's changes as the controller puts them (`$KV.RECEIVERS.>`), and its present entries read
once (its keys from the stream's info, each key's last entry), the changes that came meanwhile
applied after them. A key that is no receiving local part, or a value that does not decode, is
left out with a log line (no secret in either)."""

import asyncio
import contextlib
from collections.abc import Mapping

import msgspec
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from nats.js.kv import KV_OP

from shared.arrivals import RECEIVERS_BUCKET, ReceivingAddress, decode_address, is_local_part

log = structlog.get_logger(__name__)
RETRY_MIN_S, RETRY_MAX_S = 1.0, 30.0
_STREAM = f"KV_{RECEIVERS_BUCKET}"
_SUBJECTS = f"$KV.{RECEIVERS_BUCKET}.>"
_PREFIX = f"$KV.{RECEIVERS_BUCKET}."


class AddressBook:
    """Local part → the receiving monitor it belongs to."""

    def __init__(self) -> None:
        self._by_local: dict[str, ReceivingAddress] = {}
        self.ready = asyncio.Event()

    def get(self, local_part: str) -> ReceivingAddress | None:
        return self._by_local.get(local_part.lower())

    def put(self, local_part: str, address: ReceivingAddress) -> None:
        self._by_local[local_part.lower()] = address

    def remove(self, local_part: str) -> None:
        self._by_local.pop(local_part.lower(), None)

    def __len__(self) -> int:
        return len(self._by_local)

    def apply(self, key: str, value: bytes | None, operation: str | None = None) -> None:
        """One entry of the bucket: put, or deleted or purged (`operation` `DEL`, `PURGE`)."""
        if not is_local_part(key):
            log.warning("receiver_address_key_refused", key_chars=len(key))
            return
        if operation is not None or not value:  # a delete or a purge
            self.remove(key)
            return
        try:
            self.put(key, decode_address(value))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("receiver_address_malformed", error=str(exc)[:200])
            self.remove(key)

    def apply_msg(self, subject: str, data: bytes, headers: Mapping[str, str] | None) -> None:
        """A message of the bucket's stream (`$KV.RECEIVERS.<key>`)."""
        if not subject.startswith(_PREFIX):
            return
        self.apply(subject[len(_PREFIX) :], data, (headers or {}).get(KV_OP))


async def _present(js: JetStreamContext, book: AddressBook) -> None:
    """Every key's last entry, as the stream holds it now."""
    info = await js.stream_info(_STREAM, subjects_filter=_SUBJECTS)
    for subject in sorted(info.state.subjects or {}):
        try:
            msg = await js.get_last_msg(_STREAM, subject)
        except NotFoundError:
            continue
        book.apply_msg(subject, msg.data or b"", msg.headers)


async def watch(js: JetStreamContext, book: AddressBook, stop: asyncio.Event) -> None:
    """Keep `book` as the bucket says until `stop`; `book.ready` once the bucket's present
    entries are in. Retries while the bucket is missing or NATS is away (1 s, doubling to 30 s)."""
    nc = js._nc  # the connection the JetStream context was made on (nats-py keeps no other)
    wait = RETRY_MIN_S
    while not stop.is_set():
        changes: asyncio.Queue[Msg] = asyncio.Queue()
        sub = None
        try:
            sub = await nc.subscribe(_SUBJECTS, cb=changes.put)
            await _present(js, book)
        except Exception as exc:  # a missing bucket, NATS away: retried, less often each time
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
            log.info("receiver_book_waiting", error=repr(exc)[:200], retry_s=wait)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)
            wait = min(RETRY_MAX_S, wait * 2)
            continue
        wait = RETRY_MIN_S
        book.ready.set()
        reconnects = nc.stats["reconnects"]
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    msg = await asyncio.wait_for(changes.get(), 1.0)
                    book.apply_msg(msg.subject, msg.data, msg.headers)
                if nc.stats["reconnects"] != reconnects or nc.is_closed:
                    break  # changes may have gone by meanwhile: read the present entries again
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
