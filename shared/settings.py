"""Settings from the environment: what every process shares (NATS, logging), the checks the
processes' own settings use, and `load`, which builds a process's settings (controller.settings,
agent.settings) from the environment.

Every field's encoded name is the environment variable; `Meta(description=...)` is the text of the
settings table in docs/settings.md (`table` makes it). A missing or malformed setting raises
`SettingsError` with one line naming it, and the process stops with that line.
"""

import os
import re
import ssl
import sys
from collections.abc import Mapping
from typing import Annotated, Literal, TypeVar
from urllib.parse import urlsplit

import msgspec
from msgspec import Meta

from shared.guards import BrokenInvariant

T = TypeVar("T", bound=msgspec.Struct)

_PATH = re.compile(r"at `\$\.(\w+)`")
_MISSING = re.compile(r"missing required field `(\w+)`")


class SettingsError(Exception):
    """A setting is missing or malformed; the message names it."""


def check_url(name: str, value: str, schemes: tuple[str, ...], *, many: bool = True) -> None:
    """Each comma-separated URL (one URL unless `many`) starts with one of `schemes`; the
    message never repeats the value, which may hold credentials."""
    for part in value.split(",") if many else [value]:
        if not part.strip().startswith(tuple(s + "://" for s in schemes)):
            raise ValueError(
                f"{name} must start with one of {', '.join(s + '://' for s in schemes)}"
            )


# What a template ships where a secret goes (the Kubernetes Secrets' examples, an old
# .env.example): a process refuses one, naming the setting, instead of running on a password
# everyone who read the template knows.
PLACEHOLDERS = frozenset({"change-me", "changeme"})


def is_placeholder(secret: str) -> bool:
    return secret.strip().lower() in PLACEHOLDERS


def check_secrets_filled(name: str, value: str, *, many: bool = True) -> None:
    """No URL of `value` carries a placeholder as its password (the value is never repeated)."""
    for part in value.split(",") if many else [value]:
        try:
            password = urlsplit(part.strip()).password
        except ValueError:
            continue  # a malformed URL is refused where it is used, naming the setting
        if password is not None and is_placeholder(password):
            raise ValueError(
                f"{name} holds a template's placeholder password: generate the real one"
                " (python -m deploy.gen_env, python -m deploy.mint_country)"
            )


def check_tls(settings: msgspec.Struct, cert: str, key: str, ca: str | None = None) -> None:
    """A certificate and its key are set together, and they (and the CA file) load: read at
    start, so a wrong path or file stops the process naming it, not the first handshake."""
    cert_path, key_path = getattr(settings, cert.lower()), getattr(settings, key.lower())
    if (cert_path is None) != (key_path is None):
        raise ValueError(f"{cert} and {key} must be set together")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca_path = getattr(settings, ca.lower()) if ca else None
    try:
        if ca_path is not None:
            context.load_verify_locations(ca_path)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"{ca} cannot be loaded: {exc}") from None
    try:
        if cert_path is not None:
            context.load_cert_chain(cert_path, key_path)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"{cert} / {key} cannot be loaded: {exc}") from None


def nats_tls_context(settings: "ProcessSettings") -> ssl.SSLContext | None:
    """The SSLContext for `nats.connect(tls=...)`: None when no NATS TLS setting is given (a
    `tls://` URL then verifies against the system's CAs)."""
    ca, cert, key = (
        settings.nats_tls_ca_file,
        settings.nats_tls_cert_file,
        settings.nats_tls_key_file,
    )
    if ca is None and cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


LogFormat = Literal["auto", "json", "console"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class ProcessSettings(msgspec.Struct, rename="upper", frozen=True):
    """The settings every process (controller, agent) shares, declared and checked once: how it
    reaches NATS and how it logs. Each process's Struct adds its own and calls this
    `__post_init__` from its own."""

    nats_url: Annotated[str, Meta(description="NATS server URL(s), comma-separated")] = (
        "nats://127.0.0.1:4222"
    )
    nats_tls_ca_file: Annotated[
        str | None,
        Meta(
            description="PEM CA file to verify the NATS server's certificate (with `tls://` URLs);"
            " unset: the system's CAs"
        ),
    ] = None
    nats_tls_cert_file: Annotated[
        str | None,
        Meta(
            description="PEM client certificate for NATS servers that verify clients (mutual TLS)"
        ),
    ] = None
    nats_tls_key_file: Annotated[
        str | None, Meta(description="PEM private key file of `NATS_TLS_CERT_FILE`")
    ] = None
    log_format: Annotated[LogFormat, Meta(description="`json`, `console` or `auto` (tty)")] = "auto"
    log_level: Annotated[
        LogLevel,
        Meta(
            description="log level of mailprobe's own lines; other libraries' lines are written "
            "from WARNING only, and every line's URLs keep only scheme and host"
        ),
    ] = "INFO"

    def __post_init__(self) -> None:
        check_url("NATS_URL", self.nats_url, ("nats", "tls", "ws", "wss"))
        check_secrets_filled("NATS_URL", self.nats_url)
        check_tls(self, "NATS_TLS_CERT_FILE", "NATS_TLS_KEY_FILE", "NATS_TLS_CA_FILE")


def load(cls: type[T], env: Mapping[str, str] | None = None, **overrides: object) -> T:
    """Build `cls` from the environment (empty values count as unset) plus explicit overrides.
    A Struct whose fields are all Structs (controller.settings.ControllerSettings) is a Struct of
    groups: each group is built so from the same environment, then `cls` from the groups."""
    source = os.environ if env is None else env
    if groups := _groups(cls):
        built = {
            name: load(group, source, **{k: v for k, v in overrides.items() if k in _names(group)})
            for name, group in groups
        }
        try:
            return cls(**built)
        except ValueError as exc:
            raise SettingsError(_explain(str(exc))) from None
    names = {f.encode_name for f in msgspec.structs.fields(cls)}
    raw: dict[str, object] = {k: v for k, v in source.items() if k in names and v != ""}
    raw.update({k.upper(): v for k, v in overrides.items() if v is not None})
    try:
        return msgspec.convert(raw, type=cls, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(_explain(str(exc))) from None


def _groups(cls: type[msgspec.Struct]) -> list[tuple[str, type[msgspec.Struct]]]:
    """`cls`'s groups by field name when every field of it is a Struct, else none."""
    fields = msgspec.structs.fields(cls)
    if not all(isinstance(f.type, type) and issubclass(f.type, msgspec.Struct) for f in fields):
        return []
    return [(f.name, f.type) for f in fields]


def variables(cls: type[msgspec.Struct]) -> list[str]:
    """The environment variables `cls` reads (each group's, for a Struct of groups), in order."""
    if groups := _groups(cls):
        return [name for _, group in groups for name in variables(group)]
    return [f.encode_name for f in msgspec.structs.fields(cls)]


def _names(cls: type[msgspec.Struct]) -> set[str]:
    """The lower-case names `load`'s overrides give `cls`'s fields."""
    return {f.encode_name.lower() for f in msgspec.structs.fields(cls)}


def _explain(message: str) -> str:
    if missing := _MISSING.search(message):
        return f"setting {missing.group(1)} is required but not set"
    if at := _PATH.search(message):
        detail = message.split(" - at ")[0]
        return f"setting {at.group(1)} is invalid: {detail}"
    return f"setting {message}"


def table(cls: type[msgspec.Struct]) -> str:
    """The settings table of docs/settings.md for one process's settings, a row per variable,
    required ones first; for a Struct of groups, group by group, each row naming its group."""
    groups = _groups(cls)
    rows = [
        "| setting | group | default | meaning |" if groups else "| setting | default | meaning |"
    ]
    rows.append("| --- " * (rows[0].count("|") - 1) + "|")
    for group, struct in groups or [("", cls)]:
        info = msgspec.inspect.type_info(struct)
        if not isinstance(info, msgspec.inspect.StructType):
            raise BrokenInvariant(
                "settings.table: expected isinstance(info, msgspec.inspect.StructType)"
            )
        for field in sorted(info.fields, key=lambda f: not f.required):
            default = "" if field.required else f"`{field.default}`"
            schema = getattr(field.type, "extra_json_schema", None) or {}
            desc = str(schema.get("description", ""))
            cells = [
                f"`{field.encode_name}`",
                *([group.replace("_", " ")] if groups else []),
                default,
                desc,
            ]
            rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


if __name__ == "__main__":
    # Each process lists its own (the settings shared by both in each).
    sys.stdout.write("python -m controller.settings  # the controller's settings\n")
    sys.stdout.write("python -m agent.settings       # the agent's settings\n")
