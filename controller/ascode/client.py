"""The HTTP client the command-line tools (`apply`, `export`, `tail`, `oauth2-device`) reach the
API with: the token from the environment, never the command line, sent only once the server
has proved what `api_url.target` asks of it (at the one address its name is pinned to), and the
CAs an https:// API is checked against.
Kept apart from `apply`'s planning so that `tail` starts without loading it."""

import ipaddress
import secrets
import socket
import ssl
from collections.abc import Generator, Mapping
from urllib.parse import urlsplit, urlunsplit

import httpx

from controller.access import instance_proof
from controller.ascode import secret_env
from controller.ascode.api_url import Target
from shared.guards import BrokenInvariant

PIN_TIMEOUT_S = 2.0  # to find which of a name's addresses takes a connection


class ProvenBearer(httpx.Auth):
    """The bearer token, added to a request only after the server has answered a fresh
    challenge with the proof of `key` (once per client); a server that cannot ends the command
    before any request carries the token."""

    requires_response_body = True

    def __init__(self, token: str, key: str | None) -> None:
        self._token = token
        self._key = key
        self._proven = key is None

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if not self._proven:
            if self._key is None:
                raise BrokenInvariant("client.ProvenBearer.auth_flow: self._key is unset")
            challenge = secrets.token_hex(32)
            url = request.url.copy_with(
                path=instance_proof.PATH, query=f"challenge={challenge}".encode()
            )
            answer = yield httpx.Request("GET", url)
            try:
                body = answer.json() if answer.status_code == 200 else None
            except ValueError:
                body = None
            given = body.get("proof") if isinstance(body, dict) else None
            port = url.port or (443 if url.scheme == "https" else 80)
            if not isinstance(given, str) or not instance_proof.holds(
                self._key, challenge, url.host, port, given
            ):
                raise SystemExit(
                    f"error: the API at {url.scheme}://{url.netloc.decode()} is not the controller"
                    " of this checkout's `make run` (it cannot prove the instance key in .run/):"
                    " the token was not sent. Start `make run` again, name the API you mean with"
                    " --api, or pass --insecure-http to send the token without this check"
                )
            self._proven = True
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request


def api_client(api: Target, env: Mapping[str, str]) -> httpx.AsyncClient:
    """A client sending `MAILPROBE_TOKEN` to `api` once it has proved what it must; exits naming
    the variable when it is unset."""
    token = env.get(secret_env.TOKEN_ENV)
    if not token:
        raise SystemExit(
            f"error: set {secret_env.TOKEN_ENV} to an API token (kept out of the command line)"
        )
    return httpx.AsyncClient(
        base_url=pinned(api.url) if api.proof_key else api.url,
        auth=ProvenBearer(token, api.proof_key),
        timeout=30,
        trust_env=False,
        verify=trust(env),
    )


def pinned(url: str) -> str:
    """`url` with its host name replaced by the address it is reached at: the first of the
    name's addresses (in the resolver's order) that takes a connection, so that the proof and
    every request after it go to the one address proved; `url` unchanged when none does (the
    request then fails as it would have)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    try:
        ipaddress.ip_address(host)
        return url
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return url
    for family, kind, proto, _, where in found:
        with socket.socket(family, kind, proto) as sock:
            sock.settimeout(PIN_TIMEOUT_S)
            try:
                sock.connect(where)
            except OSError:
                continue
        literal = f"[{where[0]}]" if family == socket.AF_INET6 else where[0]
        return urlunsplit(parts._replace(netloc=f"{literal}:{port}"))
    return url


def trust(env: Mapping[str, str]) -> ssl.SSLContext | bool:
    """The CAs an https:// API is checked against: SSL_CERT_FILE or SSL_CERT_DIR when set (as
    httpx would read them), else httpx's default."""
    if cafile := env.get("SSL_CERT_FILE"):
        return ssl.create_default_context(cafile=cafile)
    if capath := env.get("SSL_CERT_DIR"):
        return ssl.create_default_context(capath=capath)
    return True
