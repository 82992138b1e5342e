"""`python -m controller streams-move --from URL`: the product's streams, with their consumers,
copied from another NATS server (a single hub) onto NATS_URL's cluster at STREAM_REPLICAS
(controller.runtime.stream_snapshots). Prints a line per stream moved.

The old server's password comes from a file (`--from-password-file`) or the environment
(STREAMS_MOVE_FROM_PASSWORD), never from the command line, which every user of the machine
can read in the process list: a `--from` URL holding one is refused before anything connects.
No line printed shows it."""

import argparse
import asyncio
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError

from controller.runtime.stream_snapshots import StreamMoveError, move_streams
from controller.settings import ControllerSettings
from shared.logging import redact
from shared.settings import ProcessSettings, nats_tls_context

PASSWORD_ENV = "STREAMS_MOVE_FROM_PASSWORD"


class SourceError(Exception):
    """`--from` and its password cannot be used; the text says why (never the password)."""


def source_url(given: str, password_file: str | None, env: Mapping[str, str]) -> str:
    """The old server's URL(s) with the password from `password_file` or PASSWORD_ENV put in
    after each URL's user; `given` itself may hold none."""
    urls = [u.strip() for u in given.split(",") if u.strip()]
    try:
        parts = [urlsplit(u) for u in urls]
        passwords = [p.password for p in parts]
    except ValueError as exc:
        raise SourceError(f"--from is not a URL: {exc}") from None
    if any(p is not None for p in passwords):
        raise SourceError(
            "--from holds a password, which every user of this machine can read in the process"
            " list: give the URL without it and the password in --from-password-file or"
            f" {PASSWORD_ENV}"
        )
    if password_file is not None:
        try:
            lines = Path(password_file).read_text().splitlines()
        except OSError as exc:
            raise SourceError(f"--from-password-file: {exc.strerror}: {password_file}") from None
        password = lines[0] if lines else ""
        if not password:
            raise SourceError(f"--from-password-file {password_file} is empty")
    else:
        password = env.get(PASSWORD_ENV, "")
    if not password:
        return ",".join(urls)
    if any(p.username is None for p in parts):
        raise SourceError(
            "--from needs the user the password belongs to: tls://controller@host:4222"
        )
    return ",".join(
        urlunsplit(
            p._replace(
                netloc=f"{p.username}:{quote(password, safe='')}@{p.netloc.rpartition('@')[2]}"
            )
        )
        for p in parts
    )


async def _quiet(exc: Exception) -> None:
    """A connection's errors end the command with one line (`run`), not a log each."""


async def _connect(url: str, process: ProcessSettings) -> NATS:
    """One try of each server of `url`: the command runs once, by hand, and says why it cannot."""
    nc = NATS()
    await nc.connect(
        servers=[u.strip() for u in url.split(",")],
        tls=nats_tls_context(process),
        allow_reconnect=False,
        max_reconnect_attempts=1,
        connect_timeout=10,
        error_cb=_quiet,
    )
    return nc


async def _move(settings: ControllerSettings, args: argparse.Namespace, source_url: str) -> None:
    source = await _connect(source_url, settings.process)
    try:
        target = await _connect(settings.process.nats_url, settings.process)
        try:
            moved = await move_streams(
                source,
                target,
                settings.streams.stream_replicas,
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


def run(settings: ControllerSettings, args: argparse.Namespace, env: Mapping[str, str]) -> int:
    try:
        url = source_url(args.source, args.from_password_file, env)
    except SourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_move(settings, args, url))
    except StreamMoveError as exc:
        print(redact(f"error: {exc}"), file=sys.stderr)
        return 1
    except (NatsError, OSError, TimeoutError) as exc:
        # A URL that does not answer, a login refused, a server gone mid-way: nothing is
        # changed on the source, and a stream half restored on the target was removed.
        print(redact(f"error: NATS: {type(exc).__name__}: {exc or 'no answer'}"), file=sys.stderr)
        return 1
    return 0
