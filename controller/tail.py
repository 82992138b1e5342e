"""`python -m controller tail`: the live result stream, one line per result, filtered by
country, monitor and status.

A core subscription on `mon.results.CC.TYPE.MONITOR` and on `mon.results.CC.bundle` (the
results agents publish together under RESULT_BUNDLES), so any NATS user that may read
results can run it, the read-only `subscriber` too. Country and monitor narrow the subjects (the
server filters; a bundle's results by monitor here); the status is filtered here. Connects to
`--nats`, else NATS_URL, else the URL `make run` wrote in `.run/` (it moves NATS off 4222 when
that port is busy), else nats://127.0.0.1:4222, verifying a `tls://` server with
NATS_TLS_CA_FILE when set. It tries forever, at start and after an outage, saying on stderr once
that the server is out of reach and once that it is back (`connect`).

`--monitor` takes a public id, or a name: a name is looked up through the API (MAILPROBE_API, a
token in MAILPROBE_TOKEN, as `apply`), refused when no monitor or several have it.

Each line shows the monitor's name, quoted as a JSON string (a name is a user's text: its
control characters are escaped, never sent to the terminal), and its publicId only with `--ids`
or when its name is not known. Names are asked of the API with MAILPROBE_TOKEN, once per monitor
(`Names`); without a token, or with an API that does not answer at start, the lines show ids and
stderr says why once.
"""

import argparse
import asyncio
import json
import ssl
import sys
from collections.abc import Awaitable, Callable, Mapping
from uuid import UUID

import httpx
import msgspec
import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from controller.ascode import api_url, find_monitor, run_dir, secret_env
from controller.ascode.client import api_client
from controller.cli import DEFAULT_NATS
from shared.logging import redact
from shared.messages import CheckResult, decode_result, result_parts
from shared.subjects import RESULTS_BUNDLE_TOKEN


def _is_public_id(value: str) -> bool:
    try:
        UUID(value)
    except ValueError:
        return False
    return True


def resolve(monitor: str | None, args: argparse.Namespace, env: Mapping[str, str]) -> str | None:
    """The public id `--monitor` means: itself when it is one, else the one monitor of that
    name the API shows the token. TailError saying why not."""
    if monitor is None or _is_public_id(monitor):
        return monitor
    api = api_url.target(args.api, env, insecure_http=args.insecure_http)
    if isinstance(api, str):
        raise TailError(api)
    if not env.get(secret_env.TOKEN_ENV):
        raise TailError(
            f"--monitor {monitor!r} is a name, which the API looks up: set"
            f" {secret_env.TOKEN_ENV} to an API token, or give the monitor's publicId"
        )

    async def ask() -> str:
        async with api_client(api, env) as client:
            return await find_monitor.public_id_of(client, monitor)

    try:
        return asyncio.run(ask())
    except find_monitor.NotFound as exc:
        raise TailError(str(exc)) from None
    except httpx.HTTPError as exc:
        raise TailError(f"cannot ask {api.url} for monitor {monitor!r}: {exc}") from None


class TailError(Exception):
    """The command cannot start; the text says why."""


def subject(country: str | None, monitor: str | None) -> str:
    return f"mon.results.{country or '*'}.*.{monitor or '*'}"


def bundles_subject(country: str | None) -> str:
    return f"mon.results.{country or '*'}.{RESULTS_BUNDLE_TOKEN}"


def line(result: CheckResult, name: str | None = None, ids: bool = False) -> str:
    """One result as a line: its monitor by name, by publicId too with `ids`, by publicId alone
    when the name is not known."""
    ms = "-" if result.response_time_ms is None else f"{result.response_time_ms:.0f}ms"
    status = result.status if result.error_kind is None else f"{result.status}/{result.error_kind}"
    shown = [] if name is not None and not ids else [result.monitor_id]
    if name is not None:
        shown.append(json.dumps(name, ensure_ascii=False))
    return (
        f"{result.finished_at} {result.country} {result.monitor_type:<4} {' '.join(shown)}"
        f" {status} {ms} {result.message}"
    )


NAMES_KEPT = 10_000  # names remembered at most; past it the memory starts again


class Names:
    """Monitor names by public id, each asked once (a monitor that has none for this token,
    or whose asking failed, is remembered as such)."""

    def __init__(self, ask: Callable[[str, str], Awaitable[str | None]]) -> None:
        self._ask = ask  # (stored monitor type, public id) → its name
        self._known: dict[str, str | None] = {}

    async def of(self, monitor_type: str, public_id: str) -> str | None:
        if public_id in self._known:
            return self._known[public_id]
        try:
            name = await self._ask(monitor_type, public_id)
        except (httpx.HTTPError, ValueError):
            name = None
        if len(self._known) >= NAMES_KEPT:
            self._known.clear()
        self._known[public_id] = name
        return name


async def api_names(
    args: argparse.Namespace, env: Mapping[str, str]
) -> tuple[Names, httpx.AsyncClient] | str:
    """Names asked of the API with MAILPROBE_TOKEN, and the client to close; or why there are
    none: no token, or an API that does not answer a first listing."""
    if not env.get(secret_env.TOKEN_ENV):
        return f"set {secret_env.TOKEN_ENV} to an API token to see them"
    api = api_url.target(args.api, env, insecure_http=args.insecure_http)
    if isinstance(api, str):
        return api
    client = api_client(api, env)
    try:
        r = await client.get(find_monitor.FIRST_LIST, params={"perPage": 1})
        r.raise_for_status()
    except (httpx.HTTPError, SystemExit) as exc:  # SystemExit: the API did not prove its key
        await client.aclose()
        return f"cannot list monitors at {api.url}: {exc}"

    async def ask(monitor_type: str, public_id: str) -> str | None:
        return await find_monitor.name_of(client, monitor_type, public_id)

    return Names(ask), client


async def follow(
    nc: NATS,
    country: str | None,
    monitor: str | None,
    status: str | None,
    say: Callable[[str], None],
    stop: asyncio.Event,
    names: Names | None = None,
    ids: bool = False,
) -> None:
    """Print each matching result (its monitor by name when `names` knows it, its id too with
    `ids`) until `stop`; a message that is no result is reported on stderr and skipped."""

    async def on_result(msg: Msg) -> None:
        try:
            results = [decode_result(part) for part in result_parts(msg.subject, msg.data)]
        except msgspec.DecodeError as exc:
            print(f"not a result on {msg.subject}: {exc}", file=sys.stderr)
            return
        for result in results:
            if monitor is not None and str(result.monitor_id) != monitor:
                continue
            if status is None or result.status == status:
                named = await names.of(result.monitor_type, result.monitor_id) if names else None
                say(line(result, named, ids))

    subs = [
        await nc.subscribe(subject(country, monitor), cb=on_result),
        await nc.subscribe(bundles_subject(country), cb=on_result),
    ]
    try:
        await stop.wait()
    finally:
        for sub in subs:
            await sub.unsubscribe()


RECONNECT_WAIT_S = 1
# How a connection ends when its server goes: the disconnect reports these.
LOST = (OSError, nats.errors.StaleConnectionError, nats.errors.ConnectionClosedError)


async def connect(url: str, tls: ssl.SSLContext | None, say: Callable[[str], None]) -> NATS:
    """A connection that tries forever, at start and after losing the server, and says so in
    one line when the server cannot be reached and one when it is back; the failed tries in
    between say nothing more. An error while connected is one line; none is a traceback."""
    nc = NATS()
    started = False  # connected once: a failed try is then a reconnect's
    down = False  # said that the server is out of reach, not yet that it is back

    async def disconnected() -> None:
        nonlocal down
        if not nc.is_closed:  # closing at Ctrl-C is reported as a disconnect too
            down = True
            say(f"lost NATS at {url}; reconnecting (Ctrl-C stops)")

    async def reconnected() -> None:
        nonlocal down
        down = False
        say(f"reconnected to NATS at {url}")

    async def error(exc: Exception) -> None:
        nonlocal down
        if nc.is_connected and not isinstance(exc, LOST):  # a lost server: the disconnect says
            say(f"NATS error: {exc!r}")
        elif not (started or down):
            down = True
            say(f"cannot reach NATS at {url} ({exc!r}); trying until it answers (Ctrl-C stops)")

    await nc.connect(
        url.split(","),
        tls=tls,
        max_reconnect_attempts=-1,
        reconnect_time_wait=RECONNECT_WAIT_S,
        disconnected_cb=disconnected,
        reconnected_cb=reconnected,
        error_cb=error,
    )
    started, down = True, False
    return nc


def main(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    try:
        monitor = resolve(args.monitor, args, env)
    except TailError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    made = run_dir.read(env)
    url = args.nats or env.get("NATS_URL") or (made.nats if made and made.nats else DEFAULT_NATS)
    shown = redact(url)  # a URL's user:password@ is never printed
    ca = env.get("NATS_TLS_CA_FILE")
    tls = ssl.create_default_context(cafile=ca) if ca else None

    def warn(text: str) -> None:
        print(redact(text), file=sys.stderr, flush=True)

    async def run() -> None:
        found = await api_names(args, env)
        try:
            await follow_all(found)
        finally:
            if not isinstance(found, str):
                await found[1].aclose()

    async def follow_all(found: tuple[Names, httpx.AsyncClient] | str) -> None:
        nc = await connect(url, tls, warn)
        # A result may be minutes away (the check interval): say at once that it is listening.
        print(
            f"following {subject(args.country, monitor)} on {shown}: one line per check as it"
            " arrives (Ctrl-C stops)",
            file=sys.stderr,
            flush=True,
        )
        if isinstance(found, str):
            warn(f"monitor names are not shown: {found}")
        names = None if isinstance(found, str) else found[0]
        try:
            await follow(
                nc, args.country, monitor, args.status, print, asyncio.Event(), names, args.ids
            )
        finally:
            await nc.close()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        return 0
    except (OSError, nats.errors.Error) as exc:
        print(redact(f"error: cannot follow results on {shown}: {exc}"), file=sys.stderr)
        return 1
    return 0
