"""From the file's monitors and the API's, what to create, update and delete (pure), and the
file `export` writes.

Monitors are matched by name within the customer. Values are compared as the API stores them
(the file's are normalised by the API's own rules in `spec`), secrets as the mask: a file whose
monitors the API already holds plans nothing but keeps, so applying it twice changes nothing. A
kept monitor whose file names a secret still has it sent (`run.apply`): the API stores it only if
it changed, which no plan can see.
"""

from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal, get_args

import msgspec

from controller.ascode import secret_env
from controller.ascode.spec import FILE_FIELDS, Desired
from controller.monitors import kinds, validation
from controller.monitors.kinds import Kind
from controller.monitors.validation import CHECK_INTERVAL_DEFAULT
from controller.web.api.monitor_schemas import MASK
from shared.messages import StoredType

# Row values compared, and the API field each is shown as: every common field a file sets,
# then these.
COMPARED = {
    **FILE_FIELDS,
    "reputation": "reputation",
    "secret_env": "secretEnv",
    "config": "config",
    "type": "type",
}
# A file leaves out a field at its default: null but for these (`check_interval`'s timeout
# aside, which follows it).
_DEFAULTS: dict[str, object] = {"status": "active", "check_interval": CHECK_INTERVAL_DEFAULT}


RESENT = "its secret is sent; the API stores it only if it changed"


class PlanError(Exception):
    """The file and the API's monitors cannot be matched up; the text says why."""


@dataclass(frozen=True)
class Current:
    """A monitor as the API shows it."""

    public_id: str
    name: str
    values: dict[str, Any]  # COMPARED's keys

    @property
    def type(self) -> StoredType:
        monitor_type: StoredType = self.values["type"]
        return monitor_type

    @classmethod
    def of(cls, endpoint: str, item: dict[str, Any]) -> "Current":
        """From a monitor of the list endpoint of the kind named `endpoint`."""
        if endpoint == kinds.HEARTBEAT.name:  # its rule is its config; its address stays its own
            rule = item[kinds.HEARTBEAT.config_key]
            values = {"name": item["name"], "status": item["status"], "config": rule}
            return cls(item["publicId"], item["name"], values | {"type": "heartbeat"})
        config = item["config"] or {}
        types = kinds.named(endpoint).types
        monitor_type = types[0] if len(types) == 1 else config.get("protocol") or types[0]
        values = {column: item[field] for column, field in COMPARED.items() if field in item}
        values["type"] = monitor_type
        return cls(item["publicId"], item["name"], values)


Verb = Literal["create", "update", "delete", "keep"]


@dataclass(frozen=True)
class Action:
    verb: Verb
    type: StoredType
    name: str
    public_id: str | None = None
    changed: tuple[str, ...] = ()
    desired: Desired | None = None

    def describe(self) -> str:
        sign = {"create": "+", "update": "~", "delete": "-", "keep": "="}[self.verb]
        what = f"{sign} {self.verb} {self.type} {self.name!r}"
        return f"{what} ({', '.join(self.changed)})" if self.changed else what


def _family(monitor_type: str) -> str:
    return kinds.of_type(monitor_type).name


def plan(desired: list[Desired], current: list[Current], *, prune: bool) -> list[Action]:
    """The actions making the API hold `desired`: creates and updates in the file's order, then
    deletes (only with `prune`; without, the monitors the file lacks are kept and listed)."""
    counts = Counter(c.name for c in current)
    by_name = {c.name: c for c in current}
    actions: list[Action] = []
    for want in desired:
        have = by_name.get(want.name)
        if have is None:
            actions.append(Action("create", want.type, want.name, desired=want))
            continue
        if counts[want.name] > 1:
            raise PlanError(f"{counts[want.name]} monitors of the customer are named {want.name!r}")
        if _family(have.type) != _family(want.type):
            raise PlanError(
                f"{want.name!r} is a {have.type} monitor in the API and {want.type} in the file;"
                " rename one, or delete the monitor first"
            )
        changed = tuple(
            field
            for column, field in COMPARED.items()
            if want.values.get(column) != have.values.get(column)
            and not (column == "secret_env" and have.values.get(column) is None)
        )
        verb: Verb = "update" if changed else "keep"
        if not changed and want.resend_body() is not None:
            changed = (RESENT,)
        actions.append(Action(verb, want.type, want.name, have.public_id, changed, want))
    wanted = {d.name for d in desired}
    for have in current:
        if have.name not in wanted:
            verb = "delete" if prune else "keep"
            note = () if prune else ("not in the file; --prune deletes it",)
            actions.append(Action(verb, have.type, have.name, have.public_id, note))
    return actions


def export(customer: str, current: list[Current]) -> dict[str, object]:
    """The monitors file holding `current`: defaults left out, each secret an `{env: NAME}`
    reference (the API never shows a secret). NAME is the variable `apply` read it from (the
    API keeps it as `secretEnv`), else one made up from the monitor's name (`secret_env.
    export_name`), numbered `_2`, `_3` where two monitors' names would make the same."""
    monitors: list[dict[str, object]] = []
    made_up: Counter[str] = Counter()
    for have in current:
        v = have.values
        kind = kinds.of_type(have.type)
        doc: dict[str, object] = {"type": have.type, "name": have.name}
        if kind is kinds.HEARTBEAT:
            monitors.append(doc | _heartbeat_fields(v))
            continue
        if kind.hostname:
            doc["hostname"] = v["hostname"]
        interval = v["check_interval"]
        defaults = {
            column: _DEFAULTS.get(column)
            for column in (*FILE_FIELDS, "reputation")
            if column not in ("name", "hostname") and (kind.hostname or column != "port")
        }
        defaults["timeout_seconds"] = validation.default_timeout(interval)
        for column, default in defaults.items():
            if v.get(column) != default:
                doc[COMPARED[column]] = v[column]
        if v["config"]:
            named = v.get("secret_env") or {}
            config = _secret_refs(v["config"], kind, have.name, named, made_up)
            if kind is kinds.ROUNDTRIP:  # shown as the agent uses it, every default spelt out
                config = _without_defaults(config, kind.config)
            doc[kind.config_key] = config
        monitors.append(doc)
    return {"customer": customer, "monitors": monitors}


def _heartbeat_fields(values: dict[str, object]) -> dict[str, object]:
    """A heartbeat monitor's status (when not active) and rule, unset keys left out; its
    address is not in the file: the controller made it, and apply keeps it."""
    out: dict[str, object] = {}
    if values["status"] != _DEFAULTS["status"]:
        out["status"] = values["status"]
    config = values["config"]
    rule = (
        {k: v for k, v in config.items() if v is not None and v != []}
        if isinstance(config, dict)
        else {}
    )
    out[kinds.HEARTBEAT.config_key] = rule
    return out


def _without_defaults(value: dict[str, Any], struct: type[msgspec.Struct]) -> dict[str, Any]:
    """`value` (a config as JSON) without the fields `struct` would give by default, in nested
    structs too: a file says what its author chose, and applies to the same config."""
    out = dict(value)
    for field in msgspec.structs.fields(struct):
        if field.encode_name not in out:
            continue
        nested = _struct_in(field.type)
        if nested is not None and isinstance(out[field.encode_name], dict):
            out[field.encode_name] = _without_defaults(out[field.encode_name], nested)
            if not out[field.encode_name]:
                del out[field.encode_name]
                continue
        if field.default is not msgspec.NODEFAULT:
            default = field.default
        elif field.default_factory is not msgspec.NODEFAULT:
            default = field.default_factory()
        else:
            continue
        try:
            as_json = msgspec.to_builtins(default)
        except TypeError:  # a default of no JSON form (a secret) is never left out
            continue
        if out[field.encode_name] == as_json:
            del out[field.encode_name]
    return out


def _struct_in(annotation: object) -> type[msgspec.Struct] | None:
    """The struct type `annotation` is, or holds (`X | None`, `Annotated[X, …]`)."""
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, msgspec.Struct):
            return candidate
    return None


def _secret_refs(
    config: dict[str, Any],
    kind: Kind,
    name: str,
    named: dict[str, str],
    made_up: Counter[str],
) -> dict[str, Any]:
    """`config` with each masked secret replaced by `{env: NAME}`: the name the API keeps for
    its path (`named`), else one made up (counted in `made_up`, so none is made twice)."""
    out = dict(config)
    legs = len(kind.secret_steps)
    for steps in kind.all_secret_steps:
        *parents, leaf = steps
        holder = out
        for step in parents:
            if not isinstance(holder.get(step), dict):
                break
            holder[step] = dict(holder[step])
            holder = holder[step]
        else:
            if holder.get(leaf) == MASK:
                env = named.get(".".join(steps))
                if env is None:
                    env = secret_env.export_name(name, secret_env.what_of(steps, legs))
                    made_up[env] += 1
                    if made_up[env] > 1:
                        env = f"{env}_{made_up[env]}"
                holder[leaf] = {"env": env}
    return out
