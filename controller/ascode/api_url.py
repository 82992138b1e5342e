"""Where `apply` and `export` may send the API token: a pure check of `--api`, made before any
connection.

The token goes in every request's Authorization header. Over plain `http://` anyone on the
path reads it (and with it the organization's monitors, and the power to move them), so plain
HTTP is only for the API on this machine: `localhost` or a loopback address, never a name that
could resolve elsewhere. `--insecure-http` allows it anyway, for a lab; https:// is always
allowed.
"""

import ipaddress
from collections.abc import Mapping
from urllib.parse import urlsplit

DEFAULT_API = "http://127.0.0.1:8080"
API_ENV = "MAILPROBE_API"
LOOPBACK_NAMES = ("localhost",)


def chosen(given: str | None, env: Mapping[str, str]) -> str:
    """The API a command talks to: `--api`, else MAILPROBE_API, else DEFAULT_API."""
    return given or env.get(API_ENV) or DEFAULT_API


def is_loopback(host: str) -> bool:
    """`localhost`, or an IP literal in 127.0.0.0/8 or ::1 (an IPv4-mapped one included)."""
    if host.lower().rstrip(".") in LOOPBACK_NAMES:
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def problem(api: str, *, insecure_http: bool = False) -> str | None:
    """Why the token must not be sent to `api`, or None when it may."""
    try:
        parts = urlsplit(api)
        host = parts.hostname
        parts.port  # noqa: B018 (reading a bad port raises ValueError)
    except ValueError as exc:
        return f"--api {api!r} is not a URL: {exc}"
    if parts.scheme not in ("http", "https") or not host:
        return f"--api {api!r} is not an http:// or https:// URL with a host"
    if parts.scheme == "http" and not insecure_http and not is_loopback(host):
        return (
            f"--api {api} would send the API token (MAILPROBE_TOKEN) unencrypted to {host}:"
            " plain http:// is only for localhost or a loopback address; use https://, or"
            " --insecure-http to send it anyway"
        )
    return None
