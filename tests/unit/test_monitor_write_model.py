"""The write model of a monitor (`controller.monitors.write_model`) and the surfaces that
translate into it: a field of the model no surface can set, or a request field that reaches no
field of the model, is a forgotten translation.

Every field of the model is reached from the API's create body (by the API's own translation,
`write_of`), from the console's form (its fields are the body's paths), from a monitors file
(spelt as the body) and from an AlertSite body (by AlertSite's own translation), or is listed
below as left out by that surface, with why. docs/architecture.md, "Adding a field to a monitor
kind", says what to touch.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import msgspec
import msgspec.inspect as mi
import pytest
from msgspec import UNSET, UnsetType

from controller.monitors import write_values
from controller.monitors.errors import Invalid
from controller.monitors.kinds import IMAP_POP, KINDS, ROUNDTRIP, SMTP, Kind
from controller.monitors.write_model import (
    CONFIG_WRITES,
    KEEP,
    ImapPopWrite,
    MonitorWrite,
    SmtpAuthWrite,
    SmtpWrite,
)
from controller.secrets.box import SecretBox, generate_key
from controller.web.alertsite.mapping import EMAIL_TYPES, EmailMonitorCreate, create_body, translate
from controller.web.api.errors import ApiError
from controller.web.api.monitor_kinds import api_of
from controller.web.api.monitor_rules import write_of
from controller.web.api.monitor_schemas import MonitorCreate
from controller.web.console import form_fields
from shared.messages import JobConfig

# Model fields that are not the request's: the kind (the resource) and how the request named
# the config (the prefix of a refusal's field names).
NOT_FIELDS = {"kind", "config_field"}
# A string every string field of a request takes (the secret variables' names' pattern too).
TEXT = "MAILPROBE_SECRET_X"

# What each surface leaves out of the model, with why (a field added to the model and not to a
# surface fails the tests below until it is translated there or listed here).
CONSOLE_LEAVES_OUT = {
    "secret_env": "monitors-as-code's variable names; an edit in the console keeps them",
    "status": "not on the form: the page's pause and resume buttons set it (`set_status`)",
}
# A monitors file is the API's create body but for `customerId` (the file's `customer`) and
# `secretEnv` (apply sends it, from each secret's `{env: NAME}`): it leaves nothing out.
ASCODE_LEAVES_OUT: dict[str, str] = {}
ALERTSITE_MAPS = {  # AlertSite's field → what it sets
    "name": "name",
    "hostname": "hostname (its scheme: ssl)",
    "port": "port",
    "interval": "check_interval",
    "timeout": "timeout_seconds",
    "enabled": "status",
    "locations": "allowed_country_codes",
    "login": "the login's user",
    "password": "the login's password",
    "ssl": "secure (SMTP), tls (IMAP/POP)",
}
# AlertSite's email monitors have a server, an interval, locations and a login, nothing else.
_ALERTSITE_OUT = "AlertSite's email monitor fields have no such field (native API only)"


def _bare(t: mi.Type) -> list[mi.Type]:
    """The types a field may hold but UNSET and null, metadata stripped."""
    if isinstance(t, mi.Metadata):
        return _bare(t.type)
    if isinstance(t, mi.UnionType):
        return [x for y in t.types for x in _bare(y)]
    if isinstance(t, mi.NoneType) or t == mi.type_info(UnsetType):
        return []
    return [t]


def model_leaves(struct: type[msgspec.Struct], prefix: str = "") -> Iterator[str]:
    """Every leaf of a model Struct, by attribute path (`config.auth.oauth2.client_id`)."""
    info = mi.type_info(struct)
    assert isinstance(info, mi.StructType)
    for f in info.fields:
        if f.name in NOT_FIELDS:
            continue
        inner = _bare(f.type)
        structs = [t for t in inner if isinstance(t, mi.StructType)]
        if structs:
            for t in structs:
                yield from model_leaves(t.cls, f"{prefix}{f.name}.")
        else:
            yield prefix + f.name


def all_leaves(kind: Kind) -> set[str]:
    """The leaves of a write of `kind`: the common fields and its config's."""
    common = {p for p in model_leaves(MonitorWrite) if not p.startswith("config.")}
    if kind is not SMTP:
        common -= {p for p in common if p.startswith("reputation.")}
    if not kind.hostname:
        common -= {"hostname", "port"}
    return common | {f"config.{p}" for p in model_leaves(CONFIG_WRITES[kind.name])}


def set_leaves(value: object, prefix: str = "") -> set[str]:
    """The leaves a model instance sets (a Struct-typed field set to null counts as its leaf)."""
    out: set[str] = set()
    assert isinstance(value, msgspec.Struct)
    for name in value.__struct_fields__:
        item = getattr(value, name)
        if name in NOT_FIELDS or item is UNSET:
            continue
        if isinstance(item, msgspec.Struct):
            out |= set_leaves(item, f"{prefix}{name}.")
        else:
            out.add(prefix + name)
    return out


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
    holds dots), with a sample value; `config` (the alias of the kind's config key) and
    `customerId` (not the model's) left out."""
    info = mi.type_info(api_of(kind).create)
    assert isinstance(info, mi.StructType)
    out: dict[tuple[str, ...], Any] = {}

    def walk(t: mi.StructType, prefix: tuple[str, ...]) -> None:
        for f in t.fields:
            if not prefix and f.encode_name in ("config", "customerId"):
                continue
            structs = [x for x in _bare(f.type) if isinstance(x, mi.StructType)]
            if structs:
                walk(structs[0], (*prefix, f.encode_name))
            else:
                out[(*prefix, f.encode_name)] = _sample(f.type)

    walk(info, ())
    return out


def _minimal(kind: Kind) -> dict[str, Any]:
    body: dict[str, Any] = {"customerId": 1, "name": TEXT}
    if kind.hostname:
        body["hostname"] = TEXT
    return body


def _put(body: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    *parents, leaf = path
    holder = body
    for step in parents:
        holder = holder.setdefault(step, {})
    holder[leaf] = value
    return body


def _write(kind: Kind, body: dict[str, Any]) -> MonitorWrite:
    request = cast(MonitorCreate, msgspec.convert(body, api_of(kind).create, strict=True))
    return write_of(kind, request)


def reached_by_api(kind: Kind) -> dict[str, set[str]]:
    """Each model leaf → the body paths (dotted) that set it, each path sent alone (but for
    the fields a create requires) through the API's translation."""
    base = set_leaves(_write(kind, _minimal(kind)))
    out: dict[str, set[str]] = {}
    for path, value in api_paths(kind).items():
        dotted = ".".join(path)
        if dotted in _minimal(kind):
            out.setdefault(dotted, set()).add(dotted)
            continue
        write = _write(kind, _put(_minimal(kind), path, value))
        new = set_leaves(write) - base
        assert new, f"{kind.name}: {dotted} reaches no field of the write model"
        for leaf in new:
            out.setdefault(leaf, set()).add(dotted)
    return out


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_every_field_of_the_model_is_reached_from_the_api(kind: Kind) -> None:
    """A full create body sets every leaf of the model; each body field alone sets some."""
    full = _minimal(kind)
    for path, value in api_paths(kind).items():
        _put(full, path, value)
    assert set_leaves(_write(kind, full)) == all_leaves(kind)
    assert set(reached_by_api(kind)) == all_leaves(kind)


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_every_field_of_the_model_is_on_the_console_form(kind: Kind) -> None:
    on_form = {
        p for t in kind.types for f in form_fields.kind_form(kind, t).fields for p in f.paths
    }
    reached = reached_by_api(kind)
    missing = {leaf for leaf, paths in reached.items() if not paths & on_form}
    assert missing == set(CONSOLE_LEAVES_OUT)


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_a_monitors_file_reaches_every_field_of_the_model(kind: Kind) -> None:
    """A monitors file is the create body (controller/ascode/spec.py converts each monitor to
    `api_of(kind).create` and translates it with `write_of`) but for the keys it spells its own
    way: `customerId` (the file's `customer`), `secretEnv` (from the `{env: NAME}` secrets)."""
    from controller.ascode import spec

    source = Path(spec.__file__).read_text()
    assert "api_of(kind).create" in source and "write_of(kind," in source
    reached = {leaf for leaf, paths in reached_by_api(kind).items() if paths - {"secretEnv"}}
    reached |= {p for p in all_leaves(kind) if p.startswith("secret_env")}  # from {env: NAME}
    assert all_leaves(kind) - reached == set(ASCODE_LEAVES_OUT)


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
def test_alertsite_reaches_what_its_fields_map_and_lists_the_rest(slug: str) -> None:
    email = EMAIL_TYPES[slug]
    body = msgspec.convert(ALERTSITE_BODY, EmailMonitorCreate)
    assert set(ALERTSITE_BODY) - {"billing_plancode"} == set(ALERTSITE_MAPS)
    write = write_of(email.kind, create_body(translate(body, email, None), email))
    reached = set_leaves(write)
    left_out = all_leaves(email.kind) - reached
    # What AlertSite leaves out is every field it has no name for: the table says which it
    # maps, so a model field it could carry but does not is named here.
    expected_out = {
        leaf for leaf in all_leaves(email.kind) if leaf not in _ALERTSITE_REACHES[email.kind.name]
    }
    assert left_out == expected_out, _ALERTSITE_OUT


_ALERTSITE_REACHES = {
    "smtp": {
        "name",
        "hostname",
        "port",
        "status",
        "check_interval",
        "timeout_seconds",
        "allowed_country_codes",
        "config.secure",
        "config.auth.user",
        "config.auth.password",
    },
    "imap-pop": {
        "name",
        "hostname",
        "port",
        "status",
        "check_interval",
        "timeout_seconds",
        "allowed_country_codes",
        "config.protocol",
        "config.tls",
        "config.user",
        "config.password",
    },
}


def _wire_paths(struct: type[msgspec.Struct], prefix: str = "") -> set[str]:
    info = mi.type_info(struct)
    assert isinstance(info, mi.StructType)
    out: set[str] = set()
    for f in info.fields:
        structs = [t for t in _bare(f.type) if isinstance(t, mi.StructType)]
        out.add(prefix + f.name)
        for t in structs:
            out |= _wire_paths(t.cls, f"{prefix}{f.name}.")
    return out


# Config leaves of the model the wire config does not carry, and where they go instead.
NOT_ON_THE_WIRE = {
    "send.hostname": "the monitor's hostname column",
    "send.port": "the monitor's port column",
}


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_every_config_field_of_the_model_is_in_the_wire_config(kind: Kind) -> None:
    """A config key the model takes and the agent's config Struct lacks would be stored and
    never used (the wire Structs decode stored configs, unknown keys ignored). OAuth2 grants
    are the controller's (`controller.oauth2.grants`): a job carries a token instead."""
    wire = _wire_paths(kind.config)
    config: type[JobConfig] = kind.config
    assert config is not None
    for leaf in model_leaves(CONFIG_WRITES[kind.name]):
        if "oauth2" in leaf.split(".") or leaf in NOT_ON_THE_WIRE:
            continue
        assert leaf in wire, f"{kind.name}: config.{leaf} is not in {kind.config.__name__}"


BOX = SecretBox(generate_key())


def _refusal(write: MonitorWrite) -> tuple[str, list[str]]:
    with pytest.raises(Invalid) as refused:
        write_values.create_values(write, BOX)
    return refused.value.message, refused.value.fields


@pytest.mark.parametrize(
    ("write", "message", "fields"),
    [
        (
            MonitorWrite(kind="smtp", name="n", hostname="mx.example.com", check_interval=5),
            "checkInterval must be between 10 and 86400 seconds",
            ["checkInterval"],
        ),
        (
            MonitorWrite(
                kind="imap-pop",
                name="n",
                hostname="mx.example.com",
                config=ImapPopWrite(protocol="smtp"),
                config_field="config",
            ),
            "config.protocol must be imap or pop3",
            ["config.protocol"],
        ),
        (
            MonitorWrite(kind="roundtrip", name="n"),
            "roundtripConfig is required",
            ["roundtripConfig"],
        ),
        (
            MonitorWrite(
                kind="smtp",
                name="n",
                hostname="mx.example.com",
                config=SmtpWrite(auth=SmtpAuthWrite(password=KEEP)),
            ),
            f"smtpConfig.auth.pass: {KEEP!r} stands for a stored secret, and none is stored",
            ["smtpConfig.auth.pass"],
        ),
        (MonitorWrite(kind="smtp", hostname="mx.example.com"), "name is required", ["name"]),
    ],
)
def test_the_rules_refuse_naming_the_field_as_the_request_spells_it(
    write: MonitorWrite, message: str, fields: list[str]
) -> None:
    assert _refusal(write) == (message, fields)


def test_a_create_fills_in_defaults_and_stores_the_config_as_sent() -> None:
    write = MonitorWrite(
        kind="imap-pop",
        name=" Inbox ",
        hostname="IMAP.Example.COM",
        config=ImapPopWrite(protocol="POP3", tls=True, user="probe"),
    )
    values = write_values.create_values(write, BOX).columns()
    assert values == {
        "name": "Inbox",
        "hostname": "imap.example.com",
        "status": "active",
        "check_interval": 60,
        "timeout_seconds": 30,
        "config": {"protocol": "pop3", "tls": True, "user": "probe"},
        "type": "pop3",
    }


def test_the_api_refuses_two_different_configs_before_the_model() -> None:
    body = {**_minimal(IMAP_POP), "imapPopConfig": {"tls": True}, "config": {"tls": False}}
    with pytest.raises(ApiError) as refused:
        _write(IMAP_POP, body)
    assert refused.value.fields == ["imapPopConfig"]


def test_nodemailer_spellings_are_the_model_s_keys() -> None:
    body = {**_minimal(ROUNDTRIP), "roundtripConfig": {"send": {"ignoreTLS": True}}}
    write = _write(ROUNDTRIP, body)
    assert set_leaves(write) == {"name", "config.send.ignore_tls"}
    body = {**_minimal(SMTP), "config": {"requireTLS": True, "requireTls": False}}
    write = _write(SMTP, body)
    assert write.config == SmtpWrite(require_tls=False) and write.config_field == "config"
