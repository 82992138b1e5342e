"""A loopback HTTPS OAuth2 token endpoint (RFC 6749 section 5) for the controller's token
service: it issues the rig's JWT access tokens (testkit/oauth2/issuer.py, so Dovecot accepts
them) for the client credentials, refresh token (rotating: a used refresh token is revoked) and
JWT bearer (RFC 7523, the assertion checked with joserfc) grants, answers RFC 6749 errors
(`invalid_grant`, `invalid_client`, `invalid_scope`), and can be made to fail (`down`) or to
hang (`held`: no answer until the event is set, or the client goes away). A bare
ASGI app served by uvicorn with a trustme certificate."""

import asyncio
import base64
import json
import secrets
import ssl
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import trustme
import uvicorn
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey

from shared import embedded
from testkit.oauth2.issuer import SCOPE, TokenIssuer
from testkit.trust import trusting

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@dataclass
class TokenEndpoint:
    issuer: TokenIssuer
    user: str  # whose mailbox client-credentials tokens are for
    clients: dict[str, str] = field(default_factory=dict)  # client id → secret
    refresh_tokens: dict[str, str] = field(default_factory=dict)  # live refresh token → user
    service_accounts: dict[str, RSAKey] = field(default_factory=dict)  # iss → public key
    expires_in: int = 3600
    rotate: bool = True
    down: bool = False
    held: asyncio.Event | None = None  # set: answers; clear: every token request waits
    waiting: int = 0  # token requests waiting for `held`
    waiting_by_client: Counter[str] = field(default_factory=Counter)  # the same, by client id
    gone: int = 0  # token requests whose client went away while they waited for `held`
    on_answer: Callable[[], None] = lambda: None  # called as each token request is answered
    calls: list[dict[str, str]] = field(default_factory=list)
    url: str = ""
    devices: dict[str, bool] = field(default_factory=dict)  # device code → signed in

    def _device(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """RFC 8628 3.2: a device code for a known client."""
        if form.get("client_id") not in self.clients:
            return 400, {"error": "invalid_client"}
        code = secrets.token_urlsafe(16)
        self.devices[code] = False
        return 200, {
            "device_code": code,
            "user_code": "ABCD-EFGH",
            "verification_uri": "https://issuer.mailprobe.test/device",
            "interval": 1,
            "expires_in": 60,
        }

    def refresh_token_for(self, user: str) -> str:
        token = secrets.token_urlsafe(24)
        self.refresh_tokens[token] = user
        return token

    def _answer(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        self.calls.append(form)
        if self.down:
            return 503, {"message": "down"}
        kind = form.get("grant_type", "")
        client = form.get("client_id", "")
        if kind != JWT_BEARER and self.clients.get(client) != form.get("client_secret"):
            return 401, {"error": "invalid_client", "error_description": "unknown client"}
        if form.get("scope", SCOPE).split() != [SCOPE]:
            return 400, {"error": "invalid_scope", "error_description": f"only {SCOPE}"}
        out: dict[str, Any] = {"token_type": "Bearer", "expires_in": self.expires_in}
        if kind == "client_credentials":
            user = self.user
        elif kind == "refresh_token":
            given = form.get("refresh_token", "")
            user = self.refresh_tokens.get(given, "")
            if not user:
                return 400, {
                    "error": "invalid_grant",
                    "error_description": "AADSTS70008: the refresh token expired or was revoked",
                }
            if self.rotate:
                del self.refresh_tokens[given]
                out["refresh_token"] = self.refresh_token_for(user)
        elif kind == DEVICE_GRANT:
            signed_in = self.devices.get(form.get("device_code", ""))
            if signed_in is None:
                return 400, {"error": "expired_token"}
            if not signed_in:
                return 400, {"error": "authorization_pending"}
            user = self.user
            out["refresh_token"] = self.refresh_token_for(user)
        elif kind == JWT_BEARER:
            try:
                claims = self._assertion(form.get("assertion", ""))
            except (JoseError, ValueError, KeyError) as exc:
                return 400, {"error": "invalid_grant", "error_description": str(exc)}
            user = claims["sub"]
        else:
            return 400, {"error": "unsupported_grant_type"}
        out["access_token"] = self.issuer.issue(user, expires_in=self.expires_in)
        out["scope"] = SCOPE
        return 200, out

    def _assertion(self, assertion: str) -> dict[str, Any]:
        token = jwt.decode(
            assertion, self.service_accounts[_unverified_iss(assertion)], algorithms=["RS256"]
        )
        claims = dict(token.claims)
        jwt.JWTClaimsRegistry(
            exp={"essential": True}, aud={"essential": True, "value": self.url}
        ).validate(claims)
        return claims

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        if scope["method"] != "POST" or scope["path"] not in ("/token", "/device"):
            status, answer = 404, {"error": "not_found"}
        elif scope["path"] == "/device":
            status, answer = self._device(form)
        else:
            if self.held is not None:
                client = form.get("client_id", "")
                self.waiting += 1
                self.waiting_by_client[client] += 1
                try:
                    if not await _answers(self.held, receive):
                        self.gone += 1
                        return  # the client went away
                finally:
                    self.waiting -= 1
                    self.waiting_by_client[client] -= 1
            self.on_answer()
            status, answer = self._answer(form)
        data = json.dumps(answer).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": data})


async def _answers(held: asyncio.Event, receive: Any) -> bool:
    """Wait until `held` is set (True) or the client disconnects (False)."""
    released = asyncio.create_task(held.wait())
    gone = asyncio.create_task(receive())  # the body is read: what comes next is the disconnect
    done, pending = await asyncio.wait({released, gone}, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return released in done


def _unverified_iss(assertion: str) -> str:
    """The assertion's issuer, read to pick the key that then verifies it."""
    payload = assertion.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    iss = claims["iss"]
    assert isinstance(iss, str)
    return iss


def ca_context(ca: trustme.CA) -> ssl.SSLContext:
    """What the controller trusts for this endpoint: its CA (OAUTH2_CA_FILE adds it to the
    system's CAs, which no loopback endpoint needs)."""
    return trusting(ca)


@asynccontextmanager
async def serve(endpoint: TokenEndpoint, ca: trustme.CA) -> AsyncIterator[TokenEndpoint]:
    """Serve the endpoint over HTTPS on 127.0.0.1 until the block ends."""
    cert = ca.issue_cert("127.0.0.1", "localhost")
    port = embedded.free_port()
    with cert.private_key_and_cert_chain_pem.tempfile() as both:
        server = uvicorn.Server(
            uvicorn.Config(
                endpoint,
                host="127.0.0.1",
                port=port,
                log_config=None,
                access_log=False,
                ssl_certfile=both,
                ssl_keyfile=both,
                lifespan="off",
            )
        )
        task = asyncio.create_task(server.serve())
        try:
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
            endpoint.url = f"https://127.0.0.1:{port}/token"
            yield endpoint
        finally:
            server.should_exit = True
            await task
