"""The write model of a monitor (`controller.monitors.write_model`: the API's request bodies)
and every surface a field of it must reach: a field of the model that is no column, a column
the API does not show, or a field some surface cannot set, is a forgotten place.

A common field of the model is the column of its name (`model.COMMON_COLUMNS`, which the write
path stores through `write_values.common_values`), shown by the API (`MonitorCommon`, which the
typed row and the response share), on the console's form (its fields are the body's paths), in
a monitors file (spelt as the body; `apply` compares and sends `SHOWN_AS`'s fields) and in
AlertSite's mapping, or listed below as left out by that surface, with why. A config field is
in the kind's wire config. docs/architecture.md, "Adding a field to a monitor kind", says what
to touch.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypedDict, cast

import msgspec
import msgspec.inspect as mi
import pytest
from msgspec import UNSET, UnsetType

from controller.ascode import plan, spec
from controller.monitors import store, write_values
from controller.monitors.errors import Invalid
from controller.monitors.kinds import IMAP_POP, KINDS, SMTP, Kind
from controller.monitors.model import COMMON_COLUMNS, SHOWN_AS, MonitorCommon
from controller.monitors.write_model import (
    KEEP,
    ImapPopConfigIn,
    ImapPopMonitorCreate,
    ImapPopMonitorUpdate,
    MonitorCreate,
    RoundTripMonitorCreate,
    SmtpAuthIn,
    SmtpConfigIn,
    SmtpMonitorCreate,
    kind_config,
)
from controller.secrets.box import SecretBox, generate_key
from controller.web.alertsite.mapping import EMAIL_TYPES, EmailMonitorCreate, create_body, translate
from controller.web.api.monitor_kinds import api_of
from controller.web.console import form_fields
from shared.messages import JobConfig

# A body's top-level fields that are not a column of their name: the kind's config (its key and
# the alias `config`, stored as the `config` column) and the customer (resolved by the write
# path from its id or public id).
NOT_COLUMNS = {"customer_id", "config", "smtp_config", "imap_pop_config", "roundtrip_config"}
# A string every string field of a request takes (the secret variables' names' pattern too).
TEXT = "MAILPROBE_SECRET_X"

# What each surface leaves out of the model, with why (a field added to the model and not to a
# surface fails the tests below until it is there or listed here).
CONSOLE_LEAVES_OUT = {
    "secretEnv": "monitors-as-code's variable names; an edit in the console keeps them",
    "status": "not on the form: the page's pause and resume buttons set it (`set_status`)",
}
# A monitors file is the API's create body but for `customerId` (the file's `customer`) and
# `secretEnv` (apply sends it, from each secret's `{env: NAME}`). What `apply` sends and compares
# besides `SHOWN_AS`'s fields, and what it leaves alone:
ASCODE_LEAVES_OUT = {"depends_on": "declared through the API: a file keeps what it holds"}
# AlertSite's email monitors have a server, an interval, locations and a login, nothing else:
# the leaves of the model (by attribute path) its fields set.
_ALERTSITE_REACHES = {
    "smtp": {
        "customer_id",  # a stand-in: the write path puts it in the default customer
        "name",
        "hostname",
        "port",
        "status",
        "check_interval",
        "timeout_seconds",
        "allowed_country_codes",
        "smtp_config.secure",
        "smtp_config.auth.user",
        "smtp_config.auth.password",
    },
    "imap-pop": {
        "customer_id",
        "name",
        "hostname",
        "port",
        "status",
        "check_interval",
        "timeout_seconds",
        "allowed_country_codes",
        "imap_pop_config.protocol",
        "imap_pop_config.tls",
        "imap_pop_config.user",
        "imap_pop_config.password",
    },
}


def _bare(t: mi.Type) -> list[mi.Type]:
    """The types a field may hold but UNSET and null, metadata stripped."""
    if isinstance(t, mi.Metadata):
        return _bare(t.type)
    if isinstance(t, mi.UnionType):
        return [x for y in t.types for x in _bare(y)]
    if isinstance(t, mi.NoneType) or t == mi.type_info(UnsetType):
        return []
    return [t]


def _struct(t: type[msgspec.Struct]) -> mi.StructType:
    info = mi.type_info(t)
    assert isinstance(info, mi.StructType)
    return info


def model_leaves(struct: type[msgspec.Struct], prefix: str = "") -> Iterator[str]:
    """Every leaf of a model Struct, by attribute path (`smtp_config.auth.oauth2.client_id`)."""
    for f in _struct(struct).fields:
        structs = [t for t in _bare(f.type) if isinstance(t, mi.StructType)]
        if structs:
            for t in structs:
                yield from model_leaves(t.cls, f"{prefix}{f.name}.")
        else:
            yield prefix + f.name


def set_leaves(value: object, prefix: str = "") -> set[str]:
    """The leaves a model instance sets (a Struct-typed field set to null counts as its leaf)."""
    out: set[str] = set()
    assert isinstance(value, msgspec.Struct)
    for name in value.__struct_fields__:
        item = getattr(value, name)
        if item is UNSET:
            continue
        if isinstance(item, msgspec.Struct):
            out |= set_leaves(item, f"{prefix}{name}.")
        else:
            out.add(prefix + name)
    return out


def _columns_of(kind: Kind) -> set[str]:
    """The columns a write of `kind` sets from its body's fields of their name."""
    out = set(COMMON_COLUMNS)
    if kind is not SMTP:
        out.discard("reputation")
    if not kind.hostname:
        out -= {"hostname", "port"}
    return out


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_every_field_of_the_model_is_a_column_of_its_name(kind: Kind) -> None:
    """Both bodies of the kind: each top-level field but its config and customer is a column
    the write path stores (`COMMON_COLUMNS`, in `store.WRITABLE`), and each such column is one
    of the body's fields."""
    assert set(COMMON_COLUMNS) <= store.WRITABLE
    for body in (api_of(kind).create, api_of(kind).update):
        fields = set(body.__struct_fields__) - NOT_COLUMNS
        assert fields == _columns_of(kind), body.__name__


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_every_column_the_model_sets_is_read_back_and_shown(kind: Kind) -> None:
    """The typed row has each column (`store.COLUMNS` selects it), and the API's response
    shows it: `MonitorCommon`'s as stored, the rest as the response spells them."""
    selected = {c.strip() for c in store.COLUMNS.split(",")}
    response = set(api_of(kind).out.__struct_fields__)
    for column in _columns_of(kind):
        assert column in store.Monitor.__struct_fields__ and column in selected, column
        assert column in response, f"{kind.name}: {column} is not in the response"
    assert set(MonitorCommon.__struct_fields__) <= response


def _sample(t: mi.Type) -> Any:
    """A value of type `t` that every request field of that type takes."""
    for option in _bare(t):
        if isinstance(option, mi.StructType):
            return {f.encode_name: _sample(f.type) for f in option.fields}
        if isinstance(option, mi.BoolType):
            return True
        if isinstance(option, mi.IntType):
            return 1
        if isinstance(option, mi.FloatType):
            return 1.5
        if isinstance(option, mi.StrType):
            return TEXT
        if isinstance(option, mi.LiteralType):
            return option.values[0]
        if isinstance(option, mi.ListType):
            return [_sample(option.item_type)]
    raise AssertionError(f"no sample for {t}")


def api_paths(kind: Kind) -> dict[tuple[str, ...], Any]:
    """Every leaf of the kind's create body by its path (key steps: a secret variable's key
    holds dots), with a sample value; `config` (the alias of the kind's config key) left out."""
    out: dict[tuple[str, ...], Any] = {}

    def walk(t: mi.StructType, prefix: tuple[str, ...]) -> None:
        for f in t.fields:
            if not prefix and f.encode_name == "config":
                continue
            structs = [x for x in _bare(f.type) if isinstance(x, mi.StructType)]
            if structs:
                walk(structs[0], (*prefix, f.encode_name))
            else:
                out[(*prefix, f.encode_name)] = _sample(f.type)

    walk(_struct(api_of(kind).create), ())
    return out


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_every_field_of_the_model_is_on_the_console_form(kind: Kind) -> None:
    on_form = {
        p for t in kind.types for f in form_fields.kind_form(kind, t).fields for p in f.paths
    }
    nodemailer = {"ignoreTLS", "requireTLS"}  # the form sets the model's own spellings
    missing = {
        ".".join(path)
        for path in api_paths(kind)
        if ".".join(path) not in on_form and path[-1] not in nodemailer
    }
    assert {p.split(".")[0] for p in missing} == set(CONSOLE_LEAVES_OUT)


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_a_monitors_file_reaches_every_field_of_the_model(kind: Kind) -> None:
    """A monitors file is the create body (controller/ascode/spec.py converts each monitor to
    `api_of(kind).create`), and `apply` compares and sends every common field (`SHOWN_AS`) but
    those it leaves alone."""
    source = Path(spec.__file__).read_text()
    assert "api_of(kind).create" in source and "create_values(request," in source
    compared = set(plan.COMPARED)
    sent = spec._full_body(kind, {kind.config_key: {}}, {c: None for c in COMMON_COLUMNS})
    for column in _columns_of(kind) - set(ASCODE_LEAVES_OUT):
        assert column in compared, f"apply does not compare {column}"
        field = SHOWN_AS.get(column, column if column == "reputation" else "secretEnv")
        assert field in sent, f"apply does not send {column}"


ALERTSITE_BODY = {
    "billing_plancode": "UBM - A/A",
    "name": "Email Sample Monitor",
    "hostname": "mail.example.com",
    "port": 587,
    "interval": 5,
    "timeout": 30,
    "enabled": False,
    "locations": [{"id": 20}],
    "login": "probe",
    "password": "secret",
    "ssl": True,
}


@pytest.mark.parametrize("slug", sorted(EMAIL_TYPES))
def test_alertsite_reaches_what_its_fields_map(slug: str) -> None:
    """Every AlertSite field sets a field of the model, and those are all it can set: a model
    field AlertSite could carry and does not is added to `_ALERTSITE_REACHES` with its
    mapping, else it is native-only."""
    email = EMAIL_TYPES[slug]
    body = msgspec.convert(ALERTSITE_BODY, EmailMonitorCreate)
    write = create_body(translate(body, email, None), email)
    assert set_leaves(write) == _ALERTSITE_REACHES[email.kind.name]


def _wire_paths(struct: type[msgspec.Struct], prefix: str = "") -> set[str]:
    out: set[str] = set()
    for f in _struct(struct).fields:
        structs = [t for t in _bare(f.type) if isinstance(t, mi.StructType)]
        out.add(prefix + f.name)
        for t in structs:
            out |= _wire_paths(t.cls, f"{prefix}{f.name}.")
    return out


# Config leaves of the model the wire config does not carry, and where they go instead.
NOT_ON_THE_WIRE = {
    "send.hostname": "the monitor's hostname column",
    "send.port": "the monitor's port column",
    "ignore_tls_nodemailer": "stored as ignoreTls",
    "require_tls_nodemailer": "stored as requireTls",
    "send.ignore_tls_nodemailer": "stored as send.ignoreTls",
    "send.require_tls_nodemailer": "stored as send.requireTls",
}


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_every_config_field_of_the_model_is_in_the_wire_config(kind: Kind) -> None:
    """A config key the model takes and the agent's config Struct lacks would be stored and
    never used (the wire Structs decode stored configs, unknown keys ignored). OAuth2 grants
    are the controller's (`controller.oauth2.grants`): a job carries a token instead."""
    wire = _wire_paths(kind.config)
    config: type[JobConfig] = kind.config
    assert config is not None
    for leaf in model_leaves(kind_config(kind)):
        if "oauth2" in leaf.split(".") or leaf in NOT_ON_THE_WIRE:
            continue
        assert leaf in wire, f"{kind.name}: config.{leaf} is not in {kind.config.__name__}"


BOX = SecretBox(generate_key())


def _refusal(write: MonitorCreate) -> tuple[str, list[str]]:
    with pytest.raises(Invalid) as refused:
        write_values.create_values(write, BOX)
    return refused.value.message, refused.value.fields


class _Server(TypedDict):
    customer_id: int
    name: str
    hostname: str


_SERVER: _Server = {"customer_id": 1, "name": "n", "hostname": "mx.example.com"}


@pytest.mark.parametrize(
    ("write", "message", "fields"),
    [
        (
            SmtpMonitorCreate(**_SERVER, check_interval=5),
            "checkInterval must be between 10 and 86400 seconds",
            ["checkInterval"],
        ),
        (
            ImapPopMonitorCreate(**_SERVER, config=ImapPopConfigIn(protocol="smtp")),
            "config.protocol must be imap or pop3",
            ["config.protocol"],
        ),
        (
            RoundTripMonitorCreate(customer_id=1, name="n"),
            "roundtripConfig is required",
            ["roundtripConfig"],
        ),
        (
            SmtpMonitorCreate(**_SERVER, smtp_config=SmtpConfigIn(auth=SmtpAuthIn(password=KEEP))),
            f"smtpConfig.auth.pass: {KEEP!r} stands for a stored secret, and none is stored",
            ["smtpConfig.auth.pass"],
        ),
        (
            ImapPopMonitorCreate(
                **_SERVER,
                imap_pop_config=ImapPopConfigIn(tls=True),
                config=ImapPopConfigIn(tls=False),
            ),
            "send imapPopConfig or its alias config, not two different ones",
            ["imapPopConfig"],
        ),
    ],
)
def test_the_rules_refuse_naming_the_field_as_the_request_spells_it(
    write: MonitorCreate, message: str, fields: list[str]
) -> None:
    assert _refusal(write) == (message, fields)


def test_a_create_fills_in_defaults_and_stores_the_config_as_sent() -> None:
    write = ImapPopMonitorCreate(
        customer_id=1,
        name=" Inbox ",
        hostname="IMAP.Example.COM",
        imap_pop_config=ImapPopConfigIn(protocol="POP3", tls=True, user="probe"),
    )
    assert write_values.create_values(write, BOX) == {
        "name": "Inbox",
        "hostname": "imap.example.com",
        "status": "active",
        "check_interval": 60,
        "timeout_seconds": 30,
        "config": {"protocol": "pop3", "tls": True, "user": "probe"},
        "type": "pop3",
    }


@pytest.mark.parametrize(
    ("config", "stored"),
    [
        ({"ignoreTLS": True}, {"ignoreTls": True}),
        ({"requireTLS": True, "requireTls": False}, {"requireTls": False}),
    ],
)
def test_nodemailer_spellings_are_stored_as_the_model_s_keys(
    config: dict[str, Any], stored: dict[str, Any]
) -> None:
    body = {"customerId": 1, "name": "n", "hostname": "mx.example.com", "config": config}
    write = msgspec.convert(body, SmtpMonitorCreate, strict=True)
    assert write_values.create_values(write, BOX)["config"] == stored


def test_a_status_change_is_the_status_column_alone() -> None:
    """`set_status`'s write: the other fields are not checked again."""
    update = cast(type[ImapPopMonitorUpdate], api_of(IMAP_POP).update)
    write = update(status="paused")
    assert write_values.common_values(write) == {"status": "disabled"}
