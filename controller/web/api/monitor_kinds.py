"""What each monitor kind (controller.monitors.kinds) looks like in the HTTP API: its path, path
parameter,
tag, summaries' wording and OpenAPI types. `controller.web.api.monitors`, `results`, `alerts` and
`posture` each build a kind's routes from its `KindApi`, so the kinds share one handler per
endpoint; the app mounts them for every kind of `APIS`, which follows the registry."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import msgspec
from litestar.openapi.spec import Example
from litestar.params import Body, PathParameter

from controller.monitors.heartbeats import HeartbeatMonitorCreate, HeartbeatMonitorUpdate
from controller.monitors.kinds import HEARTBEAT, IMAP_POP, KINDS, ROUNDTRIP, SMTP, Kind
from controller.monitors.write_model import (
    ImapPopMonitorCreate,
    ImapPopMonitorUpdate,
    MonitorCreate,
    MonitorUpdate,
    RoundTripMonitorCreate,
    RoundTripMonitorUpdate,
    SmtpMonitorCreate,
    SmtpMonitorUpdate,
)
from controller.web.api.monitor_schemas import (
    HeartbeatMonitor,
    ImapPopMonitor,
    ImapPopMonitorDetail,
    ImapPopMonitorPage,
    RoundTripMonitor,
    RoundTripMonitorDetail,
    RoundTripMonitorPage,
    SmtpMonitor,
    SmtpMonitorDetail,
    SmtpMonitorPage,
)
from controller.web.api.page import Page

SMTP_EXAMPLE = {
    "customerId": "11111111-1111-4111-8111-111111111111",
    "name": "Outbound SMTP",
    "hostname": "smtp.example.com",
    "port": 587,
    "status": "active",
    "checkInterval": 60,
    "timeoutSeconds": 30,
    "smtpConfig": {
        "secure": False,
        "ignoreTls": False,
        "requireTls": False,
        "auth": {"user": "username", "pass": "password"},
    },
}
SMTP_PATCH_EXAMPLE = {  # seed 002's request body
    "name": "Outbound SMTP (Primary)",
    "hostname": "smtp.example.com",
    "port": 587,
    "status": "paused",
    "checkInterval": 60,
    "timeoutSeconds": 30,
    "allowedCheckCountryCodes": ["de", "us"],
    "smtpConfig": {
        "secure": False,
        "requireTls": True,
        "auth": {"user": "username", "pass": "password"},
    },
}
IMAP_EXAMPLE = {
    "customerId": "11111111-1111-4111-8111-111111111111",
    "name": "Mailbox Access",
    "hostname": "mail.example.com",
    "port": 993,
    "status": "active",
    "checkInterval": 30,
    "timeoutSeconds": 30,
    "imapPopConfig": {
        "protocol": "imap",
        "user": "monitor@example.com",
        "password": "password",
        "tls": True,
        "tlsOptions": {"rejectUnauthorized": True},
    },
}

ROUNDTRIP_EXAMPLE = {
    "customerId": "11111111-1111-4111-8111-111111111111",
    "name": "Mail arrives",
    "checkInterval": 300,
    "timeoutSeconds": 120,
    "roundtripConfig": {
        "send": {
            "hostname": "smtp.example.com",
            "port": 587,
            "requireTls": True,
            "auth": {"user": "probe@example.com", "pass": "password"},
            "from": "probe@example.com",
        },
        "to": "probe@example.net",
        "receive": {
            "protocol": "imap",
            "hostname": "imap.example.net",
            "port": 993,
            "tls": True,
            "user": "probe@example.net",
            "password": "password",
            "folders": ["INBOX", "Junk"],
            "spamFolders": ["Junk"],
        },
        "slowAfterSeconds": 60,
        "spamIsFailure": True,
    },
}


HandlerT = TypeVar("HandlerT", bound=Callable[..., Any])


@dataclass(frozen=True)
class KindApi:
    """A kind's resource: `path` lists and creates, `path`/{`param`} is one monitor."""

    kind: Kind
    path: str
    tag: str
    param: str
    a_label: str  # the label with its article ("an SMTP Monitor")
    out: type[msgspec.Struct]
    detail: type[msgspec.Struct]
    page: object  # the list answer's annotation: a named Page of `out`
    create: type[MonitorCreate] | type[HeartbeatMonitorCreate]
    update: type[MonitorUpdate] | type[HeartbeatMonitorUpdate]
    create_examples: list[Example]
    update_examples: list[Example] | None
    delivery: bool = False  # whether it serves GET …/delivery (round trips)

    @property
    def label(self) -> str:
        return self.kind.label

    @property
    def item(self) -> str:
        """The path, under `path`, of one monitor."""
        return f"/{{{self.param}:str}}"

    @property
    def item_path(self) -> str:
        return self.path + self.item

    @property
    def monitor_id(self) -> object:
        """The annotation of the path parameter that names one monitor."""
        return Annotated[str, PathParameter(name=self.param, description="public UUID")]

    def by_id(self, handler: HandlerT, returns: object = ..., **params: object) -> HandlerT:
        """`typed`, with the handler's `monitor_id` read from this kind's path parameter."""
        return typed(handler, returns, monitor_id=self.monitor_id, **params)

    @staticmethod
    def body(body_type: type[msgspec.Struct], examples: list[Example] | None) -> object:
        """The annotation of a request body of that type."""
        return Annotated[body_type, Body(examples=examples)]


SMTP_API = KindApi(
    kind=SMTP,
    path=SMTP.api_path,
    tag="smtp monitors",
    param="smtpMonitorPublicId",
    a_label="an SMTP Monitor",
    out=SmtpMonitor,
    detail=SmtpMonitorDetail,
    page=SmtpMonitorPage,
    create=SmtpMonitorCreate,
    update=SmtpMonitorUpdate,
    create_examples=[Example("seed", value=SMTP_EXAMPLE)],
    update_examples=[Example("seed", value=SMTP_PATCH_EXAMPLE)],
)
IMAP_POP_API = KindApi(
    kind=IMAP_POP,
    path=IMAP_POP.api_path,
    tag="imap/pop monitors",
    param="imapPopMonitorPublicId",
    a_label="an IMAP/POP Monitor",
    out=ImapPopMonitor,
    detail=ImapPopMonitorDetail,
    page=ImapPopMonitorPage,
    create=ImapPopMonitorCreate,
    update=ImapPopMonitorUpdate,
    create_examples=[Example("seed", value=IMAP_EXAMPLE)],
    update_examples=None,
)
ROUNDTRIP_API = KindApi(
    kind=ROUNDTRIP,
    path=ROUNDTRIP.api_path,
    tag="round-trip monitors",
    param="roundtripMonitorPublicId",
    a_label="a Round-trip Monitor",
    out=RoundTripMonitor,
    detail=RoundTripMonitorDetail,
    page=RoundTripMonitorPage,
    create=RoundTripMonitorCreate,
    update=RoundTripMonitorUpdate,
    create_examples=[Example("example", value=ROUNDTRIP_EXAMPLE)],
    update_examples=None,
    delivery=True,
)

HEARTBEAT_EXAMPLE = {
    "customerId": "11111111-1111-4111-8111-111111111111",
    "name": "Nightly backup report",
    "heartbeatConfig": {
        "everyMinutes": 1440,
        "graceMinutes": 60,
        "expected": 1,
        "sender": "backup@example.com",
        "subject": "Backup report",
    },
}
# Its own create and update (controller.web.api.heartbeat_monitors: the controller makes the
# address); list, get and delete are the other kinds' handlers.
HEARTBEAT_API = KindApi(
    kind=HEARTBEAT,
    path=HEARTBEAT.api_path,
    tag="heartbeat monitors",
    param="heartbeatMonitorPublicId",
    a_label="a Heartbeat Monitor",
    out=HeartbeatMonitor,
    detail=HeartbeatMonitor,
    page=Page[HeartbeatMonitor],
    create=HeartbeatMonitorCreate,
    update=HeartbeatMonitorUpdate,
    create_examples=[Example("example", value=HEARTBEAT_EXAMPLE)],
    update_examples=None,
)

_BY_KIND = {api.kind: api for api in (SMTP_API, IMAP_POP_API, ROUNDTRIP_API, HEARTBEAT_API)}
# The checked kinds' resources, each with results, alerts, posture and blocklists routes.
APIS: tuple[KindApi, ...] = tuple(_BY_KIND[kind] for kind in KINDS)  # KeyError: a kind without


def api_of(kind: Kind) -> KindApi:
    """The HTTP resource of `kind`."""
    return _BY_KIND[kind]


def typed(handler: HandlerT, returns: object = ..., **params: object) -> HandlerT:
    """`handler` with these annotations (`returns`: its return type, if it differs) in place of
    the ones written on it. Litestar parses requests and writes the OpenAPI document from a
    handler's annotations, and those differ per kind (the path parameter's name, the body and
    response types); mypy checks the handler against the general ones it was written with."""
    handler.__annotations__ = {**handler.__annotations__, **params}
    if returns is not ...:
        handler.__annotations__["return"] = returns
    return handler
