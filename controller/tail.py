"""`python -m controller tail`: the live result stream, one line per result, filtered by
country, monitor and status.

A core subscription on `mon.results.CC.TYPE.MONITOR`, so any NATS user that may read results
can run it, the read-only `subscriber` too. Country and monitor narrow the subject (the server
filters); the status is filtered here. Connects to NATS_URL (default nats://127.0.0.1:4222,
`make run`'s), verifying a `tls://` server with NATS_TLS_CA_FILE when set.
"""

import argparse
import asyncio
import re
import ssl
import sys
from collections.abc import Callable, Mapping
from typing import get_args
from uuid import UUID

import msgspec
import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from shared.messages import CheckResult, Status, decode_result

DEFAULT_NATS = "nats://127.0.0.1:4222"


def _country(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z]{2}", value):
        raise argparse.ArgumentTypeError("an ISO 3166-1 alpha-2 code like DE")
    return value.upper()


def _monitor(value: str) -> str:
    try:
        return str(UUID(value))
    except ValueError:
        raise argparse.ArgumentTypeError("the monitor's publicId (a UUID)") from None


def add_command(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    cmd = sub.add_parser("tail", help="print check results as they arrive (Ctrl-C stops)")
    cmd.add_argument("--country", type=_country, help="only results from this country")
    cmd.add_argument("--monitor", type=_monitor, help="only this monitor (its publicId)")
    cmd.add_argument(
        "--status",
        choices=get_args(Status),
        help="only up, only down or only inconclusive results (the agent's own path failed)",
    )
    cmd.add_argument("--nats", default=None, help=f"NATS URL (default: NATS_URL or {DEFAULT_NATS})")


def subject(country: str | None, monitor: str | None) -> str:
    return f"mon.results.{country or '*'}.*.{monitor or '*'}"


def line(result: CheckResult) -> str:
    ms = "-" if result.response_time_ms is None else f"{result.response_time_ms:.0f}ms"
    status = result.status if result.error_kind is None else f"{result.status}/{result.error_kind}"
    return (
        f"{result.finished_at} {result.country} {result.monitor_type:<4} {result.monitor_id}"
        f" {status} {ms} {result.message}"
    )


async def follow(
    nc: NATS,
    country: str | None,
    monitor: str | None,
    status: str | None,
    say: Callable[[str], None],
    stop: asyncio.Event,
) -> None:
    """Print each matching result until `stop`; a message that is no result is reported on
    stderr and skipped."""

    async def on_result(msg: Msg) -> None:
        try:
            result = decode_result(msg.data)
        except msgspec.DecodeError as exc:
            print(f"not a result on {msg.subject}: {exc}", file=sys.stderr)
            return
        if status is None or result.status == status:
            say(line(result))

    sub = await nc.subscribe(subject(country, monitor), cb=on_result)
    try:
        await stop.wait()
    finally:
        await sub.unsubscribe()


def main(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    url = args.nats or env.get("NATS_URL") or DEFAULT_NATS
    ca = env.get("NATS_TLS_CA_FILE")
    tls = ssl.create_default_context(cafile=ca) if ca else None

    async def run() -> None:
        nc = await nats.connect(url.split(","), tls=tls, max_reconnect_attempts=-1)
        try:
            await follow(nc, args.country, args.monitor, args.status, print, asyncio.Event())
        finally:
            await nc.close()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        return 0
    except (OSError, nats.errors.Error) as exc:
        print(f"error: cannot follow results on {url}: {exc}", file=sys.stderr)
        return 1
    return 0
