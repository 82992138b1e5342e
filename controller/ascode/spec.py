"""A monitors file (YAML) read into the API's request bodies, with the line of every key.

    customer: 3f0c6d1e-...        # the customer's public UUID (or numeric id)
    monitors:
      - type: smtp                # a stored type: smtp, imap, pop3 or roundtrip
        name: Outbound relay      # a monitor's identity within the customer
        hostname: smtp.example.com
        port: 587
        smtpConfig:
          auth: {user: probe, pass: {env: MAILPROBE_SECRET_RELAY_PASSWORD}}

Every other key is the API's create body, spelled as there (camelCase; a round trip has no
`hostname`/`port`: its `roundtripConfig` holds both servers). A secret (`pass`, `password`, a
round trip's `send.auth.pass` and `receive.password`) is never in the file: it is
`{env: NAME}`, read from the environment, and NAME must be `MAILPROBE_SECRET_<NAME>`
(`secret_env`), refused before any request. Each monitor is checked by the API's own request
Structs and rules, so a file is refused with the API's own message, prefixed by the file and
line at fault.

The API never shows a secret, so whether NAME's value changed (a rotated password) cannot be
planned: `apply` sends every secret the file names on every run, and the API stores one only
when it differs from the stored value (`monitors.writes.keep_unchanged_secrets`).
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import msgspec
import yaml

from controller.ascode import secret_env
from controller.monitors import kinds, validation, write_values
from controller.monitors.errors import Refused
from controller.monitors.heartbeats import HeartbeatMonitorCreate
from controller.monitors.kinds import ROUNDTRIP, Kind
from controller.monitors.model import SHOWN_AS
from controller.secrets.box import SecretBox, generate_key
from controller.web.api.errors import ApiError, strict_body_error
from controller.web.api.monitor_kinds import api_of
from controller.web.api.monitor_rules import roundtrip_shown
from controller.web.api.monitor_schemas import MASK
from shared.messages import MonitorType, StoredType

TYPES: tuple[StoredType, ...] = kinds.STORED_TYPES
# The common fields a file sets, by column: all (`SHOWN_AS`) but `dependsOn`, which is declared
# through the API and kept by `apply`.
FILE_FIELDS: dict[str, str] = {c: f for c, f in SHOWN_AS.items() if c != "depends_on"}
_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")

Path = tuple[str | int, ...]


class SpecError(Exception):
    """The file cannot be applied; each line of `problems` is `file:line: message`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Desired:
    """One monitor as the file wants it."""

    type: StoredType
    name: str
    body: dict[str, Any]  # every field of the create/PATCH body, secrets filled in
    values: dict[str, Any]  # the row values the API would store, secrets masked
    line: int
    lines: Mapping[Path, int]  # the line of each of its keys, by path within the monitor

    def resend_body(self) -> dict[str, Any] | None:
        """The PATCH sending the monitor's config with its secrets again; None when the file
        names no secret."""
        for steps in kinds.of_type(self.type).all_secret_steps:
            value: object = self.values["config"]
            for step in steps:
                value = value.get(step) if isinstance(value, dict) else None
            if value == MASK:
                return {"config": self.body["config"], "secretEnv": self.body["secretEnv"]}
        return None

    def line_of(self, field: str) -> int:
        """The line of an API field name (`smtpConfig.auth.pass`), or of the nearest key the
        file has on its path, or the monitor's first line."""
        path = field_path(field)
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path, self.line) if path else self.line


@dataclass(frozen=True)
class Spec:
    file: str
    customer: str
    customer_line: int
    monitors: list[Desired]


class YamlLines:
    """The line (1-based) of every key and item of a YAML document, by path."""

    def __init__(self, node: yaml.Node) -> None:
        self.at: dict[Path, int] = {}
        self._walk(node, ())

    def _walk(self, node: yaml.Node, path: Path) -> None:
        self.at[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    self.at[(*path, key.value)] = key.start_mark.line + 1
                    self._walk_value(value, (*path, key.value))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._walk(item, (*path, i))

    def _walk_value(self, node: yaml.Node, path: Path) -> None:
        line = self.at[path]
        self._walk(node, path)
        self.at[path] = line  # a key's line, not its value's (a block value starts below)

    def of(self, path: Path) -> int:
        """The line of `path`, or of its nearest ancestor the file has."""
        while path and path not in self.at:
            path = path[:-1]
        return self.at.get(path, 1)


def field_path(field: str) -> Path:
    """`smtpConfig.auth.pass` / `allowedCheckCountryCodes[1]` → path steps."""
    return tuple(name if name else int(index) for name, index in _STEP.findall(field))


def load(text: str, file: str, env: Mapping[str, str]) -> Spec:
    """The file's monitors, checked; SpecError listing every problem found."""
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise SpecError([f"{file}:{line}: not valid YAML: {exc}"]) from None
    if node is None or not isinstance(data, dict):
        raise SpecError([f"{file}:1: expected a mapping with `customer` and `monitors`"])
    lines = YamlLines(node)
    problems: list[str] = []

    def problem(path: Path, message: str) -> None:
        problems.append(f"{file}:{lines.of(path)}: {message}")

    for key in sorted(set(data) - {"customer", "monitors"}, key=str):
        problem((key,), f"{key}: unknown key (expected customer and monitors)")
    customer = data.get("customer")
    if not isinstance(customer, str | int) or isinstance(customer, bool):
        problem(("customer",), "customer: the customer's public UUID or numeric id is required")
    items = data.get("monitors") or []
    if not isinstance(items, list):
        problem(("monitors",), "monitors: expected a list")
        items = []
    box = SecretBox(generate_key())  # seals nothing kept: only to run the API's rules
    found: list[Desired] = []
    names: dict[str, int] = {}
    for i, item in enumerate(items):
        at: Path = ("monitors", i)
        try:
            own = {p[2:]: n for p, n in lines.at.items() if p[:2] == at and len(p) > 2}
            desired = _monitor(item, str(customer), env, box, lines.of(at), own)
        except Problem as exc:
            problem((*at, *exc.path), exc.message)
            continue
        except Problems as exc:
            for each in exc.problems:
                problem((*at, *each.path), each.message)
            continue
        if desired.name in names:
            problem(
                (*at, "name"),
                f"name: {desired.name!r} is also the monitor on line {names[desired.name]};"
                " names identify monitors within the customer",
            )
            continue
        names[desired.name] = desired.line
        found.append(desired)
    if problems:
        raise SpecError(problems)
    return Spec(file, str(customer), lines.of(("customer",)), found)


class Problem(Exception):
    """What is wrong at `path` of a document (a monitors or channels file)."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


class Problems(Exception):
    """Several problems of one monitor, each at its own path."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(p.message for p in problems))
        self.problems = problems


def _monitor(
    item: object,
    customer: str,
    env: Mapping[str, str],
    box: SecretBox,
    line: int,
    lines: dict[Path, int],
) -> Desired:
    if not isinstance(item, dict):
        raise Problem((), "each monitor is a mapping")
    doc = dict(item)
    monitor_type = doc.pop("type", None)
    if monitor_type not in TYPES:
        raise Problem(("type",), f"type: one of {', '.join(TYPES)} is required")
    if "customerId" in doc:
        raise Problem(("customerId",), "customerId: the file's `customer` applies to all")
    if "secretEnv" in doc:
        raise Problem(
            ("secretEnv",), "secretEnv: apply sends it, from the file's {env: NAME} secrets"
        )
    if monitor_type == "heartbeat":
        return _heartbeat(doc, customer, line, lines)
    kind = kinds.of_type(monitor_type)
    config_key = _config_key(kind, doc)
    names: dict[str, str] = {}
    if config_key is not None:
        doc[config_key] = _with_secret(doc[config_key], config_key, kind, env, names)
        if len(kind.types) > 1:
            _protocol(doc, config_key, cast(MonitorType, monitor_type))
    elif monitor_type != kind.types[0]:
        doc[kind.config_key] = {"protocol": monitor_type}
    doc["secretEnv"] = names or None
    struct_type = api_of(kind).create
    try:
        request = msgspec.convert({**doc, "customerId": customer}, struct_type, strict=True)
        validation.no_nul(request, "")
        if isinstance(request, HeartbeatMonitorCreate):  # read by _heartbeat
            raise Problem(("type",), "type: a heartbeat monitor is read as one")
        # Which token endpoint hosts the server allows is the server's to say (OAUTH2_TOKEN_HOSTS).
        values = write_values.create_values(request, box, token_hosts=None)
    except msgspec.ValidationError as exc:
        raise _api_problem(strict_body_error(exc)) from None
    except (ApiError, Refused) as exc:
        raise _api_problem(exc) from None
    if kind is ROUNDTRIP:  # compared with the API's view, which shows both servers in config
        values["config"] = roundtrip_shown(values["hostname"], values.get("port"), values["config"])
    values["config"] = kind.masked(values["config"])
    body = _full_body(kind, doc, values)
    return Desired(cast(MonitorType, monitor_type), values["name"], body, values, line, lines)


def _heartbeat(
    doc: dict[str, object], customer: str, line: int, lines: Mapping[Path, int]
) -> Desired:
    """A heartbeat monitor: its name, status and rule (`heartbeatConfig`), checked by the API's
    own request Struct; its address is the controller's, never the file's (apply keeps it)."""
    try:
        request = msgspec.convert(
            {**doc, "customerId": customer}, HeartbeatMonitorCreate, strict=True
        )
        validation.no_nul(request, "")
    except msgspec.ValidationError as exc:
        raise _api_problem(strict_body_error(exc)) from None
    except (ApiError, Refused) as exc:
        raise _api_problem(exc) from None
    rule = msgspec.to_builtins(request.heartbeat_config)
    values = {"name": request.name, "status": request.status, "config": rule, "type": "heartbeat"}
    body = {"name": request.name, "status": request.status, "heartbeatConfig": rule}
    return Desired("heartbeat", request.name, body, values, line, lines)


def _api_problem(exc: ApiError | Refused) -> Problem:
    path = field_path(exc.fields[0]) if exc.fields else ()
    return Problem(path, exc.message)


def _config_key(kind: Kind, doc: dict[str, Any]) -> str | None:
    for key in (kind.config_key, "config"):
        if isinstance(doc.get(key), dict):
            return key
    return None


def _with_secret(
    config: dict[str, Any], key: str, kind: Kind, env: Mapping[str, str], names: dict[str, str]
) -> Any:
    """`config` with its `{env: NAME}` secrets read from the environment, each NAME put in
    `names` by the secret's path (what the API keeps as `secretEnv`); a secret written out is
    refused, the file being kept in git."""
    out = dict(config)
    found: list[Problem] = []
    for steps in kind.all_secret_steps:
        try:
            if name := _read_secret(out, key, steps, env):
                names[".".join(steps)] = name
        except Problem as exc:  # every secret's problem at once: one run lists all to set
            found.append(exc)
    if len(found) == 1:
        raise found[0]
    if found:
        raise Problems(found)
    return out


def _read_secret(
    out: dict[str, Any], key: str, steps: tuple[str, ...], env: Mapping[str, str]
) -> str | None:
    """Fill in the secret at `steps` from the environment; the variable's name (None: the
    file has no secret there)."""
    *parents, leaf = steps
    holder = out
    for step in parents:
        if not isinstance(holder.get(step), dict):
            return None
        holder[step] = dict(holder[step])
        holder = holder[step]
    ref = holder.get(leaf)
    path = (key, *parents, leaf)
    # Empty is no secret, as the API takes it (an OAuth2 login's password, as export writes it).
    if ref is None or ref == "":
        return None
    if not (isinstance(ref, dict) and set(ref) == {"env"} and isinstance(ref["env"], str)):
        raise Problem(
            path,
            f"{'.'.join(path)}: secrets are not kept in the file; write {{env: NAME}} and set"
            " NAME in the environment",
        )
    if why := secret_env.refusal(ref["env"]):
        raise Problem((*path, "env"), f"{'.'.join(path)}: {why}")
    value = env.get(ref["env"])
    if value and secret_env.holds_the_token(value, env):
        raise Problem(
            (*path, "env"),
            f"{'.'.join(path)}: {ref['env']} holds the API token ({secret_env.TOKEN_ENV}),"
            " which is never sent as a secret",
        )
    if not value:
        raise Problem(
            (*path, "env"), f"{'.'.join(path)}: environment variable {ref['env']} is not set"
        )
    holder[leaf] = value
    return str(ref["env"])


def _protocol(doc: dict[str, Any], key: str, monitor_type: MonitorType) -> None:
    config = doc[key]
    given = config.get("protocol")
    if given is None:
        if monitor_type == "pop3":
            doc[key] = {**config, "protocol": "pop3"}
        return
    if given != monitor_type:
        raise Problem(
            (key, "protocol"), f"{key}.protocol: {given!r} contradicts type {monitor_type}"
        )


def _full_body(kind: Kind, doc: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """Every field, so a PATCH also resets what the file leaves out to its default (a round
    trip's servers are in its config, which is sent whole)."""
    key = next((k for k in (kind.config_key, "config") if k in doc), None)
    common = {
        field: values.get(column)
        for column, field in FILE_FIELDS.items()
        if kind.hostname or column not in ("hostname", "port")
    }
    return {
        **common,
        "secretEnv": values.get("secret_env"),
        **({"reputation": values.get("reputation")} if kind is kinds.SMTP else {}),
        "config": doc[key] if key else {},
    }
