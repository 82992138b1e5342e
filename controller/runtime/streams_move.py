"""`python -m controller streams-move --from URL`: the product's streams, with their consumers,
copied from another NATS server (a single hub) onto NATS_URL's cluster at STREAM_REPLICAS
(shared.stream_move). Prints a line per stream moved."""

import argparse
import asyncio
import sys
from pathlib import Path

from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError

from shared.settings import ControllerSettings, nats_tls_context
from shared.stream_move import StreamMoveError, move_streams


async def _quiet(exc: Exception) -> None:
    """A connection's errors end the command with one line (`run`), not a log each."""


async def _connect(url: str, settings: ControllerSettings) -> NATS:
    """One try of each server of `url`: the command runs once, by hand, and says why it cannot."""
    nc = NATS()
    await nc.connect(
        servers=[u.strip() for u in url.split(",")],
        tls=nats_tls_context(settings),
        allow_reconnect=False,
        max_reconnect_attempts=1,
        connect_timeout=10,
        error_cb=_quiet,
    )
    return nc


async def _move(settings: ControllerSettings, args: argparse.Namespace) -> None:
    source = await _connect(args.source, settings)
    try:
        target = await _connect(settings.nats_url, settings)
        try:
            moved = await move_streams(
                source,
                target,
                settings.stream_replicas,
                workdir=Path(args.work_dir) if args.work_dir else None,
            )
        finally:
            await target.close()
    finally:
        await source.close()
    for m in moved:
        print(
            f"{m.stream}: {m.messages} messages (sequences {m.first_seq}-{m.last_seq}),"
            f" consumers {', '.join(m.consumers) or 'none'}, on {m.replicas} servers"
        )
    if not moved:
        print("the source has none of the streams JOBS, RESULTS, EVENTS: nothing moved")


def run(settings: ControllerSettings, args: argparse.Namespace) -> int:
    try:
        asyncio.run(_move(settings, args))
    except StreamMoveError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (NatsError, OSError, TimeoutError) as exc:
        # A URL that does not answer, a login refused, a server gone mid-way: nothing is
        # changed on the source, and a stream half restored on the target was removed.
        print(f"error: NATS: {type(exc).__name__}: {exc or 'no answer'}", file=sys.stderr)
        return 1
    return 0
