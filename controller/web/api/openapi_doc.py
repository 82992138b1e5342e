"""The OpenAPI document made to say what the API does: its error bodies, its error statuses,
bearer authentication, UUID path ids, the request rules the handlers enforce, the statuses a
result may have, operationIds a client reads (`operation_ids`), and links from each create to
what the new resource's id opens.

Litestar documents every error as its own default body (`status_code`, `detail`, `extra`) and
only 400; the API answers `errors.ErrorBody` (AlertSite's `{"errors": [...]}` under `/api/v3`)
with 401, 403, 404, 408, 409, 413, 415, 429 and 503 too, each where it happens. `document`
rewrites the generated document once, at the first request under `/schema` (`on_demand`), in a
thread before that request renders it: a replica nobody asks for it never builds it.
"""

import asyncio
import re
from typing import Any, cast
from zoneinfo import available_timezones

import msgspec
from litestar import Litestar, Request
from litestar.enums import ScopeType
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import (
    Components,
    Link,
    OpenAPI,
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Parameter,
    PathItem,
    Reference,
    Schema,
    SecurityScheme,
)
from litestar.types import ASGIApp, Receive, Scope, Send

from controller.access.accounts_store import ROLES
from controller.monitors.kinds import IMAP_POP
from controller.monitors.validation import (
    CHECK_INTERVAL_MAX,
    CHECK_INTERVAL_MIN,
    COUNTRIES,
    FOLDER_MAX,
    STATUSES,
    TIMEOUT_MAX,
    TIMEOUT_MIN,
    WHITE_SPACE,
)
from controller.web.alertsite.locations import LOCATIONS
from controller.web.alertsite.mapping import ALERTSITE_TYPES, INTERVAL_MAX, INTERVAL_MIN
from controller.web.api.errors import ALERTSITE_PREFIX
from controller.web.api.operation_ids import operation_id
from controller.web.api.users import PASSWORD_MIN

BEARER = "bearer"
# Paths anyone may call (the auth middleware's exclusions).
PUBLIC = ("/health", "/ready", "/metrics", "/api/auth/login", "/api/v3/access-tokens")
# Path parameters the API parses as UUIDs (a malformed one is a 400 naming it).
UUID_PARAMS = frozenset(
    {
        "smtpMonitorPublicId",
        "imapPopMonitorPublicId",
        "roundtripMonitorPublicId",
        "heartbeatMonitorPublicId",
        "userPublicId",
        "windowId",
        "channelId",
    }
)
ERROR_STATUSES = {
    "400": "the request is malformed or a field is invalid (`fields` names it)",
    "401": "no token, or an expired or revoked one",
    "403": "the token's role may not do this",
    "404": "no such resource in the caller's organization",
    "408": "the request body did not arrive whole within `API_BODY_SECONDS` (`body_timeout`)",
    "409": "the request conflicts with the resource's state",
    "413": "the request body is larger than the API accepts",
    "429": "too many requests: wait `Retry-After` seconds",
    "503": "not now, here: wait `Retry-After` seconds if sent, or ask another replica",
}
# The error statuses only some operations answer, and why: the password threads full (`busy`,
# with `Retry-After: 1`: auth.busy); the check pipeline not in this process (`unavailable`:
# results._running, scheduling.trigger); a report's body not of a report's type, or the report
# bodies being read at their bound (`reports_busy`: reports), or sent too slowly (a raw body:
# body_bounds). Every operation with a JSON body may answer 408 (body_bounds).
_BUSY = "the password threads are all busy (`busy`): wait `Retry-After` seconds"
_NO_PIPELINE = "the check pipeline is not running in this process (`unavailable`)"
SOME_STATUSES: dict[tuple[str, str], dict[str, str]] = {
    ("post", "/api/auth/login"): {"503": _BUSY},
    ("post", "/api/v3/access-tokens"): {"503": _BUSY},
    ("post", "/api/users"): {"503": _BUSY},
    ("get", "/api/agents"): {"503": _NO_PIPELINE},
    ("post", "/reports/tls/{domain}/{token}"): {
        "408": ERROR_STATUSES["408"],
        "415": "the Content-Type is not a TLS-RPT report's (`unsupported_type`)",
        "503": "the report bodies being read at once are at their bound (`reports_busy`):"
        " wait `Retry-After` seconds",
    },
}
_TRIGGER = {
    "503": "the check pipeline is not running in this process, or could not take the round now"
    " (`unavailable`)"
}
_NOT_READY = Schema(
    type=OpenAPIType.OBJECT,
    required=["status", "reason"],
    properties={
        "status": Schema(type=OpenAPIType.STRING, enum=["not ready"]),
        "reason": Schema(type=OpenAPIType.STRING),
    },
)
# The logins' answers to wrong credentials: ours a 401; AlertSite's, which its API pages document
# as a 400 `invalid_request - User authentication failed.`, a 400 to a well-formed request.
CREDENTIAL_ERRORS = {
    ("/api/auth/login", "401"): "wrong e-mail or password (or a disabled user)",
    ("/api/v3/access-tokens", "400"): (
        "the request is malformed, or the username or password is wrong: AlertSite answers"
        " wrong credentials with 400 `invalid_request - User authentication failed.`"
    ),
}

_ERROR_BODY = Schema(
    type=OpenAPIType.OBJECT,
    required=["statusCode", "code", "message", "fields"],
    additional_properties=False,
    properties={
        "statusCode": Schema(type=OpenAPIType.INTEGER),
        "code": Schema(type=OpenAPIType.STRING, description="stable, machine-readable"),
        "message": Schema(type=OpenAPIType.STRING, description="for a person"),
        "fields": Schema(
            type=OpenAPIType.ARRAY,
            items=Schema(type=OpenAPIType.STRING),
            description="the input at fault, as dotted paths (`smtpConfig.auth.user`)",
        ),
    },
)
_ALERTSITE_ERRORS = Schema(
    type=OpenAPIType.OBJECT,
    required=["errors"],
    properties={
        "errors": Schema(
            type=OpenAPIType.ARRAY,
            items=Schema(
                type=OpenAPIType.OBJECT,
                required=["code", "message"],
                properties={
                    "code": Schema(type=OpenAPIType.INTEGER),
                    "message": Schema(type=OpenAPIType.STRING),
                },
            ),
        )
    },
)


# Rules the handlers enforce beyond the Structs' types (validation.py, parse_ident, the
# AlertSite translation), stated per property of the request bodies and per query parameter so
# a client (and a fuzzer) knows a valid request before sending it. Where a rule cannot be said
# exactly, the pattern is the narrower one: what it admits, the server accepts.
JsonObject = dict[str, Any]


def _label(first: str) -> str:
    """1-63 letters, digits or hyphens, no hyphen at either end, and not one in both the 3rd
    and 4th places: IDNA (validation.hostname) keeps those for A-labels (`xn--`), which the
    pattern leaves out, the narrower rule (the fuzzer's `cL--EWj6YHo` was a 400)."""
    x, ldh = "[A-Za-z0-9]", "[A-Za-z0-9-]"
    return f"{first}(?:{x}|{ldh}(?:{x}(?:{ldh}{{0,59}}{x})?|-{x}(?:{ldh}{{0,58}}{x})?))?"


_LABEL = _label("[A-Za-z0-9]")
_TOP = _label("[A-Za-z]")  # a last label is not all digits
_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_IPV4 = rf"(?:{_OCTET}\.){{3}}{_OCTET}"
_UUID = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_NO_CONTROL = "\\x00-\\x1f\\x7f-\\x9f\\u2028\\u2029"
HOSTNAME = {"pattern": f"^(?:(?:{_LABEL}\\.)*{_TOP}|{_IPV4})$", "maxLength": 253}
# A monitor's public id or a host name (validation.depends_on), and a DKIM selector
# (shared.sidechecks.readiness.selector, any case: it is stored lower case).
DEPENDS_ON = {"pattern": f"^(?:{_UUID}|(?:{_LABEL}\\.)*{_TOP}|{_IPV4})$", "maxLength": 253}
_SELECTOR_LABEL = "[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
DKIM_SELECTOR = {"pattern": f"^{_SELECTOR_LABEL}(?:\\.{_SELECTOR_LABEL})*$", "maxLength": 63}
MAIL_DOMAIN = {"pattern": f"^(?:(?:{_LABEL}\\.)+{_TOP})?$", "maxLength": 253}  # "": none
_EMAIL = f"[A-Za-z0-9_+-]{{1,64}}@(?:{_LABEL}\\.)+{_TOP}"
EMAIL = {"pattern": f"^{_EMAIL}$", "maxLength": 254}
NAME = {
    # What validation.name keeps: white space around (stripped), then one line without control
    # characters that begins and ends with a character other than white space.
    "pattern": f"^[{WHITE_SPACE}]*[^{WHITE_SPACE}{_NO_CONTROL}]"
    f"(?:[^{_NO_CONTROL}]*[^{WHITE_SPACE}{_NO_CONTROL}])?[{WHITE_SPACE}]*$",
    "maxLength": 200,
    "description": "one line, not blank, at most 200 characters",
}
CUSTOMER_ID_TEXT: JsonObject = {
    "type": "string",
    "pattern": f"^(?:0*[1-9][0-9]{{0,17}}|{_UUID})$",
}
CUSTOMER_ID: JsonObject = {
    "description": "numeric customer id or public UUID",
    "anyOf": [{"type": "integer", "minimum": 1, "maximum": 2**63 - 1}, CUSTOMER_ID_TEXT],
}
# In a path or a query the id is text, digits or a UUID: an integer there would be sent as its
# JSON Schema value's text, `1121.0` for the integer 1121.0, which parse_ident refuses.
CUSTOMER_ID_PARAMETER: JsonObject = {"description": CUSTOMER_ID["description"], **CUSTOMER_ID_TEXT}
NULL = {"type": "null"}
ZONES = sorted(available_timezones())


def zone_names(zones: list[str]) -> list[str]:
    """An identifier per IANA zone for the enum's generated constants (`x-enum-varnames`):
    `Etc/GMT+1` → `ETC_GMT_PLUS_1`, `Etc/GMT-1` → `ETC_GMT_MINUS_1`, `America/Port-au-Prince`
    → `AMERICA_PORT_AU_PRINCE`; unique, or this raises at import."""
    names = []
    for zone in zones:
        spelled = re.sub(r"-(?=\d)", "_MINUS_", zone.replace("+", "_PLUS_"))
        names.append(re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9]", "_", spelled)).strip("_").upper())
    if len(set(names)) != len(names):
        raise ValueError("two time zones make one enum name")
    return names


E164 = "\\+[1-9][0-9]{6,14}"
NO_NUL = "^[^\\x00]*$"
NUL_REFUSED = frozenset({"search"})  # the query parameters validation.no_nul checks
# AlertSite's flags: JSON booleans or these words (alertsite_mapping.flag)
_WORDS = ("true", "y", "yes", "1", "false", "n", "no", "0")
_FLAG = "|".join("".join(f"[{c.upper()}{c}]" if c.isalpha() else c for c in w) for w in _WORDS)
FLAG = {"pattern": f"^\\s*(?:{_FLAG})\\s*$"}
_TYPES = "|".join(sorted(ALERTSITE_TYPES))
UUID_STRING = {"type": "string", "format": "uuid"}
DATE_TIME = {"type": "string", "format": "date-time"}
_CHANNEL_URL = {
    "type": "string",
    "pattern": "^https://[a-z0-9](?:[a-z0-9.-]{0,60}[a-z0-9])?(?::[1-9][0-9]{0,3})?(?:/[!-~]*)?$",
}
_STRING_RULES: dict[str, JsonObject] = {
    "name": NAME,
    "hostname": HOSTNAME,
    "email": EMAIL,
    "mailDomain": MAIL_DOMAIN,
    "dependsOn": DEPENDS_ON,
    "dkimSelectors": DKIM_SELECTOR,
    "notificationPhoneNumber": {
        "pattern": f"^(?:{E164})?$",  # "": none
        "description": "E.164, a number valid in its country's plan (libphonenumber)",
    },
    "notificationEmail": {"pattern": f"^(?:{_EMAIL})?$", "maxLength": 254},  # "": none
    "status": {"enum": sorted(STATUSES)},
    "monitorId": {"format": "uuid"},
    "monitorIds": {"format": "uuid"},
    "ChannelCreate.url": {"pattern": _CHANNEL_URL["pattern"]},
    "ChannelUpdate.url": {"pattern": _CHANNEL_URL["pattern"]},
    "startsAt": {"format": "date-time"},
    "endsAt": {"format": "date-time"},
    "startTime": {"pattern": "^(?:[01][0-9]|2[0-3]):[0-5][0-9]$"},
    "timezone": {"enum": ZONES, "x-enum-varnames": zone_names(ZONES)},
    "protocol": {"enum": list(IMAP_POP.types)},
    "role": {"enum": list(ROLES)},
    "UserCreate.password": {"minLength": PASSWORD_MIN},
}
# A maintenance window: exactly one of monitorId and customerId, and either a one-off
# schedule or a weekly one (maintenance._scope and _schedule).
_WINDOW_RULES = {
    "allOf": [
        {
            "oneOf": [
                {
                    "required": ["monitorId"],
                    "properties": {"monitorId": UUID_STRING, "customerId": NULL},
                },
                {"required": ["customerId"], "properties": {"monitorId": NULL}},
            ]
        },
        {
            "oneOf": [
                {
                    "required": ["startsAt", "endsAt"],
                    "properties": {
                        "startsAt": DATE_TIME,
                        "endsAt": DATE_TIME,
                        **dict.fromkeys(("weekday", "startTime", "durationMinutes"), NULL),
                    },
                },
                {
                    "required": ["weekday", "startTime", "durationMinutes"],
                    "properties": {
                        "weekday": {"type": "integer"},
                        "startTime": {"type": "string"},
                        "durationMinutes": {"type": "integer"},
                        **dict.fromkeys(("startsAt", "endsAt"), NULL),
                    },
                },
            ]
        },
    ]
}
# A notification channel: each kind's required fields (channels.stored); `url` an https URL
# with a host and no credentials (OrgEgress.url_problem), `secret` not the mask on create.
_NEW_SECRET = {"type": "string", "pattern": "^(?!\\*{8}$)[^\\x00]+$"}
_CHANNEL_RULES = {
    "oneOf": [
        {
            "required": ["kind", "url", "secret"],
            "properties": {
                "kind": {"enum": ["webhook"]},
                "url": _CHANNEL_URL,
                "secret": _NEW_SECRET,
            },
        },
        {
            "required": ["kind", "url"],
            "properties": {
                "kind": {"enum": ["slack", "teams", "alertmanager"]},
                "url": _CHANNEL_URL,
            },
        },
        {
            "required": ["kind", "secret"],
            "properties": {"kind": {"enum": ["pagerduty", "opsgenie"]}, "secret": _NEW_SECRET},
        },
        {
            "required": ["kind", "secret", "chatId"],
            "properties": {
                "kind": {"enum": ["telegram"]},
                "secret": _NEW_SECRET,
                "chatId": {"type": "string"},
            },
        },
    ]
}
# AlertSite's numbers may come as strings of digits (alertsite_mapping.whole, interval_of).
_AS_INTERVAL = {"minimum": INTERVAL_MIN, "maximum": INTERVAL_MAX}
_AS_TIMEOUT = {"minimum": TIMEOUT_MIN, "maximum": TIMEOUT_MAX}
for _fields in ("EmailMonitorFields", "EmailMonitorCreate"):
    _STRING_RULES[f"{_fields}.enabled"] = FLAG
    _STRING_RULES[f"{_fields}.ssl"] = FLAG
    _STRING_RULES[f"{_fields}.port"] = {"pattern": "^(?:[1-9][0-9]{0,3})?$"}  # "": default
    _STRING_RULES[f"{_fields}.interval"] = {"pattern": "^(?:[1-9]|[1-9][0-9]|[1-9][0-9]{2})$"}
    _STRING_RULES[f"{_fields}.timeout"] = {"pattern": "^(?:[1-9]|[1-9][0-9]|[12][0-9]{2})$"}
# ISO 3166-1 alpha-2, any case, blanks around (validation.country_codes), and AlertSite's
# location ids mailprobe maps to a country (alertsite_mapping.location).
_COUNTRY = "|".join(f"[{c[0]}{c[0].lower()}][{c[1]}{c[1].lower()}]" for c in sorted(COUNTRIES))
_LOCATION_IDS = sorted(LOCATIONS)
COUNTRY = {"pattern": f"^\\s*(?:{_COUNTRY})\\s*$"}
LOCATION = {"pattern": f"^\\s*(?:{_COUNTRY}|{'|'.join(map(str, _LOCATION_IDS))})\\s*$"}
_STRING_RULES |= {
    "allowedCheckCountryCodes": COUNTRY,
    "locations": LOCATION,
    "LocationIn.id": LOCATION,
    "servername": {"pattern": HOSTNAME["pattern"]},
    "RoundTripConfigIn.to": EMAIL,
    "RoundTripSendIn.from": {"pattern": f"^(?:{_EMAIL})?$", "maxLength": 254},  # "": none
    # printable ASCII, not blank, no quote or backslash (monitors.validation.folders)
    "folders": {"pattern": f"^(?=.*[^ ])[ !#-\\[\\]-~]{{1,{FOLDER_MAX}}}$"},
    "spamFolders": {"pattern": f"^(?=.*[^ ])[ !#-\\[\\]-~]{{1,{FOLDER_MAX}}}$"},
}
# An outbound address for the blocklists (validation.reputation): public unicast only, which a
# pattern says narrowly: IPv4 without the first octets of any private, shared, loopback,
# link-local, documentation, benchmarking, multicast or reserved range, and IPv6 of RIR space
# (2400::/6 and up) written out in eight groups.
_PUBLIC_OCTET = (
    "(?:[1-9]|1[1-9]|[2-9][0-9]|10[1-9]|11[0-9]|12[0-6]|12[89]|1[3-5][0-9]|16[0-8]|17[01]"
    "|17[3-9]|18[0-9]|19[01]|19[3-7]|199|20[0-2]|20[4-9]|21[0-9]|22[0-3])"
)
PUBLIC_IP = {
    "pattern": f"^(?:{_PUBLIC_OCTET}(?:\\.{_OCTET}){{3}}"
    "|2[4-9a-fA-F][0-9a-fA-F]{2}(?::[0-9a-fA-F]{1,4}){7})$"
}
_STRING_RULES |= {
    "ReputationIn.ips": PUBLIC_IP,
    "ReputationIn.domains": {"pattern": f"^(?:{_LABEL}\\.)+{_TOP}$", "maxLength": 253},
}
# Rules between two fields (or a field and the stored monitor), which JSON Schema cannot state.
_DESCRIPTIONS = {
    "timeoutSeconds": "at most checkInterval (the stored one when an update sends none; "
    "60 on create)",
    "EmailMonitorFields.timeout": "seconds, at most the interval in seconds (the stored one "
    "when an update sends none; 1 minute on create)",
    "EmailMonitorCreate.timeout": "seconds, at most the interval in seconds (1 minute when "
    "not sent)",
    "endsAt": "after startsAt",
    "spamFolders": "each one of `folders`; none with POP3, which reads only the inbox",
    "folders": "IMAP only: POP3 reads only the inbox",
    "oauth2": "an OAuth2 login (docs/oauth2.md): `clientId` always; `tenant` with provider "
    "`microsoft`; `tokenUrl` (https, a host of OAUTH2_TOKEN_HOSTS) with `custom`; "
    "`clientSecret` for `client_credentials` and `refresh_token` with Microsoft, "
    "`refreshToken` for `refresh_token`, `privateKey` (PEM) and `subject` for `jwt_bearer`",
    "RoundTripConfigIn.to": "the mailbox the receive leg reads: in the domain of `receive.user` "
    "when that is an address, else in `receive.hostname`'s domain or a parent of it",
    "RoundTripSendIn.from": "the send login or in its domain when `auth.user` is an address, "
    "else in `to`'s domain; empty: `to`",
    "monitorIds": "public ids of monitors of the caller's organization (another one: 404)",
    "customerIds": "ids of customers of the caller's organization (another one: 404)",
    "ChannelCreate.url": "not ending in the mask `/********`, which a change sends only to keep"
    " the stored URL as the channel shows it",
    "ChannelUpdate.url": "ending in the mask `/********` only as the channel shows it (keeps the"
    " stored URL); any other such URL is refused",
}
_INTEGER_RULES: dict[str, JsonObject] = {
    "locations": {"enum": _LOCATION_IDS},
    "LocationIn.id": {"enum": _LOCATION_IDS},
    "port": {"minimum": 1, "maximum": 65535},
    "checkInterval": {"minimum": CHECK_INTERVAL_MIN, "maximum": CHECK_INTERVAL_MAX},
    "timeoutSeconds": {"minimum": TIMEOUT_MIN, "maximum": TIMEOUT_MAX},
    "EmailMonitorFields.interval": _AS_INTERVAL,
    "EmailMonitorCreate.interval": _AS_INTERVAL,
    "EmailMonitorFields.timeout": _AS_TIMEOUT,
    "EmailMonitorCreate.timeout": _AS_TIMEOUT,
}
_NUMBER_RULES = {
    "EmailMonitorFields.interval": {**_AS_INTERVAL, "multipleOf": 1},
    "EmailMonitorCreate.interval": {**_AS_INTERVAL, "multipleOf": 1},
}
# Query and path parameters, replaced whole (a query cannot carry null).
PARAMETERS: dict[str, JsonObject] = {
    "customerId": CUSTOMER_ID_PARAMETER,
    "customer_id": CUSTOMER_ID_PARAMETER,
    "monitorId": UUID_STRING,
    "from": DATE_TIME,
    "to": DATE_TIME,
    "status": {"type": "string", "enum": sorted(STATUSES)},
    "offset": {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 2**31 - 1}, NULL]},
    "type": {
        "type": "string",
        "description": "comma-separated AlertSite monitor types",
        "pattern": f"^(?:(?:{_TYPES})?,)*(?:{_TYPES})?$",  # empty parts are skipped
    },
}


def _closed_structs() -> list[type[msgspec.Struct]]:
    """The request Structs: those that refuse unknown keys (a 400 naming the key)."""
    found: list[type[msgspec.Struct]] = []
    todo: list[type[msgspec.Struct]] = [msgspec.Struct]
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if cls.__struct_config__.forbid_unknown_fields:
            found.append(cls)
    return sorted(found, key=lambda c: c.__name__)


def request_schemas() -> dict[str, JsonObject]:
    """msgspec's own JSON Schema of the request Structs: every bound (`minimum: 0` too, which
    Litestar drops as falsy), `additionalProperties: false`, optional keys as not required."""
    _, components = msgspec.json.schema_components(
        _closed_structs(), ref_template="#/components/schemas/{name}"
    )
    components["MaintenanceWindowCreate"].update(_WINDOW_RULES)
    components["ChannelCreate"].update(_CHANNEL_RULES)
    # A round trip needs both legs and a recipient (monitors.write_values: _roundtrip_config).
    components["RoundTripConfigIn"]["required"] = ["send", "to", "receive"]
    components["RoundTripSendIn"]["required"] = ["hostname"]
    receive = components["RoundTripReceiveIn"]
    receive["required"] = ["hostname", "user", "password"]
    receive["properties"]["user"] = {"type": "string", "minLength": 1, "pattern": NO_NUL}
    # not null, and not the mask `********` (it keeps a stored password: a new one has none)
    receive["properties"]["password"] = {"type": "string", "pattern": "^(?!\\*{8}$)[^\\x00]+$"}
    receive["properties"]["folders"].update(minItems=1, maxItems=20)
    # `config` is an alias of the kind's config key: one of the two (monitor_rules._pick_config)
    for kind, key in (
        ("Smtp", "smtpConfig"),
        ("ImapPop", "imapPopConfig"),
        ("RoundTrip", "roundtripConfig"),
    ):
        for verb in ("Create", "Update"):
            components[f"{kind}Monitor{verb}"]["not"] = {"required": [key, "config"]}
    components["RoundTripMonitorCreate"]["anyOf"] = [
        {"required": ["roundtripConfig"]},
        {"required": ["config"]},
    ]
    for name, schema in components.items():
        for key, prop in schema.get("properties", {}).items():
            if key == "customerId":
                prop.pop("anyOf", None)
                prop.update(CUSTOMER_ID)
            rule = _STRING_RULES.get(f"{name}.{key}", _STRING_RULES.get(key, {}))
            _constrain(prop, "string", rule)
            _constrain(
                prop, "integer", _INTEGER_RULES.get(f"{name}.{key}", _INTEGER_RULES.get(key, {}))
            )
            _constrain(prop, "number", _NUMBER_RULES.get(f"{name}.{key}", {}))
            if said := _DESCRIPTIONS.get(f"{name}.{key}", _DESCRIPTIONS.get(key)):
                prop["description"] = said
    _no_nul(components)
    return components


def _no_nul(node: object) -> None:
    """Every free string of a request refuses NUL (validation.no_nul: PostgreSQL stores none)."""
    if isinstance(node, list):
        for item in node:
            _no_nul(item)
    elif isinstance(node, dict):
        if node.get("type") == "string" and not node.keys() & {"pattern", "format", "enum"}:
            node["pattern"] = NO_NUL
        for item in node.values():
            _no_nul(item)


def _constrain(schema: JsonObject, kind: str, rule: JsonObject) -> None:
    """Add `rule` to `schema` where it is of JSON type `kind` (itself, a branch of anyOf, an
    item of an array)."""
    if not rule:
        return
    if schema.get("type") == kind:
        schema.update(rule)
    for branch in schema.get("anyOf", []):
        _constrain(branch, kind, rule)
    if "items" in schema:  # each item of a list
        _constrain(schema["items"], kind, rule)


# A result's status as the API shows it (results, latest results, countries): the wire's `up`,
# `down` and `inconclusive`, and the controller's own `missed`.
RESULT_STATUSES = ["up", "down", "missed", "inconclusive"]
_RESULT_STATUS = {
    "type": "string",
    "enum": RESULT_STATUSES,
    "description": "`missed`: the check did not run (errorKind says why); `inconclusive`: the "
    "agent's own path failed its self-check (a canary of the port, or its resolver), so the "
    "failure says nothing about the server; both count neither as up nor as down",
}
_WITH_RESULT_STATUS = ("CheckResultOut", "LatestResult", "CountryState")


def document(app: Litestar) -> None:
    """Build `app`'s OpenAPI document and rewrite it in place."""
    rewrite(app.openapi_schema)


def on_demand(handler: ASGIApp, app: Litestar, path: str) -> ASGIApp:
    """`handler` (`app`'s) with `app`'s document built (`document`) at the first request under
    `path`, in a thread: its ~0.15 CPU-s hold up neither the event loop nor a replica's start.
    Requests under `path` wait for it; once built, a request pays one comparison."""
    lock = asyncio.Lock()
    built = False

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal built
        if not built and scope["type"] == ScopeType.HTTP and _under(scope["path"], path):
            async with lock:
                if not built:
                    await asyncio.to_thread(document, app)
                    built = True
        await handler(scope, receive, send)

    return middleware


def _under(request_path: str, path: str) -> bool:
    return request_path == path or request_path.startswith(path + "/")


def rewrite(spec: OpenAPI) -> None:
    components = spec.components if isinstance(spec.components, Components) else Components()
    spec.components = components
    schemas = components.schemas if components.schemas is not None else {}
    schemas.update(ErrorBody=_ERROR_BODY, AlertSiteErrors=_ALERTSITE_ERRORS)
    components.schemas = schemas
    for name, schema in request_schemas().items():
        if name in schemas:  # Litestar names components by class, as msgspec does
            schemas[name] = cast(Schema, schema)  # a dict renders as itself
    for name in _WITH_RESULT_STATUS:
        response = schemas.get(name)
        if isinstance(response, Schema) and response.properties:
            response.properties["status"] = cast(Schema, _RESULT_STATUS)
    components.security_schemes = {
        BEARER: SecurityScheme(
            type="http",
            scheme="bearer",
            description="a token from POST /api/auth/login (or POST /api/v3/access-tokens)",
        )
    }
    spec.security = [{BEARER: []}]
    paths = spec.paths or {}
    for path, item in paths.items():
        for method in ("get", "put", "post", "patch", "delete"):
            operation = getattr(item, method)
            if operation is not None:
                operation.operation_id = operation_id(method, path)
                _operation(path, operation, method)
    for path, item in paths.items():
        if item.post is not None:
            _links(path, item.post, paths)
    ready = paths.get("/ready")
    if ready is not None and ready.get is not None and ready.get.responses is not None:
        ready.get.responses["503"] = OpenAPIResponse(
            description="not ready: PostgreSQL does not answer, or NATS is not connected",
            content={"application/json": OpenAPIMediaType(schema=_NOT_READY)},
        )


def _links(collection: str, create: Operation, paths: dict[str, PathItem]) -> None:
    """Links from a create to what the created resource's id opens (`/{id}`, `/{id}/results`…),
    so a client (and a fuzzer's stateful run) follows the id the API answers, by name: a
    public UUID where the path says so, else `id`."""
    links: dict[str, Link | Reference] = {}
    for path, item in paths.items():
        head = path.removeprefix(collection + "/").split("/")[0]
        if path == collection or not (path.startswith(collection + "/{") and head.endswith("}")):
            continue
        param = head[1:-1]
        field = "publicId" if param.endswith("PublicId") or param == "customer_id" else "id"
        for method in ("get", "put", "patch", "delete", "post"):
            target = getattr(item, method)
            if target is not None and target.operation_id:
                links[target.operation_id] = Link(
                    operation_id=target.operation_id,
                    parameters={param: f"$response.body#/{field}"},
                )
    for status, response in (create.responses or {}).items():
        if status.startswith("2") and isinstance(response, OpenAPIResponse) and links:
            response.links = links


def _operation(path: str, operation: Operation, method: str) -> None:
    body = "AlertSiteErrors" if path.startswith(ALERTSITE_PREFIX) else "ErrorBody"
    content = {
        "application/json": OpenAPIMediaType(schema=Reference(f"#/components/schemas/{body}"))
    }
    public = path in PUBLIC or path.startswith("/schema")
    if public:
        operation.security = []
    statuses = {"400", "429"}
    if not public:
        # 404 also without an id in the path: a body can name another organization's customer
        statuses |= {"401", "403", "404"}
    if operation.request_body is not None:
        statuses |= {"408", "413"}
    if path.endswith("/trigger-check") or path.startswith("/api/users"):
        statuses.add("409")
    if path == "/api/auth/login":
        statuses.add("401")
    some = _TRIGGER if path.endswith("/trigger-check") else SOME_STATUSES.get((method, path), {})
    statuses |= set(some)
    responses = operation.responses if operation.responses is not None else {}
    for status in sorted(statuses):
        description = some.get(status) or CREDENTIAL_ERRORS.get((path, status))
        description = description or ERROR_STATUSES[status]
        responses[status] = OpenAPIResponse(description=description, content=content)
    operation.responses = responses
    params = [p for p in operation.parameters or [] if isinstance(p, Parameter)]
    for parameter in params:
        if parameter.name in UUID_PARAMS and isinstance(parameter.schema, Schema):
            parameter.schema.format = OpenAPIFormat.UUID
        elif parameter.name in PARAMETERS:
            old = parameter.schema if isinstance(parameter.schema, Schema) else Schema()
            rule = {"description": old.description, **PARAMETERS[parameter.name]}
            parameter.schema = cast(Schema, {k: v for k, v in rule.items() if v is not None})
        elif parameter.name in NUL_REFUSED and isinstance(parameter.schema, Schema):
            for schema in (parameter.schema, *(parameter.schema.one_of or [])):
                if isinstance(schema, Schema) and schema.type == OpenAPIType.STRING:
                    schema.pattern = schema.pattern or NO_NUL


class KeptJson(JsonRenderPlugin):
    """`/schema/openapi.json`, encoded once: the document does not change once the app has
    started, and encoding its 326 KB for each anonymous request is what a flood of them costs."""

    def __init__(self) -> None:
        super().__init__()
        self._rendered: bytes | None = None

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        if self._rendered is None:
            self._rendered = super().render(request, openapi_schema)
        return self._rendered
