"""Getting a refresh token without writing code: the device authorization grant (RFC 8628)
from the command line, then the refresh token stored on a monitor's login through the API.

`python -m controller oauth2-device --monitor ID --provider microsoft --tenant T --client-id C`
prints the code and the page to enter it on, polls the token endpoint (authlib's httpx OAuth2
client) until the user signs in, and PATCHes the monitor's login with an `oauth2` object of the
`refresh_token` grant: the API seals and binds it like every secret, and the refresh token
never appears on the terminal.
"""

import asyncio
import ssl
import warnings
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Final

import authlib.deprecate
import httpx

from controller.monitors.oauth2_grants import Grant, endpoint, scopes

with warnings.catch_warnings():
    warnings.simplefilter("ignore", authlib.deprecate.AuthlibDeprecationWarning)
    from authlib.integrations.base_client.errors import OAuthError
    from authlib.integrations.httpx_client import AsyncOAuth2Client

DEVICE_GRANT: Final = "urn:ietf:params:oauth:grant-type:device_code"
MICROSOFT_DEVICE_URL: Final = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/devicecode"
GOOGLE_DEVICE_URL: Final = "https://oauth2.googleapis.com/device/code"
WAIT_MAX_S: Final = 900.0


class DeviceFlowError(Exception):
    """The flow ended without a refresh token (the endpoint's error, or time ran out)."""


@dataclass(frozen=True)
class DeviceCode:
    device_code: str
    user_code: str
    verification_uri: str
    interval: float
    expires_in: float


def device_url(grant: Grant, custom: str | None) -> str:
    """The device authorization endpoint of the grant's provider (or `custom`)."""
    if grant.provider == "microsoft":
        return MICROSOFT_DEVICE_URL.format(tenant=grant.tenant)
    if grant.provider == "google":
        return GOOGLE_DEVICE_URL
    if not custom:
        raise DeviceFlowError("--device-url is required without a provider preset")
    return custom


async def start(client: httpx.AsyncClient, url: str, grant: Grant, protocol: str) -> DeviceCode:
    """Ask for a device code (RFC 8628 3.1-3.2)."""
    form = {"client_id": grant.client_id, "scope": " ".join(scopes(grant, protocol))}
    if grant.client_secret:
        form["client_secret"] = grant.client_secret.reveal()
    r = await client.post(url, data=form)
    try:
        body = r.json()
    except ValueError:
        body = None
    if r.status_code != 200 or not isinstance(body, dict):
        said = body.get("error", "") if isinstance(body, dict) else ""
        raise DeviceFlowError(f"the device endpoint answered HTTP {r.status_code} {said}")
    try:
        return DeviceCode(
            device_code=str(body["device_code"]),
            user_code=str(body["user_code"]),
            verification_uri=str(body.get("verification_uri") or body["verification_url"]),
            interval=float(body.get("interval", 5)),
            expires_in=float(body.get("expires_in", WAIT_MAX_S)),
        )
    except (KeyError, TypeError, ValueError):
        raise DeviceFlowError("the device endpoint's answer is not a device code") from None


async def poll(
    grant: Grant,
    code: DeviceCode,
    protocol: str,
    *,
    verify: ssl.SSLContext | str | bool = True,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> str:
    """Poll the token endpoint until the user signed in (RFC 8628 3.4-3.5); the refresh
    token."""
    url = endpoint(grant)
    secret = grant.client_secret.reveal() or None
    interval = max(1.0, code.interval)
    waited = 0.0
    async with AsyncOAuth2Client(
        client_id=grant.client_id,
        client_secret=secret,
        token_endpoint_auth_method="client_secret_post" if secret else "none",
        timeout=10,
        trust_env=False,
        verify=verify,
    ) as client:
        while waited < min(code.expires_in, WAIT_MAX_S):
            try:
                token = await client.fetch_token(
                    url,
                    grant_type=DEVICE_GRANT,
                    device_code=code.device_code,
                    scope=" ".join(scopes(grant, protocol)),
                )
            except OAuthError as exc:
                if exc.error == "authorization_pending":
                    pass
                elif exc.error == "slow_down":
                    interval += 5
                else:
                    raise DeviceFlowError(f"{exc.error}: {exc.description or ''}") from None
            else:
                refresh = token.get("refresh_token")
                if not isinstance(refresh, str) or not refresh:
                    raise DeviceFlowError(
                        "the endpoint issued no refresh token (ask for offline_access)"
                    )
                return refresh
            await sleep(interval)
            waited += interval
    raise DeviceFlowError("nobody signed in before the code expired")


def with_grant(
    config: Mapping[str, object], login: str, oauth2: Mapping[str, object]
) -> dict[str, object]:
    """The monitor's config as the API showed it (secrets masked, which keeps them) with
    `oauth2` set on the login at `login` (`auth`, ``, `send.auth`, `receive`)."""
    out = dict(config)
    holder = out
    for step in [s for s in login.split(".") if s]:
        inner = holder.get(step)
        nested: dict[str, object] = dict(inner) if isinstance(inner, Mapping) else {}
        holder[step] = nested
        holder = nested
    holder["oauth2"] = dict(oauth2)
    holder.pop("pass", None)
    holder.pop("password", None)
    return out
