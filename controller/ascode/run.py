"""`apply` and `export` against the API over HTTP (MAILPROBE_API, a token in MAILPROBE_TOKEN).

Going through the API, not the database, keeps every rule of the API in force: the token's role
and organization, fair-use limits, the secret binding, and the API's own messages, which `apply`
reports at the file's line.

The client ignores the proxy variables (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY) and .netrc: the token
goes to `--api` and nowhere else, over the connection `api_url` checked. Only SSL_CERT_FILE and
SSL_CERT_DIR are read from the environment, to trust a private CA for an https:// API.
"""

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path

import httpx

from controller.ascode import api_url, yaml_text
from controller.ascode import channels as channel_file
from controller.ascode.api_url import Target
from controller.ascode.client import api_client
from controller.ascode.plan import RESENT, Action, Current, PlanError, export, plan
from controller.ascode.spec import Spec, SpecError, load
from controller.monitors import kinds
from controller.web.api.monitor_kinds import APIS, HEARTBEAT_API, api_of

ENDPOINTS: dict[str, str] = {api.path: api.kind.name for api in (*APIS, HEARTBEAT_API)}
PER_PAGE = 200


class ApplyError(Exception):
    """The API refused a request; the text is the API's message, where possible at a line."""


def _path(monitor_type: str) -> str:
    return api_of(kinds.of_type(monitor_type)).path


def _refusal(response: httpx.Response) -> tuple[str, list[str]]:
    try:
        body = response.json()
        return str(body["message"]), [str(f) for f in body.get("fields", [])]
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}", []


async def current(client: httpx.AsyncClient, customer: str) -> list[Current]:
    """The customer's monitors, every kind's endpoint, every page; ApplyError when the customer
    is not the token's organization's."""
    r = await client.get(f"/api/customers/{customer}")
    if r.status_code != 200:
        raise ApplyError(f"customer {customer}: {_refusal(r)[0]}")
    found: list[Current] = []
    for path, endpoint in ENDPOINTS.items():
        page = 1
        while True:
            params: dict[str, str | int] = {"customerId": customer, "page": page}
            r = await client.get(path, params={**params, "perPage": PER_PAGE})
            if r.status_code != 200:
                raise ApplyError(f"listing {path}: {_refusal(r)[0]}")
            body = r.json()
            found += [Current.of(endpoint, item) for item in body["items"]]
            if page * PER_PAGE >= body["total"]:
                break
            page += 1
    return found


async def apply(
    spec: Spec,
    client: httpx.AsyncClient,
    *,
    prune: bool,
    dry_run: bool,
    say: Callable[[str], None],
) -> int:
    """Make the API hold the file's monitors; 0 when done (or planned), 1 when the API refused
    something (the rest is still applied)."""
    try:
        actions = plan(spec.monitors, await current(client, spec.customer), prune=prune)
    except (PlanError, ApplyError) as exc:
        say(f"{spec.file}: {exc}")
        return 1
    failed = 0
    for action in actions:
        say(action.describe())
        if dry_run or (action.verb == "keep" and action.changed != (RESENT,)):
            continue
        try:
            await _do(client, spec, action)
        except ApplyError as exc:
            say(f"  {exc}")
            failed += 1
    counts = {v: sum(a.verb == v for a in actions) for v in ("create", "update", "delete")}
    summary = ", ".join(f"{n} to {v}" if dry_run else f"{n} {v}d" for v, n in counts.items())
    say(f"{spec.file}: {summary}" + (" (dry run: nothing changed)" if dry_run else ""))
    return 1 if failed else 0


async def _do(client: httpx.AsyncClient, spec: Spec, action: Action) -> None:
    path = _path(action.type)
    if action.verb == "delete":
        r = await client.delete(f"{path}/{action.public_id}")
    elif action.desired is not None and action.verb == "create":
        r = await client.post(path, json={**action.desired.body, "customerId": spec.customer})
    elif action.desired is not None and action.verb == "update":
        r = await client.patch(f"{path}/{action.public_id}", json=action.desired.body)
    elif action.desired is not None and (body := action.desired.resend_body()) is not None:
        r = await client.patch(f"{path}/{action.public_id}", json=body)  # kept: its secret
    else:
        return
    if r.is_success:
        return
    message, fields = _refusal(r)
    field = fields[0] if fields else ""
    if field == "customerId":
        line = spec.customer_line
    elif action.desired is not None:
        line = action.desired.line_of(field)
    else:
        line = None
    where = spec.file if line is None else f"{spec.file}:{line}"
    raise ApplyError(f"{where}: the API refused it (HTTP {r.status_code}): {message}")


def export_text(customer: str, monitors: list[Current]) -> str:
    return yaml_text.dump(export(customer, monitors))


def main(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """`apply` or `export` as parsed; the exit code."""
    api = api_url.target(args.api, env, insecure_http=args.insecure_http)
    if isinstance(api, str):
        print(f"error: {api}", file=sys.stderr)  # before any connection: the token stays here
        return 2
    if args.command == "export":
        if args.channels:
            return _reaching(api, _export_channels(api, env))
        return _reaching(api, _export(api, args.customer, env))
    try:
        text = Path(args.file).read_text()
        if channel_file.is_channels_file(text):
            wanted = channel_file.load(text, args.file, env)
            return _reaching(api, _apply_channels(api, wanted, args, env))
        spec = load(text, args.file, env)
    except SpecError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return _reaching(api, _apply(api, spec, args, env))


def _reaching(api: Target, command: Coroutine[object, None, int]) -> int:
    """`command` run; an API that cannot be reached is one line, not a traceback."""
    try:
        return asyncio.run(command)
    except httpx.TransportError as exc:
        print(
            f"error: cannot reach the API at {api.url}: {exc or type(exc).__name__}",
            file=sys.stderr,
        )
        return 1


async def _apply(api: Target, spec: Spec, args: argparse.Namespace, env: Mapping[str, str]) -> int:
    async with api_client(api, env) as client:
        return await apply(spec, client, prune=args.prune, dry_run=args.dry_run, say=print)


async def _apply_channels(
    api: Target,
    wanted: list[channel_file.Channel],
    args: argparse.Namespace,
    env: Mapping[str, str],
) -> int:
    async with api_client(api, env) as client:
        try:
            return await channel_file.apply(
                wanted, args.file, client, prune=args.prune, dry_run=args.dry_run, say=print
            )
        except SpecError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1


async def _export_channels(api: Target, env: Mapping[str, str]) -> int:
    async with api_client(api, env) as client:
        try:
            items = await channel_file.current(client)
        except SpecError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    sys.stdout.write(channel_file.export_text(items))
    return 0


async def _export(api: Target, customer: str, env: Mapping[str, str]) -> int:
    async with api_client(api, env) as client:
        try:
            monitors = await current(client, customer)
        except ApplyError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    sys.stdout.write(export_text(customer, monitors))
    return 0
