"""The `apprise` channel: one Apprise URL (https://github.com/caronc/apprise) reaching the long
tail of services (Discord, ntfy, Gotify, Matrix, Mattermost, Pushover, generic JSON/form/XML
endpoints...), under the same egress rules as the other channels.

- Only the schemes of `SCHEMES` are taken: Apprise plugins that speak HTTP through `requests`,
  so every connection they open goes through the guard below. Those that speak other protocols
  (mailto, MQTT, XMPP, syslog, desktop notifications, ...) are refused: nothing would check
  where they connect.
- The guard: while a send runs, every TCP connection urllib3 opens in that send's thread
  resolves its host once, refuses it unless every address is public (`shared.addresses`) or in
  the private networks the operator granted the channel's organization
  (NOTIFY_PRIVATE_NETWORK_GRANTS, `controller.notify.egress`), and dials one of those checked
  addresses; TLS still verifies the name. That covers hosts a user typed (`jsons://host/...`),
  a service's fixed host and any redirect (redirects are turned off anyway). Plain-http
  schemes (`json://`, `ntfy://`, ...) reach only the granted networks, as plain `http://` does
  for the other channels.
- Certificate checks stay on (`verify=no` is refused), connect and read timeouts are capped,
  the whole send is bounded, the title and body are cut to `MAX_TITLE`/`MAX_BODY`.
- Apprise is synchronous: a send runs in a worker thread (`asyncio.to_thread`), off the event
  loop. Apprise's own log lines never reach the process's logs (they can name URLs); its
  warnings of the send at hand are kept, masked, for the delivery error.
- A connection the controller could not open for want of its own resources (its file
  descriptors used up: `controller.notify.shortage`) makes the send fail as mailprobe's own,
  retried soon, whatever the plugin answered: the service was never reached.
"""

import asyncio
import contextvars
import functools
import ipaddress
import logging
import re
import socket
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

import apprise
import urllib3.util.connection

from controller.notify import DeliveryError
from controller.notify.channel_shown import secret_parts
from controller.notify.egress import GRANTS, literal_problem
from controller.notify.shortage import not_sent, own_shortage
from shared.addresses import is_blocked
from shared.guards import BrokenInvariant
from shared.secret import SECRET_MASK

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Scheme → whether it speaks plain http (then only to the granted private networks).
SCHEMES: Final[dict[str, bool]] = {
    "jsons": False,
    "forms": False,
    "xmls": False,
    "ntfys": False,
    "gotifys": False,
    "matrixs": False,
    "mmosts": False,
    "rockets": False,
    "apprises": False,
    "discord": False,
    "gchat": False,
    "pover": False,
    "pbul": False,
    "json": True,
    "form": True,
    "xml": True,
    "ntfy": True,
    "gotify": True,
    "matrix": True,
    "mmost": True,
    "rocket": True,
    "apprise": True,
}
CONNECT_TIMEOUT_S: Final = 5.0
READ_TIMEOUT_S: Final = 10.0
SEND_TIMEOUT_S: Final = 30.0  # the whole send, however many requests a plugin makes
MAX_TITLE: Final = 250
MAX_BODY: Final = 4000
_SAID_CHARS: Final = 300
# Apprise's warnings end in "error=<HTTP status>."; 4xx but these is the request itself.
_STATUS: Final = re.compile(r"error=(\d{3})\b")
_RETRYABLE: Final = frozenset({408, 425, 429})


class AddressRefused(OSError):
    """A connection to an address the rules do not allow (an OSError, so urllib3 and requests
    report it as a failed connection)."""


@dataclass
class _Send:
    """The rules and the record of one send, visible to its thread through `_CURRENT`."""

    networks: Sequence[Network]
    plain: bool
    refused: list[str] = field(default_factory=list)
    said: list[str] = field(default_factory=list)
    # The controller's own shortage (controller.notify.shortage) that stopped a connection:
    # the plugin catches it and answers only "not delivered".
    short: OSError | None = None

    def permitted(self, address: str) -> bool:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        allowed = any(ip in net for net in self.networks)
        return allowed if self.plain else allowed or not is_blocked(address)


_CURRENT: contextvars.ContextVar[_Send | None] = contextvars.ContextVar(
    "apprise_send", default=None
)
_create_connection = urllib3.util.connection.create_connection


def _guarded_create_connection(
    address: tuple[str, int],
    timeout: Any = socket._GLOBAL_DEFAULT_TIMEOUT,  # type: ignore[attr-defined]
    source_address: tuple[str, int] | None = None,
    socket_options: Any = None,
) -> socket.socket:
    """urllib3's create_connection; inside an Apprise send, only to permitted addresses."""
    send = _CURRENT.get()
    if send is None:
        return _create_connection(address, timeout, source_address, socket_options)
    host, port = address
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses or not all(send.permitted(a) for a in addresses):
        what = "outside" if send.plain else "not public and not in"
        message = (
            f"{host} resolves to an address {what} the private networks granted to this"
            f" organization ({GRANTS})"
        )
        send.refused.append(message)
        raise AddressRefused(message)
    last: OSError | None = None
    for a in addresses:
        try:
            return _create_connection((a, port), timeout, source_address, socket_options)
        except OSError as exc:
            send.short = send.short or own_shortage(exc)
            last = exc
    if last is None:
        raise BrokenInvariant("apprise_channel._guarded_create_connection: last is unset")
    raise last


# urllib3 looks the function up on its module at each connection, so every requests call
# (Apprise's included) goes through the guard; outside an Apprise send it changes nothing.
urllib3.util.connection.create_connection = _guarded_create_connection


class _Said(logging.Handler):
    """Keeps Apprise's warnings of the send at hand (its thread's context) for its error."""

    def emit(self, record: logging.LogRecord) -> None:
        send = _CURRENT.get()
        if send is not None and len(send.said) < 5:
            send.said.append(record.getMessage())


_apprise_log = logging.getLogger("apprise")
_apprise_log.propagate = False  # its lines may name URLs: never in the process's logs
_apprise_log.setLevel(logging.WARNING)
_apprise_log.addHandler(_Said())

_ASSET = apprise.AppriseAsset(http_redirects=False, storage_mode=apprise.PersistentStoreMode.MEMORY)


@functools.cache
def load_plugins() -> None:
    """Apprise's plugins, loaded once a process, with the deprecation warnings of the optional
    modules some of them import (not ours to fix) kept out of the process's. `controller serve`
    loads them off the event loop before it serves (about 0.2 s of CPU); elsewhere the first
    URL a process reads loads them (`url_problem`), and a process that reads none (a CLI
    command) never does."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        apprise.plugins.N_MGR.load_modules()  # type: ignore[no-untyped-call]


def _plugin(url: str) -> Any:
    load_plugins()
    return apprise.Apprise.instantiate(url, asset=_ASSET, suppress_exceptions=True)


def scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def url_problem(url: str, networks: Sequence[Network]) -> str | None:
    """What is wrong with `url` as an Apprise channel's URL, or None (the API's check); never
    repeats the URL, which is a credential."""
    s = scheme(url)
    if s not in SCHEMES:
        return "must be an Apprise URL of an allowed scheme (" + ", ".join(sorted(SCHEMES)) + ")"
    if SCHEMES[s] and not networks:
        return (
            f"{s}:// is plain http: only to private networks granted to this organization"
            f" ({GRANTS}; use {s}s://)"
        )
    try:
        host = urlsplit(url).hostname
    except ValueError:
        host = None
    if problem := literal_problem(host, networks, plain=SCHEMES[s]):
        return problem
    token = _CURRENT.set(_Send(networks, SCHEMES[s]))
    try:
        plugin = _plugin(url)
    finally:
        _CURRENT.reset(token)
    if plugin is None:
        return f"is not a valid {s}:// Apprise URL"
    if not plugin.verify_certificate:
        return "must keep certificate checks on (no verify=no)"
    return None


def shown(url: str) -> str:
    """What the API shows of an Apprise URL: its scheme only."""
    return f"{scheme(url)}://{SECRET_MASK}"


def _mask(text: str, url: str) -> str:
    for piece in secret_parts(url):
        text = text.replace(piece, SECRET_MASK)
    return text


def _send_now(url: str, title: str, body: str, send: _Send) -> bool:
    """In the worker thread: one notification through the plugin of `url`."""
    _CURRENT.set(send)
    plugin = _plugin(url)
    if plugin is None:
        send.said.append("the URL is not a valid Apprise URL")
        return False
    plugin.verify_certificate = True
    plugin.redirects = False
    plugin.socket_connect_timeout = min(plugin.socket_connect_timeout, CONNECT_TIMEOUT_S)
    plugin.socket_read_timeout = min(plugin.socket_read_timeout, READ_TIMEOUT_S)
    ok: bool = plugin.notify(
        body=body,
        title=title,
        notify_type=apprise.NotifyType.FAILURE,
        body_format=apprise.NotifyFormat.TEXT,
    )
    return ok


async def send(url: str, title: str, body: str, networks: Sequence[Network]) -> None:
    """Tell the service of `url`; DeliveryError (permanent when the URL or its address is
    refused, or the service refused the request itself) naming the scheme, never the URL."""
    s = scheme(url)
    if problem := url_problem(url, networks):
        raise DeliveryError(f"apprise URL {problem}", permanent=True)
    work = _Send(networks, SCHEMES[s])
    try:
        ok = await asyncio.wait_for(
            asyncio.to_thread(_send_now, url, title[:MAX_TITLE], body[:MAX_BODY], work),
            SEND_TIMEOUT_S,
        )
    except TimeoutError:
        raise DeliveryError(f"apprise {s}:// did not finish within {SEND_TIMEOUT_S:g} s") from None
    except Exception as exc:  # a plugin's own failure: named, never its message (may hold URLs)
        if (short := work.short or own_shortage(exc)) is not None:
            raise DeliveryError(
                not_sent(short, f"the apprise {s}:// endpoint"), soon=True
            ) from None
        if work.refused:
            raise DeliveryError(f"apprise {s}:// {work.refused[0]}", permanent=True) from None
        raise DeliveryError(f"apprise {s}:// failed: {type(exc).__name__}") from None
    if ok:
        return
    if work.short is not None:
        raise DeliveryError(not_sent(work.short, f"the apprise {s}:// endpoint"), soon=True)
    if work.refused:
        raise DeliveryError(f"apprise {s}:// {work.refused[0]}", permanent=True)
    said = _mask(" ".join(work.said), url)[:_SAID_CHARS] or "not delivered"
    statuses = [int(code) for code in _STATUS.findall(said)]
    permanent = bool(statuses) and all(400 <= c < 500 and c not in _RETRYABLE for c in statuses)
    raise DeliveryError(
        f"apprise {s}:// {said}" + (" (not retried)" if permanent else ""), permanent=permanent
    )
