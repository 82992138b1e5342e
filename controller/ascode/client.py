"""The HTTP client the command-line tools (`apply`, `export`, `tail`) reach the API with: the
token from the environment, never the command line, and the CAs an https:// API is checked
against. Kept apart from `apply`'s planning so that `tail` starts without loading it."""

import ssl
from collections.abc import Mapping

import httpx

from controller.ascode import secret_env


def api_client(api: str, env: Mapping[str, str]) -> httpx.AsyncClient:
    """A client sending `MAILPROBE_TOKEN` to `api`; exits naming the variable when it is unset."""
    token = env.get(secret_env.TOKEN_ENV)
    if not token:
        raise SystemExit(
            f"error: set {secret_env.TOKEN_ENV} to an API token (kept out of the command line)"
        )
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.AsyncClient(
        base_url=api, headers=headers, timeout=30, trust_env=False, verify=trust(env)
    )


def trust(env: Mapping[str, str]) -> ssl.SSLContext | bool:
    """The CAs an https:// API is checked against: SSL_CERT_FILE or SSL_CERT_DIR when set (as
    httpx would read them), else httpx's default."""
    if cafile := env.get("SSL_CERT_FILE"):
        return ssl.create_default_context(cafile=cafile)
    if capath := env.get("SSL_CERT_DIR"):
        return ssl.create_default_context(capath=capath)
    return True
