"""Which API a command-line tool talks to, and what it must check before it sends the token
there: a pure decision, made before any connection.

The API: `--api`, else MAILPROBE_API, else the one `make run` wrote in `.run/`, else
http://127.0.0.1:8080. The token goes in every request's Authorization header, so:
- Over plain `http://` anyone on the path reads it (and with it the organization's monitors,
  and the power to move them): plain HTTP is only for the API on this machine, `localhost` or
  a loopback address, never a name that could resolve elsewhere. `--insecure-http` allows it
  anyway, for a lab; https:// is always allowed (TLS checks the server).
- On this machine, whatever listens on a port is not necessarily this checkout's controller
  (another program on 8080, a run since stopped, a port `make run` moved): while a run's
  instance key is in `.run/`, a plain-http API must prove it holds that key before the token
  goes (controller.access.instance_proof). Without a run, the token goes only to an API the
  user named (`--api`, MAILPROBE_API), never to the default. `--insecure-http` skips the proof.
"""

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from controller.ascode import run_dir

DEFAULT_API = "http://127.0.0.1:8080"
API_ENV = "MAILPROBE_API"
LOOPBACK_NAMES = ("localhost",)


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    proof_key: str | None  # the server must prove it holds this before the token is sent


def chosen(given: str | None, env: Mapping[str, str]) -> str:
    """The API a command talks to: `--api`, else MAILPROBE_API, else `make run`'s, else
    DEFAULT_API."""
    run = run_dir.read(env)
    return given or env.get(API_ENV) or (run.api if run and run.api else None) or DEFAULT_API


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


def target(given: str | None, env: Mapping[str, str], *, insecure_http: bool) -> Target | str:
    """The API and the proof it owes before the token goes; or why the token may not go."""
    url = chosen(given, env)
    if why := problem(url, insecure_http=insecure_http):
        return why
    if urlsplit(url).scheme == "https" or insecure_http:
        return Target(url, None)
    run = run_dir.read(env)
    if run is not None and run.key is not None:
        return Target(url, run.key)
    if given or env.get(API_ENV):
        return Target(url, None)  # named by the user, and no run to check it against
    return (
        f"no API named and no `make run` found in {run_dir.folder(env)}/ to check {url}"
        f" against: pass --api or set {API_ENV}, or start `make run` (the token is never sent"
        " to a server nobody named)"
    )
