"""The receiving addresses this agent takes mail for: the controller's KV bucket `RECEIVERS`
(shared.arrivals), watched. A key that is no receiving local part, or a value that does not
decode, is left out with a log line (no secret in either)."""

import asyncio
import contextlib

import msgspec
import structlog
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from shared.arrivals import RECEIVERS_BUCKET, ReceivingAddress, decode_address, is_local_part

log = structlog.get_logger(__name__)
RETRY_MIN_S, RETRY_MAX_S = 1.0, 30.0


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

    def apply(self, entry: KeyValue.Entry) -> None:
        """One watched change of the bucket."""
        if not is_local_part(entry.key):
            log.warning("receiver_address_key_refused", key_chars=len(entry.key))
            return
        if entry.operation is not None or not entry.value:  # a delete or a purge
            self.remove(entry.key)
            return
        try:
            self.put(entry.key, decode_address(entry.value))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("receiver_address_malformed", error=str(exc)[:200])
            self.remove(entry.key)


async def watch(js: JetStreamContext, book: AddressBook, stop: asyncio.Event) -> None:
    """Keep `book` as the bucket says until `stop`; `book.ready` once the bucket's present
    entries are in. Retries while the bucket is missing or NATS is away (1 s, doubling to 30 s)."""
    wait = RETRY_MIN_S
    while not stop.is_set():
        try:
            kv = await js.key_value(RECEIVERS_BUCKET)
            watcher = await kv.watchall()
        except Exception as exc:  # a missing bucket, NATS away: retried, less often each time
            log.info("receiver_book_waiting", error=repr(exc)[:200], retry_s=wait)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)
            wait = min(RETRY_MAX_S, wait * 2)
            continue
        wait = RETRY_MIN_S
        try:
            async for entry in watcher:
                if entry is None:  # the present entries are all in
                    book.ready.set()
                    continue
                book.apply(entry)
                if stop.is_set():
                    break
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]
