"""The receiving addresses in the KV bucket `RECEIVERS` (shared.arrivals), made to say what the
monitors table says: one entry per heartbeat monitor that is not disabled, under its address's
local part, naming the monitor and its organization as the opaque `tenant` jobs carry; every
other key deleted, so a deleted or disabled monitor's address is refused at `RCPT` by every
receiver. The ingester role runs `sync` every `SYNC_EVERY_S`."""

from collections.abc import Callable
from typing import Final

import asyncpg
import msgspec
import structlog
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, NoKeysError
from nats.js.kv import KeyValue

from controller.arrivals.watch_store import receiving
from shared.arrivals import (
    RECEIVERS_BUCKET,
    ReceivingAddress,
    decode_address,
    encode,
    is_local_part,
)

log = structlog.get_logger(__name__)

SYNC_EVERY_S: Final = 30.0


async def sync(
    js: JetStreamContext,
    pool: asyncpg.Pool,
    tenant: Callable[[int], str],
    known: dict[str, ReceivingAddress | None] | None = None,
) -> tuple[int, int]:
    """Put the addresses missing or changed and delete the others; (put, deleted). `tenant`:
    an organization's opaque key (controller.scheduling.plan `tenant`). `known`: what this
    process last read or wrote per key, kept across passes, so a key still held is read from
    the bucket once, not every pass (every controller writes the same value for a key)."""
    known = {} if known is None else known
    async with pool.acquire() as conn:
        rows = await receiving(conn)
    wanted = {
        r.local_part: ReceivingAddress(monitor_id=r.public_id, tenant=tenant(r.organization_id))
        for r in rows
        if r.local_part and is_local_part(r.local_part)
    }
    kv = await js.key_value(RECEIVERS_BUCKET)
    try:
        held = set(await kv.keys())
    except NoKeysError:
        held = set()
    for local in set(known) - held:
        del known[local]
    put = deleted = 0
    for local, address in wanted.items():
        if local in held and local not in known:
            known[local] = await _held(kv, local)
        if local not in held or known[local] != address:
            await kv.put(local, encode(address))
            known[local] = address
            put += 1
    for local in held - set(wanted):
        await kv.delete(local)
        known.pop(local, None)
        deleted += 1
    if put or deleted:
        log.info("receiving_addresses_synced", put=put, deleted=deleted, held=len(wanted))
    return put, deleted


async def _held(kv: KeyValue, local: str) -> ReceivingAddress | None:
    """The address the bucket holds under `local`, None when none or unreadable."""
    try:
        entry = await kv.get(local)
    except KeyNotFoundError:
        return None
    if entry.value is None:
        return None
    try:
        return decode_address(entry.value)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
