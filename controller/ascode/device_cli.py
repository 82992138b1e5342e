"""`python -m controller oauth2-device`: a refresh token by the device code flow, stored on a
monitor's login through the API (MAILPROBE_API, a token in MAILPROBE_TOKEN), as `apply` talks
to it: every rule of the API applies (role, organization, sealing, binding)."""

import argparse
import asyncio
import ssl
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx

from controller.ascode import api_url
from controller.ascode import run as ascode
from controller.ascode.api_url import Target
from controller.ascode.client import api_client
from controller.monitors.oauth2_grants import Grant, GrantProblem, checked
from controller.oauth2 import device
from controller.web.api.monitor_kinds import APIS
from shared.secret import Secret

# Where each kind's login sits in its config, by `--login`.
LOGINS: dict[str, dict[str, str]] = {
    "smtp": {"": "auth"},
    "imap-pop": {"": ""},
    "roundtrip": {"send": "send.auth", "receive": "receive"},
}


def main(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    api = api_url.target(args.api, env, insecure_http=args.insecure_http)
    if isinstance(api, str):
        print(f"error: {api}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(run(api, args, env))
    except (device.DeviceFlowError, GrantProblem) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except httpx.TransportError as exc:
        print(
            f"error: cannot reach the API at {api.url}: {exc or type(exc).__name__}",
            file=sys.stderr,
        )
        return 1


async def run(
    api: Target,
    args: argparse.Namespace,
    env: Mapping[str, str],
    *,
    say: Callable[[str], None] = print,
    verify: ssl.SSLContext | str | bool = True,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> int:
    secret = env.get(args.client_secret_env, "") if args.client_secret_env else ""
    oauth2: dict[str, Any] = {
        "mechanism": args.mechanism,
        "grant": "refresh_token",
        "provider": args.provider,
        "clientId": args.client_id,
        "refreshToken": "pending",  # checked here, replaced below
        **({"tenant": args.tenant} if args.tenant else {}),
        **({"tokenUrl": args.token_url} if args.token_url else {}),
        **({"scopes": args.scope} if args.scope else {}),
        **({"clientSecret": secret} if secret else {}),
    }
    grant: Grant = checked(oauth2, None)
    grant.client_secret = Secret(secret)
    async with api_client(api, env) as client:
        found = await _find(client, args.monitor)
        if found is None:
            print(f"error: monitor {args.monitor} not found", file=sys.stderr)
            return 1
        path, kind, shown = found
        login = LOGINS[kind].get(args.login)
        if login is None:
            print(f"error: --login must be one of {sorted(LOGINS[kind])}", file=sys.stderr)
            return 2
        config_key = next(a.kind.config_key for a in APIS if a.kind.name == kind)
        config = shown[config_key]
        protocol = _protocol(kind, login, config)
        async with httpx.AsyncClient(timeout=10, trust_env=False, verify=verify) as http:
            code = await device.start(
                http, device.device_url(grant, args.device_url), grant, protocol
            )
        say(f"To sign {args.monitor} in, open {code.verification_uri} and enter {code.user_code}")
        refresh = await device.poll(grant, code, protocol, verify=verify, sleep=sleep)
        oauth2["refreshToken"] = refresh
        body = {config_key: device.with_grant(config, login, oauth2)}
        r = await client.patch(f"{path}/{args.monitor}", json=body)
        if r.status_code != 200:
            message, fields = ascode._refusal(r)
            print(f"error: {message} {fields}", file=sys.stderr)
            return 1
    say(f"stored: {args.monitor} logs in with OAuth2 ({args.mechanism}) from its next round")
    return 0


def _protocol(kind: str, login: str, config: Mapping[str, Any]) -> str:
    if kind == "smtp" or login == "send.auth":
        return "smtp"
    leg = config.get("receive") if login == "receive" else config
    return str((leg or {}).get("protocol") or "imap")


async def _find(
    client: httpx.AsyncClient, public_id: str
) -> tuple[str, str, dict[str, Any]] | None:
    for api in APIS:
        r = await client.get(f"{api.path}/{public_id}")
        if r.status_code == 200:
            body: dict[str, Any] = r.json()
            return api.path, api.kind.name, body
    return None
