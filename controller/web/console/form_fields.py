"""The monitor forms' fields, generated from the API's request types (controller.web.api.
monitor_kinds) and the kind registry (controller.monitors.kinds).

Every leaf of a kind's create body is a field of its form, named by its API path
(`smtpConfig.tlsOptions.ca`), so an error naming a field marks that input; a field the API gains
shows up on the form with the widget its type calls for (a test compares each form with the
API's JSON schema). What the form does not show is listed in `UNSHOWN`, each with its reason.
The registry says which paths are secrets (write-only: never put into a page) and where each
login's user sits. Pure: no I/O.
"""

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar

import msgspec
import msgspec.inspect as mi

from controller.monitors import mailbox_apis
from controller.monitors import oauth2_grants as grants
from controller.monitors.kinds import PORT_HINTS, Kind
from controller.web.api.errors import ApiError
from controller.web.api.monitor_kinds import api_of
from controller.web.api.monitor_schemas import MASK
from shared.guards import BrokenInvariant

Widget = Literal[
    "customer", "interval", "fixed", "text", "email", "tel", "number", "list", "check",
    "select", "tls", "secret", "pem",
]  # fmt: skip

V = TypeVar("V")

# Body paths the API takes and the form leaves out, with why.
UNSHOWN: Final[Mapping[str, str]] = {
    "status": "paused and resumed by the page's buttons",
    "config": "an alias of the kind's config key",
    "ignoreTLS": "nodemailer's spelling of ignoreTls, which the form sets",
    "requireTLS": "nodemailer's spelling of requireTls, which the form sets",
    "secretEnv": "monitors-as-code's: the names of the environment variables `apply` reads the"
    " secrets from, not secrets; an edit in the console keeps them",
}
INTERVALS: Final = (30, 60, 120, 300, 600, 900, 1800, 3600)
# One choice for nodemailer's three TLS flags: (value, label, the flags it sets).
TLS_MODES: Final = (
    ("starttls", "STARTTLS, required (port 587 or 25)", "requireTls"),
    ("implicit", "TLS from the first byte (port 465)", "secure"),
    ("none", "STARTTLS when offered", ""),
    ("plain", "never STARTTLS (lab servers)", "ignoreTls"),
)
_TLS_FLAGS: Final = ("secure", "ignoreTls", "requireTls")
# A nested object is sent only when this key of it has a value (an OAuth2 login is chosen by
# its grant; without one the login is the password).
PRESENT_WHEN: Final[Mapping[str, str]] = {"oauth2": "grant"}
# Top-level order on the page; the kind's config sits where `*` is; a new field goes last.
_ORDER: Final = (
    "customerId", "name", "hostname", "port", "*", "checkInterval", "timeoutSeconds",
    "allowedCheckCountryCodes", "notificationEmail", "notificationPhoneNumber", "mailDomain",
)  # fmt: skip
_SERVER_FIRST: Final = ("hostname", "port", "protocol", "tls")
# A new form's choices where the agent's default is not the one to offer first.
_NEW: Final[Mapping[str, str]] = {"tls": "starttls", "imapPopConfig.tls": "on", "receive.tls": "on"}
_CHOICES: Final[Mapping[str, tuple[str, ...]]] = {
    "protocol": ("imap", "pop3"),
    "oauth2.mechanism": grants.MECHANISMS,
    "oauth2.grant": ("", *grants.GRANTS),
    "oauth2.provider": grants.PROVIDERS,
    "api": mailbox_apis.APIS,
    "cleanup": mailbox_apis.CLEANUPS,
}
_WIDGETS: Final[Mapping[str, Widget]] = {
    "customerId": "customer",
    "checkInterval": "interval",
    "notificationEmail": "email",
    "notificationPhoneNumber": "tel",
    "to": "email",
    "from": "email",
    "tlsOptions.ca": "pem",
}
LABELS: Final[Mapping[str, str]] = {
    "customerId": "Customer",
    "checkInterval": "Check every",
    "timeoutSeconds": "Timeout (s)",
    "allowedCheckCountryCodes": "Countries",
    "notificationEmail": "Alert e-mail",
    "notificationPhoneNumber": "Alert SMS number",
    "mailDomain": "Mail domain (DNS posture)",
    "mailboxMonitorId": "Also read in the mailbox of",
    "dkimSelectors": "DKIM selectors",
    "ips": "Outbound IP addresses",
    "domains": "Sending domains",
    "pass": "Password",
    "from": "From",
    "to": "To",
    "spamFolders": "Spam folders",
    "slowAfterSeconds": "Slow after (s)",
    "spamIsFailure": "Delivered into a spam folder counts as down",
    "tls": "TLS from the first byte (else STARTTLS/STLS when credentials are sent)",
    "rejectUnauthorized": "Verify the certificate",
    "ca": "CA certificates (PEM)",
    "servername": "Server name (SNI and certificate check)",
    "allowPlaintextAuth": "Allow credentials without TLS (lab servers)",
    "relayCheck": "Test for an open relay (RCPT TO a foreign domain, never DATA)",
    "mechanism": "SASL mechanism",
    "grant": "OAuth2 grant",
    "tokenUrl": "Token URL (custom provider)",
    "clientId": "Client id",
    "clientSecret": "Client secret",
    "refreshToken": "Refresh token",
    "privateKey": "Private key (PEM, jwt_bearer)",
    "subject": "Subject (jwt_bearer: the mailbox acted as)",
    "api": "Mailbox API (instead of the protocol)",
    "cleanup": "Remove the found message (API)",
}
HINTS: Final[Mapping[str, str]] = {
    "allowedCheckCountryCodes": "e.g. DE, US (empty: the default countries)",
    "notificationPhoneNumber": "E.164, e.g. +4915112345678 (optional)",
    "mailDomain": "e.g. example.com: MX, SPF, DMARC, MTA-STS, TLS-RPT, DANE (optional)",
    "dkimSelectors": "of the mail domain, e.g. mail2026 (at most 6; the common ones and a round"
    " trip's signing one are read anyway)",
    "ips": "public addresses your mail leaves from, e.g. 81.2.69.160 (at most 8)",
    "domains": "e.g. example.com: the domains your mail names (at most 4)",
    "folders": "INBOX, Junk",
    "spamFolders": "Junk",
    "scopes": "empty: the provider's default",
    "servername": "empty: the hostname",
    "receive.port": "default: 993/995 with TLS, else 143/110",
    "tenant": "microsoft: tenant id or domain, common, consumers",
    "api": "graph: Microsoft Graph (an app's client credentials); gmail: the Gmail API"
    " (docs/oauth2.md)",
    "cleanup": "empty or move: to Deleted Items (Gmail: the trash); delete (Graph)",
    "mailboxMonitorId": "optional: the id of an IMAP/POP or round-trip monitor whose mailbox also"
    " holds this mail (the end of its page's address)",
}
_LEGENDS: Final[Mapping[str, str]] = {
    "smtpConfig": "SMTP",
    "imapPopConfig": "IMAP/POP",
    "roundtripConfig": "Round trip",
    "send": "Send (SMTP submission)",
    "receive": "Receive (the mailbox)",
    "auth": "Log in as",
    "tlsOptions": "TLS options",
    "oauth2": "OAuth2 login (instead of the password)",
    "reputation": "Blocklists: outbound addresses and domains",
}


@dataclass(frozen=True)
class FormField:
    """One input: `name` is its API path (a TLS choice: its object's path + `.tls`), `paths`
    the body paths it sets, `group` the path of the object it sits in (its fieldset)."""

    name: str
    paths: tuple[str, ...]
    widget: Widget
    label: str
    group: str
    legend: str
    nullable: bool = False
    required: bool = False
    choices: tuple[str, ...] = ()
    hint: str = ""
    integer: bool = True

    @property
    def secret(self) -> bool:
        return self.widget == "secret"


@dataclass(frozen=True)
class KindForm:
    """A form of a stored type: its fields, and the values the agent uses for a config key
    the body leaves out (`defaults`, by config path)."""

    kind: Kind
    monitor_type: str
    fields: tuple[FormField, ...]
    defaults: Mapping[str, object]

    def sections(self) -> list[tuple[str, list[FormField]]]:
        """The fields in runs of the same object, each with its fieldset's legend ("" for
        the top level)."""
        out: list[tuple[str, list[FormField]]] = []
        last = None
        for f in self.fields:
            if f.widget == "fixed":
                continue
            if f.group != last:
                out.append((f.legend, []))
                last = f.group
            out[-1][1].append(f)
        return out

    def field(self, name: str) -> FormField:
        return next(f for f in self.fields if f.name == name)

    @property
    def config_key(self) -> str:
        return self.kind.config_key

    def secret_paths(self) -> tuple[str, ...]:
        """Every secret of the kind as a body path (passwords, then OAuth2 grants' secrets)."""
        rel = (*self.kind.secrets, *self.kind.grant_secrets)
        return tuple(f"{self.config_key}.{p}" for p in rel)

    def new_values(self) -> dict[str, str]:
        """A new form's values: the agent's defaults, every minute (round trips: five)."""
        values = values_of(self, {self.config_key: {}})
        for f in self.fields:
            if (chosen := _suffix(_NEW, f.name)) is not None:
                values[f.name] = chosen
        long = not self.kind.hostname
        values["checkInterval"], values["timeoutSeconds"] = ("300", "120") if long else ("60", "30")
        return values


def _struct(struct: type[msgspec.Struct]) -> mi.StructType:
    info = mi.type_info(struct)
    if not isinstance(info, mi.StructType):
        raise BrokenInvariant("form_fields._struct: expected isinstance(info, mi.StructType)")
    return info


def _bare(t: mi.Type) -> tuple[mi.Type, bool]:
    """The type without its metadata and null (and whether null is allowed)."""
    if isinstance(t, mi.Metadata):
        return _bare(t.type)
    if isinstance(t, mi.UnionType):
        rest = [x for x in t.types if not isinstance(x, mi.NoneType)]
        nullable = len(rest) < len(t.types)
        if len(rest) == 1:
            inner, _ = _bare(rest[0])
            return inner, nullable
        return mi.UnionType(tuple(rest)), nullable
    return t, False


def leaves(t: mi.StructType, prefix: str = "") -> Iterator[tuple[str, mi.Type, bool, bool]]:
    """(path, type, nullable, required) of every leaf of a request Struct, `UNSHOWN` left out."""
    for f in t.fields:
        path = prefix + f.encode_name
        if f.encode_name in UNSHOWN and (f.encode_name != "config" or not prefix):
            continue
        inner, nullable = _bare(f.type)
        if isinstance(inner, mi.StructType):
            yield from leaves(inner, path + ".")
        else:
            yield path, inner, nullable, f.required


def _suffix(table: Mapping[str, V], path: str) -> V | None:
    """The entry for the longest dotted suffix of `path` in `table`."""
    steps = path.split(".")
    for n in range(len(steps)):
        hit = table.get(".".join(steps[n:]))
        if hit is not None:
            return hit
    return None


def _label(path: str) -> str:
    key = path.rsplit(".", 1)[-1]
    found = LABELS.get(key)
    if found:
        return found
    words = re.sub(r"(?<!^)([A-Z])", r" \1", key).lower()
    return words[:1].upper() + words[1:]


def _legend(group: str) -> str:
    return " / ".join(_LEGENDS.get(step, step) for step in group.split(".")[1:] or [group])


def _widget(path: str, t: mi.Type, secrets: tuple[str, ...]) -> tuple[Widget, tuple[str, ...]]:
    if path in secrets:
        return "secret", ()
    if (named := _suffix(_WIDGETS, path)) is not None:
        return named, ()
    if (choices := _suffix(_CHOICES, path)) is not None:
        return "select", choices
    if isinstance(t, mi.BoolType):
        return "check", ()
    if isinstance(t, mi.IntType | mi.FloatType):
        return "number", ()
    if isinstance(t, mi.ListType):
        return "list", ()
    return "text", ()


def _port_hint(path: str, monitor_type: str) -> str | None:
    return f"default: {PORT_HINTS[monitor_type]}" if path.endswith("port") else None


def _fields(kind: Kind, monitor_type: str) -> tuple[FormField, ...]:
    form = KindForm(kind, monitor_type, (), {})
    secrets = form.secret_paths()
    out: list[FormField] = []
    tls_done: set[str] = set()
    for path, t, nullable, required in leaves(_struct(api_of(kind).create)):
        group, _, key = path.rpartition(".")
        if key in _TLS_FLAGS:
            if group not in tls_done:
                tls_done.add(group)
                flags = tuple(f"{group}.{flag}" for flag in _TLS_FLAGS)
                choices = tuple(value for value, _, _ in TLS_MODES)
                out.append(FormField(f"{group}.tls", flags, "tls", "TLS", group, _legend(group),
                                     choices=choices))  # fmt: skip
            continue
        widget, choices = _widget(path, t, secrets)
        if path == f"{kind.config_key}.protocol" and len(kind.types) > 1:
            widget, choices = "fixed", ()  # the type the form is for (its URL)
        out.append(
            FormField(
                name=path,
                paths=(path,),
                widget=widget,
                label=_label(path),
                group=group,
                legend=_legend(group) if group else "",
                nullable=nullable,
                required=required,
                choices=choices,
                hint=_suffix(HINTS, path) or _port_hint(path, monitor_type) or "",
                integer=not isinstance(t, mi.FloatType),
            )
        )

    first: dict[str, int] = {}
    for n, f in enumerate(out):
        steps = f.name.split(".")
        for i in range(1, len(steps) + 1):
            first.setdefault(".".join(steps[:i]), n)

    def rank(f: FormField) -> tuple[object, ...]:
        """Top-level fields by `_ORDER`; in an object its own fields (server first) before
        the objects it holds, each where it first appears."""
        steps = f.name.split(".")
        top = "*" if steps[0] == kind.config_key else steps[0]
        key: list[object] = [_ORDER.index(top) if top in _ORDER else len(_ORDER)]
        for i in range(1, len(steps)):
            leaf = i == len(steps) - 1
            early = _SERVER_FIRST.index(steps[i]) if steps[i] in _SERVER_FIRST else 9
            key.append((not leaf, early if leaf else 0, first[".".join(steps[: i + 1])]))
        return tuple(key)

    return tuple(sorted(out, key=rank))


def wire_defaults(struct: type[msgspec.Struct]) -> dict[str, object]:
    """The agent's value for each config key the body leaves out, by dotted path."""
    out: dict[str, object] = {}

    def walk(t: mi.StructType, prefix: str) -> None:
        for f in t.fields:
            inner, _ = _bare(f.type)
            if isinstance(inner, mi.StructType):
                walk(inner, f"{prefix}{f.encode_name}.")
            elif f.default is not msgspec.NODEFAULT:
                out[prefix + f.encode_name] = f.default
            elif f.default_factory is not msgspec.NODEFAULT:
                out[prefix + f.encode_name] = f.default_factory()

    walk(_struct(struct), "")
    return out


_FORMS: dict[str, KindForm] = {}


def kind_form(kind: Kind, monitor_type: str) -> KindForm:
    """The form of `monitor_type` (a stored type of `kind`)."""
    if monitor_type not in _FORMS:
        defaults = wire_defaults(kind.config)
        if len(kind.types) > 1:
            defaults["protocol"] = monitor_type
        _FORMS[monitor_type] = KindForm(kind, monitor_type, _fields(kind, monitor_type), defaults)
    return _FORMS[monitor_type]


# --- reading a stored monitor into the form ---------------------------------------------------


def at(holder: object, path: str) -> object:
    """The value at a dotted path of nested mappings; None where a step is missing."""
    for step in path.split("."):
        holder = holder.get(step) if isinstance(holder, Mapping) else None
    return holder


def _tls_choice(config: Mapping[str, object], group: str) -> str:
    """The TLS choice of nodemailer's flags in `group` of a config (defaults filled in)."""
    holder = at(config, group) if group else config
    for value, _, sets in TLS_MODES:
        if sets and isinstance(holder, Mapping) and holder.get(sets) is True:
            return value
    return "none"


def _shown(f: FormField, holder: Mapping[str, object]) -> str:
    """A field's text from a body-shaped mapping; secrets and CAs are never put back (see
    `is_set`)."""
    if f.widget in ("secret", "pem"):
        return ""
    value = at(holder, f.name)
    if f.widget == "check":
        return "on" if value else ""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return "" if value is None else str(value)


def values_of(form: KindForm, shown: Mapping[str, object]) -> dict[str, str]:
    """The form's values for a monitor as the API shows it (a body-shaped mapping: top-level
    fields and its config); a key the config leaves out reads as the agent's default."""
    config = _with_defaults(shown.get(form.config_key) or {}, form.defaults)
    filled = {**shown, form.config_key: config}
    out = {}
    for f in form.fields:
        if f.widget == "tls":
            out[f.name] = _tls_choice(config, f.group.removeprefix(form.config_key).lstrip("."))
        else:
            out[f.name] = _shown(f, filled)
    return out


def _with_defaults(config: object, defaults: Mapping[str, object]) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(config))
    for path, value in defaults.items():
        *legs, key = path.split(".")
        holder = out
        for leg in legs:
            nxt = holder.setdefault(leg, {})
            if not isinstance(nxt, dict):  # null: an object the config does not hold
                break
            holder = nxt
        else:
            holder.setdefault(key, value)
    return out


def is_set(form: KindForm, shown: Mapping[str, object]) -> dict[str, str]:
    """The secrets and CAs a stored monitor holds, by field name, with what the page may say
    of them (a CA: how many certificates; a secret: only that one is set)."""
    out = {}
    for f in form.fields:
        value = at(shown, f.name)
        if f.secret and value == MASK:
            out[f.name] = "set"
        elif f.widget == "pem" and isinstance(value, str) and value:
            n = value.count("-----BEGIN CERTIFICATE-----")
            out[f.name] = f"set: {n} certificate{'s' if n != 1 else ''}"
    return out


# --- the form as the API's body ---------------------------------------------------------------


def _number(raw: str, f: FormField) -> int | float:
    try:
        return int(raw) if f.integer else float(raw)
    except ValueError:
        kind = "a whole number" if f.integer else "a number"
        raise ApiError(
            400, f"{f.name} must be {kind}", code="invalid_body", fields=[f.name]
        ) from None


def _list(raw: str) -> list[str]:
    return [c.strip() for c in raw.replace(" ", ",").split(",") if c.strip()]


def _put(body: dict[str, Any], path: str, value: object) -> None:
    *legs, key = path.split(".")
    holder = body
    for leg in legs:
        holder = holder.setdefault(leg, {})
    holder[key] = value


def _drop(body: dict[str, Any], path: str) -> None:
    *legs, key = path.split(".")
    holder: object = body
    for leg in legs:
        holder = holder.get(leg) if isinstance(holder, dict) else None
    if isinstance(holder, dict):
        holder.pop(key, None)


def _prune(holder: dict[str, Any]) -> None:
    """Leave out nested objects left empty, and those `PRESENT_WHEN` says are not chosen."""
    for key, value in list(holder.items()):
        if isinstance(value, dict):
            _prune(value)
            chooser = PRESENT_WHEN.get(key)
            if not value or (chooser is not None and not value.get(chooser)):
                del holder[key]


def body_of(
    form: KindForm,
    values: Mapping[str, str],
    secret: Callable[[FormField], str | None],
    stored: Mapping[str, object] | None = None,
) -> dict[str, Any]:
    """The form's values as the API's JSON body. `secret(field)`: what to send for a secret
    left empty (a value typed before a refused submit, the mask keeping a stored one, or None);
    `stored`: the monitor as the API shows it (an edit), whose CAs an empty CA field keeps.
    Config keys equal to the agent's default are left out, as are empty optional fields (an
    edit sends null for an empty nullable top-level field, clearing it)."""
    body: dict[str, Any] = {}
    cfg = form.config_key + "."
    for f in form.fields:
        raw = values.get(f.name, "")
        raw = raw if f.widget in ("secret", "pem") else raw.strip()
        in_config = f.name.startswith(cfg)
        value: object = None
        if f.widget == "tls":
            chosen = next((sets for v, _, sets in TLS_MODES if v == raw), "requireTls")
            for path in f.paths:
                if path.endswith("." + chosen):
                    _put(body, path, True)
            continue
        if f.widget == "fixed":
            value = form.monitor_type
        elif f.widget == "check":
            value = raw == "on"
            if value == form.defaults.get(f.name.removeprefix(cfg)):
                continue
        elif f.widget == "secret":
            value = raw or secret(f)
        elif f.widget == "pem":
            value = raw.strip() or None
            if value is None and stored is not None and values.get(f"{f.name}~clear") != "on":
                value = at(stored, f.name) or None
        elif not raw:
            value = None
        elif f.widget in ("number", "interval"):
            value = _number(raw, f)
        elif f.widget == "list":
            value = _list(raw)
        else:
            value = raw
        if value is None:
            if f.required:
                value = ""  # the API's message names it
            elif not (f.nullable and not in_config and stored is not None):
                continue
        _put(body, f.name, value)
    _drop_unused_logins(form, body)
    _prune(body)
    return body


def _drop_unused_logins(form: KindForm, body: dict[str, Any]) -> None:
    """A login without a user name is none: its password is not sent (the field may hold the
    mask of a stored one); one with an OAuth2 grant sends no password beside it."""
    for login in form.kind.logins:
        user = at(body, f"{form.config_key}.{login.user}")
        grant = at(body, f"{form.config_key}.{login.oauth2}.grant")
        if not user:
            _drop(body, f"{form.config_key}.{login.oauth2}")
        if not user or (grant and at(body, f"{form.config_key}.{login.secret}") == MASK):
            _drop(body, f"{form.config_key}.{login.secret}")
