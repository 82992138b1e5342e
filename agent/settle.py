"""Settling a job's message with JetStream (ack, nak, term, in_progress): one attempt, and a
log line when the server cannot be reached (the job then comes back after the ack wait)."""

from collections.abc import Awaitable, Callable

import nats.errors
import structlog

log = structlog.get_logger(__name__)
# What a NATS call raises when the server cannot be reached or does not answer in time.
NATS_ERRORS = (nats.errors.Error, TimeoutError, OSError)


async def settle(action: Callable[..., Awaitable[None]], *args: float) -> None:
    """ack/nak/term; if it cannot reach the server, the job comes back after ack_wait."""
    try:
        await action(*args)
    except NATS_ERRORS as exc:
        log.warning("job_settle_failed", action=getattr(action, "__name__", "?"), error=repr(exc))
