"""AlertSite's email monitor bodies ↔ mailprobe's monitor fields, pure: no database, no request.

In: an AlertSite POST/PATCH body → the write model's `SmtpMonitorCreate`/`ImapPopMonitorCreate`
(or `...Update`), as a native body is. Out: a stored monitor → the object AlertSite's GET
answers. Bad values are 400s naming the AlertSite field. What is mapped, and what is accepted
but ignored, is in docs/alertsite.md.
"""

import ipaddress
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

import msgspec
import pycountry
from msgspec import UNSET, UnsetType

from controller.access.accounts_store import Principal
from controller.monitors import validation
from controller.monitors.kinds import IMAP_POP, SMTP, Kind
from controller.monitors.store import Monitor
from controller.monitors.write_model import (
    ImapPopConfigIn,
    ImapPopMonitorCreate,
    ImapPopMonitorUpdate,
    SmtpConfigIn,
    SmtpMonitorCreate,
    SmtpMonitorUpdate,
)
from controller.web.alertsite.locations import COUNTRY_LOCATION, LOCATIONS
from controller.web.api.errors import ApiError, bad_request, not_found
from controller.web.api.monitor_rules import present
from controller.web.api.monitor_schemas import MASK

NOT_FOUND = "Record not found"  # AlertSite's 404 message
INTERVAL_MIN, INTERVAL_MAX = 1, validation.CHECK_INTERVAL_MAX // 60  # minutes


@dataclass(frozen=True)
class EmailType:
    """One AlertSite email monitor type and the mailprobe monitor type it is."""

    slug: str  # AlertSite's: email-smtp, email-imap, email-pop
    kind: Kind
    type: str  # ours: smtp, imap, pop3
    schemes: dict[str, bool]  # hostname URL scheme → TLS from the first byte


EMAIL_TYPES = {
    t.slug: t
    for t in (
        EmailType("email-smtp", SMTP, "smtp", {"smtp": False, "smtps": True}),
        EmailType("email-imap", IMAP_POP, "imap", {"imap": False, "imaps": True}),
        EmailType(
            "email-pop",
            IMAP_POP,
            "pop3",
            {"pop3": False, "pop3s": True, "pop": False, "pops": True},
        ),
    )
}
BY_TYPE = {t.type: t for t in EMAIL_TYPES.values()}
# Every type AlertSite's GET /monitors accepts; the non-email ones never match a monitor here.
ALERTSITE_TYPES = frozenset(
    {
        *EMAIL_TYPES,
        "api",
        "bitbar",
        "dejaclick",
        "email-round-trip",
        "ftp",
        "ftp-ssl",
        "name-server",
        "ping",
        "selenium",
        "serveragent",
        "tcp",
        "website",
        "website-api",
        "website-ssl",
        "website-ssl-api",
    }
)


class LocationIn(msgspec.Struct, kw_only=True):
    """An item of `locations`: AlertSite's `{"id": 20}` (other keys, like `name`, ignored)."""

    id: int | str


class EmailMonitorFields(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """AlertSite's email server monitor fields, as PATCH takes them (all optional)."""

    billing_plancode: str | None | UnsetType = UNSET  # null: what GET answers
    name: str | UnsetType = UNSET
    hostname: str | UnsetType = UNSET
    port: int | str | None | UnsetType = UNSET
    interval: int | float | str | UnsetType = UNSET  # GET answers 1.5 for 90 s
    timeout: int | str | UnsetType = UNSET
    enabled: bool | str | UnsetType = UNSET
    locations: list[LocationIn | int | str] | None | UnsetType = UNSET
    # Credentials and implicit TLS (mailprobe's names; `smtps://`, `imaps://`, `pop3s://` in
    # `hostname` set `ssl` too).
    login: str | None | UnsetType = UNSET
    password: str | None | UnsetType = UNSET
    ssl: bool | str | UnsetType = UNSET
    # AlertSite's other monitor fields: accepted and ignored (see docs/alertsite.md), the read-only
    # ones included so an object from GET can be sent back.
    access_type: Any = UNSET
    alert_note: Any = UNSET
    allow_internal_testing: Any = UNSET
    blackout_ids: Any = UNSET
    custom_properties: Any = UNSET
    dns_bypass: Any = UNSET
    fqdn: Any = UNSET
    has_active_performance_alerts: Any = UNSET
    has_performance_alerts: Any = UNSET
    has_sla: Any = UNSET
    home_location: Any = UNSET
    id: Any = UNSET
    ipv4: Any = UNSET
    mode: Any = UNSET
    monitor_mode: Any = UNSET
    note: Any = UNSET
    notify_on_error: Any = UNSET
    resolve_dns: Any = UNSET
    rotate_locations: Any = UNSET
    type: Any = UNSET


class EmailMonitorCreate(EmailMonitorFields, kw_only=True):
    """POST: `billing_plancode`, `name` and `hostname` are required."""

    billing_plancode: str
    name: str
    hostname: str


class AlertSiteLocation(msgspec.Struct):
    id: str  # an AlertSite location id (digits) or an ISO 3166-1 alpha-2 code
    name: str  # the country mailprobe checks from


class AlertSiteMonitor(msgspec.Struct):
    """A monitor as AlertSite's GET answers it: AlertSite's common fields (constants where
    mailprobe has no such thing), its email server fields, and mailprobe's login/password/ssl."""

    id: str
    type: str
    name: str
    hostname: str
    port: int | None
    enabled: bool
    interval: int | float
    timeout: int
    locations: list[AlertSiteLocation]
    ssl: bool
    login: str | None
    password: str | None
    access_type: str
    notify_on_error: bool
    billing_plancode: None = None
    alert_note: None = None
    note: None = None
    ipv4: None = None
    home_location: None = None
    mode: None = None
    allow_internal_testing: bool = False
    has_sla: bool = False
    has_performance_alerts: bool = False
    has_active_performance_alerts: bool = False
    rotate_locations: bool = False
    resolve_dns: bool = True
    blackout_ids: list[str] = msgspec.field(default_factory=list)
    custom_properties: list[object] = msgspec.field(default_factory=list)


# --- AlertSite values → ours -------------------------------------------------------------------

_WHOLE = re.compile(r"[0-9]{1,9}")  # bounded, so int() never meets a 5000-digit string
_NUMBER = re.compile(r"[0-9]{1,9}(\.[0-9]{1,9})?")


def whole(value: int | str, field: str, low: int, high: int, message: str) -> int:
    """A whole number AlertSite may send as a number or a string of digits, within bounds."""
    number = value if isinstance(value, int) else None
    if isinstance(value, str) and _WHOLE.fullmatch(value.strip()):
        number = int(value.strip())
    if number is None or not low <= number <= high:
        raise bad_request(field, message)
    return number


def flag(value: bool | str, field: str) -> bool:
    if isinstance(value, bool):
        return value
    text = value.strip().lower()
    if text in ("true", "y", "yes", "1"):
        return True
    if text in ("false", "n", "no", "0"):
        return False
    raise bad_request(field, f"{field} must be true or false")


def _port(value: int | str | None) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return whole(value, "port", 1, 65535, "port must be a whole number from 1 to 65535")


def minutes(seconds: int) -> int | float:
    """An interval as GET answers it: whole minutes, else minutes to two decimals."""
    return seconds // 60 if seconds % 60 == 0 else round(seconds / 60, 2)


def _number(value: int | float | str) -> int | float | None:
    if isinstance(value, str):
        text = value.strip()
        return float(text) if _NUMBER.fullmatch(text) else None
    return value if math.isfinite(value) else None


def interval_of(value: int | float | str, stored: int | None) -> int | None:
    """Minutes → seconds to store; None when `value` restates the stored interval as GET
    answers it (1.5 for 90 s), so a GET → PATCH round trip changes nothing."""
    number = _number(value)
    if number is not None and stored is not None and number == minutes(stored):
        return None
    if number is None or number != int(number) or not INTERVAL_MIN <= number <= INTERVAL_MAX:
        raise bad_request(
            "interval",
            f"interval must be a whole number of minutes from {INTERVAL_MIN} to {INTERVAL_MAX}",
        )
    return int(number) * 60


def location(item: LocationIn | int | str) -> str:
    """An AlertSite location id (mapped), or an ISO 3166-1 alpha-2 code, → the country code."""
    raw = item.id if isinstance(item, LocationIn) else item
    text = str(raw).strip()
    if text.isascii() and text.isdigit():
        mapped = LOCATIONS.get(int(text)) if len(text) < 10 else None
        if mapped is None:
            raise bad_request(
                "locations",
                f"locations: AlertSite location {text} is not one mailprobe maps to a country"
                " (docs/alertsite.md lists those it does); give the country to check from as an"
                ' ISO 3166-1 alpha-2 code instead, e.g. {"id": "US"}',
            )
        return mapped[1]
    if text.upper() not in validation.COUNTRIES:
        raise bad_request(
            "locations",
            f"locations: {text!r} is neither a known AlertSite location id nor an ISO 3166-1"
            " alpha-2 country code",
        )
    return text.upper()


def _countries(items: list[LocationIn | int | str] | None) -> list[str] | None:
    """[] or null → null: the controller picks the countries (AlertSite: account defaults)."""
    return None if items is None else validation.country_codes([location(i) for i in items])


def _bad_hostname(why: str) -> ApiError:
    return bad_request("hostname", f"hostname: {why}")


def _host_and_port(rest: str) -> tuple[str, str | None]:
    """`host`, `host:port`, `[IPv6]` or `[IPv6]:port` → (host, port text or None)."""
    if rest.startswith("["):
        inside, closed, after = rest[1:].partition("]")
        if not closed or (after and not after.startswith(":")):
            raise _bad_hostname("write an IPv6 address as [address] or [address]:port")
        try:
            ipaddress.IPv6Address(inside)
        except ValueError:
            raise _bad_hostname(f"{inside!r} in brackets is not an IPv6 address") from None
        return inside, after[1:] if after else None
    if rest.count(":") > 1:
        raise _bad_hostname("write an IPv6 address in brackets, e.g. smtps://[2001:db8::1]:465")
    host, colon, port = rest.partition(":")
    return host, port if colon else None


def _hostname(raw: str, email: EmailType) -> tuple[str, int | None, bool | None]:
    """`hostname`, bare or as `scheme://host[:port]` (AlertSite's spelling for the servers of
    round-trip email monitors, `smtps://smtp.example.com:465`): (host, port, implicit TLS);
    port and TLS are None when the hostname does not say."""
    if "://" not in raw:
        return raw, None, None
    scheme, _, rest = raw.partition("://")
    tls = email.schemes.get(scheme.strip().lower())
    if tls is None:
        allowed = ", ".join(f"{s}://" for s in email.schemes)
        raise _bad_hostname(f"a {email.slug} monitor takes {allowed} or a bare host name")
    rest = rest.removesuffix("/")
    if any(ch in rest for ch in "/?#@"):
        raise _bad_hostname("give scheme://host[:port] only: no path, query or user name")
    host, port = _host_and_port(rest)
    if not host:
        raise _bad_hostname("no host after the scheme")
    if port is None:
        return host, None, tls
    if _WHOLE.fullmatch(port) and 1 <= int(port) <= 65535:
        return host, int(port), tls
    raise _bad_hostname("the port after ':' must be a whole number from 1 to 65535")


class MonitorFields(TypedDict, total=False):
    """Keyword arguments of our Create/Update Struct an AlertSite body sets (config apart)."""

    customer_id: int | str
    name: str
    hostname: str
    port: int | None
    check_interval: int
    timeout_seconds: int
    allowed_country_codes: list[str] | None
    status: str


@dataclass
class Translated:
    """What an AlertSite body says, in mailprobe's terms (UNSET: not sent)."""

    fields: MonitorFields
    ssl: bool | UnsetType = UNSET
    login: str | None | UnsetType = UNSET
    password: str | None | UnsetType = UNSET
    enabled: bool | UnsetType = UNSET

    def touches_config(self) -> bool:
        return any(v is not UNSET for v in (self.ssl, self.login, self.password))


def _address(body: EmailMonitorFields, email: EmailType, out: Translated) -> None:
    """`hostname`, `port` and the TLS its scheme implies, which must agree with `port`."""
    port: int | None | UnsetType = UNSET
    if body.hostname is not UNSET:
        host, url_port, tls = _hostname(body.hostname, email)
        out.fields["hostname"] = host
        if url_port is not None:
            port = url_port
        if tls is not None:
            out.ssl = tls
    if body.port is not UNSET:
        explicit = _port(body.port)
        if port is not UNSET and explicit != port:
            raise bad_request("port", f"port {explicit} contradicts the port in hostname ({port})")
        port = explicit
    if port is not UNSET:
        out.fields["port"] = port


def translate(
    body: EmailMonitorFields, email: EmailType, stored_interval: int | None
) -> Translated:
    out = Translated(fields=MonitorFields())
    if body.name is not UNSET:
        out.fields["name"] = body.name
    _address(body, email, out)
    if body.interval is not UNSET:
        seconds = interval_of(body.interval, stored_interval)
        if seconds is not None:
            out.fields["check_interval"] = seconds
    if body.timeout is not UNSET:
        low, high = validation.TIMEOUT_MIN, validation.TIMEOUT_MAX
        message = f"timeout must be a whole number of seconds from {low} to {high}"
        out.fields["timeout_seconds"] = whole(body.timeout, "timeout", low, high, message)
    if body.locations is not UNSET:
        out.fields["allowed_country_codes"] = _countries(body.locations)
    if body.enabled is not UNSET:
        out.enabled = flag(body.enabled, "enabled")
    if body.ssl is not UNSET:
        ssl = flag(body.ssl, "ssl")
        if out.ssl is not UNSET and out.ssl != ssl:
            raise bad_request("ssl", "ssl contradicts the scheme given in hostname")
        out.ssl = ssl
    out.login, out.password = body.login, body.password
    return out


OAUTH2_NATIVE = (
    "this monitor logs in with OAuth2 (set through the native API), which AlertSite's fields"
    " cannot carry"
)


def oauth2_password(t: Translated) -> None:
    """A monitor with an OAuth2 login takes no password through AlertSite: the grant would stay
    and the password never be used, or a script would think it switched the login."""
    if isinstance(t.password, str) and t.password and t.password != MASK:
        raise bad_request(
            "password",
            f"password: {OAUTH2_NATIVE}; send no password here, or switch the login to a"
            " password through the native API",
        )


def oauth2_bound(fields: list[str]) -> ApiError:
    """The 400 for a change that moves an OAuth2 grant: its secrets are bound to the server,
    port, TLS and user, and only the native API can send them again."""
    named = ", ".join(fields)
    return ApiError(
        400,
        f"{named}: {OAUTH2_NATIVE}; its secrets are only sent for the server, port, TLS"
        f" settings and user they were given with, so change {named} through the native API,"
        " sending the grant's secret again",
        code="secret_required",
        fields=fields,
    )


def check_timeout(interval_seconds: int, timeout: int) -> None:
    """The native rule (timeout ≤ interval), said in AlertSite's units."""
    if not validation.timeout_fits(interval_seconds, timeout):
        raise bad_request(
            "timeout",
            f"timeout ({timeout} seconds) must not be longer than the interval"
            f" ({interval_seconds / 60:g} minutes)",
        )


def _put(cfg: dict[str, object], key: str, value: object, default: object) -> None:
    """Set `key` unless that would only spell out the default where nothing is stored, so a
    GET → PATCH round-trip (which sends `ssl: false`, `login: null`) leaves the config alone."""
    if key in cfg or value != default:
        cfg[key] = value


def _smtp_config(t: Translated, stored: Mapping[str, object]) -> SmtpConfigIn:
    """The SMTP config to store: the stored one (secrets masked, so they are kept) + changes."""
    cfg = dict(stored)
    if t.ssl is not UNSET:
        _put(cfg, "secure", t.ssl, False)
    stored_auth = cfg.get("auth")
    auth = dict(stored_auth) if isinstance(stored_auth, Mapping) else {}
    if t.login is not UNSET:
        _put(auth, "user", t.login, None)
    if t.password is not UNSET:
        _put(auth, "pass", t.password, None)
    if auth != (cfg.get("auth") or {}):
        cfg["auth"] = auth
    return msgspec.convert(cfg, SmtpConfigIn)


def _imap_pop_config(
    t: Translated, stored: Mapping[str, object], email: EmailType
) -> ImapPopConfigIn:
    cfg = {**stored, "protocol": email.type}
    if t.ssl is not UNSET:
        _put(cfg, "tls", t.ssl, False)
    if t.login is not UNSET:
        _put(cfg, "user", t.login, None)
    if t.password is not UNSET:
        _put(cfg, "password", t.password, None)
    return msgspec.convert(cfg, ImapPopConfigIn)


def create_body(t: Translated, email: EmailType) -> SmtpMonitorCreate | ImapPopMonitorCreate:
    # The write path puts it in the organization's default customer (`default_customer`),
    # found only once the whole body is known good; 0 stands in.
    fields: MonitorFields = {**t.fields, "customer_id": 0}
    if t.enabled is not UNSET:
        fields["status"] = "active" if t.enabled else "disabled"
    if email.kind is SMTP:
        smtp = _smtp_config(t, {}) if t.touches_config() else UNSET
        return SmtpMonitorCreate(**fields, smtp_config=smtp)
    return ImapPopMonitorCreate(**fields, imap_pop_config=_imap_pop_config(t, {}, email))


def update_body(
    t: Translated, email: EmailType, monitor: Monitor
) -> SmtpMonitorUpdate | ImapPopMonitorUpdate:
    fields = t.fields.copy()
    if t.enabled is False:
        fields["status"] = "disabled"
    elif t.enabled is True and monitor.status == "disabled":
        fields["status"] = "active"  # a monitor in maintenance stays so: it is checked
    stored = present(monitor).config  # secrets masked: sending the mask keeps them
    if email.kind is SMTP:
        smtp = _smtp_config(t, stored) if t.touches_config() else UNSET
        return SmtpMonitorUpdate(**fields, smtp_config=smtp)
    imap_pop = _imap_pop_config(t, stored, email) if t.touches_config() else UNSET
    return ImapPopMonitorUpdate(**fields, imap_pop_config=imap_pop)


# --- ours → AlertSite -------------------------------------------------------------------------


def _country_name(code: str) -> str:
    country = pycountry.countries.get(alpha_2=code)
    return str(country.name) if country is not None else code


def _location_out(code: str) -> AlertSiteLocation:
    location_id = COUNTRY_LOCATION.get(code)
    return AlertSiteLocation(code if location_id is None else str(location_id), _country_name(code))


def _may_edit(principal: Principal) -> bool:
    return not principal.is_global_supporter and principal.role != "readonly"


def alertsite_monitor(monitor: Monitor, principal: Principal) -> AlertSiteMonitor:
    """The monitor as AlertSite shows it; its config as the native API shows it (only the keys
    sent, secrets masked)."""
    email = BY_TYPE[monitor.type]
    cfg = present(monitor).config  # secrets masked
    if email.kind is SMTP:
        auth = cfg.get("auth")
        auth = auth if isinstance(auth, dict) else {}
        ssl, login, password = cfg.get("secure"), auth.get("user"), auth.get("pass")
    else:
        ssl, login, password = cfg.get("tls"), cfg.get("user"), cfg.get("password")
    return AlertSiteMonitor(
        id=str(monitor.id),
        type=email.slug,
        name=monitor.name,
        hostname=monitor.hostname,
        port=monitor.port,
        enabled=monitor.status != "disabled",
        interval=minutes(monitor.check_interval),
        timeout=monitor.timeout_seconds,
        locations=[_location_out(code) for code in monitor.allowed_country_codes or []],
        ssl=ssl is True,
        login=login if isinstance(login, str) else None,
        password=MASK if password else None,
        access_type="Edit" if _may_edit(principal) else "View",
        notify_on_error=monitor.status == "active",  # maintenance: checked, never notifies
    )


def selected(monitor: AlertSiteMonitor, select: str | None) -> dict[str, object]:
    """AlertSite's `select`: only the named fields (unknown names ignored; empty: none)."""
    out: dict[str, object] = msgspec.to_builtins(monitor)
    if select is None:
        return out
    wanted = {name.strip() for name in select.split(",")}
    return {k: v for k, v in out.items() if k in wanted}


def record_id(raw: str) -> int:
    """AlertSite ids are integers; anything else (or out of range) is no record."""
    text = raw.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 18 or int(text) == 0:
        raise not_found(NOT_FOUND)
    return int(text)


# Our names of what a secret is bound to → AlertSite's (the rest is only set natively).
AS_NAMED = {"secure": "ssl", "tls": "ssl", "auth.user": "login", "user": "login"}
# The columns that add checks or slot-seconds → AlertSite's fields, cited when a budget refuses.
BUDGET_FIELDS = {
    "allowed_country_codes": "locations",
    "check_interval": "interval",
    "timeout_seconds": "timeout",
    "status": "enabled",
}


def no_nul(body: EmailMonitorFields) -> None:
    """A NUL in a field mailprobe stores is a 400 naming it; AlertSite's other fields are
    accepted and ignored, never stored, so whatever they hold is no concern."""
    for f in msgspec.structs.fields(body):
        if f.type is not Any:
            validation.no_nul(getattr(body, f.name), f.encode_name)


# AlertSite fields that change something (`enabled` is our `status`); the ignored ones do not.
MAPPED = (
    "name",
    "hostname",
    "port",
    "interval",
    "timeout",
    "locations",
    "login",
    "password",
    "ssl",
)


def sent_fields(body: EmailMonitorFields) -> set[str]:
    """What a PATCH changes, for the readonly rule (readonly users may change `status` only)."""
    sent = {f for f in MAPPED if getattr(body, f) is not UNSET}
    return sent | ({"status"} if body.enabled is not UNSET else set())


def types_of(type_param: str | None) -> list[str]:
    if type_param is None:
        return list(BY_TYPE)
    wanted = [part.strip() for part in type_param.split(",") if part.strip()]
    unknown = [w for w in wanted if w not in ALERTSITE_TYPES]
    if unknown:
        raise bad_request("type", f"type: unknown monitor type {', '.join(unknown)}")
    return [EMAIL_TYPES[w].type for w in wanted if w in EMAIL_TYPES]
