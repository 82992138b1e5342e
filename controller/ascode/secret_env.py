"""Which environment variables a monitors file may read as a secret (pure).

A monitors file names where its secrets come from, and the file says which server receives
them: a file that could read any variable could send the API token (or any other secret of the
shell running `apply`) as a mailbox password to a server of the file's choosing. So a secret
comes only from a variable named `MAILPROBE_SECRET_<NAME>`, and never from the API token's
variable, nor holds the API token's value, whatever variable carries it.
"""

import re
from collections.abc import Mapping

SECRET_PREFIX = "MAILPROBE_SECRET_"
TOKEN_ENV = "MAILPROBE_TOKEN"
_NAME = re.compile(rf"{SECRET_PREFIX}[A-Za-z0-9_]+")


def refusal(name: str) -> str | None:
    """Why `name` may not be read as a secret, or None when it may."""
    if name == TOKEN_ENV:
        return f"{name} holds the API token and is never sent as a secret"
    if not _NAME.fullmatch(name):
        return (
            f"environment variable {name} may not be read as a secret: secrets come only from"
            f" variables named {SECRET_PREFIX}<NAME> (letters, digits, _)"
        )
    return None


def holds_the_token(value: str, env: Mapping[str, str]) -> bool:
    """Whether a secret's value is the API token (copied into a secret variable)."""
    token = env.get(TOKEN_ENV)
    return bool(token) and value == token


SLUG_MAX = 60  # of the monitor's name in a made-up name: the API takes 100 after the prefix


def export_name(monitor_name: str, what: str = "PASSWORD") -> str:
    """The variable `export` makes up for a secret the API has no name for (a monitor made in
    the console): the prefix, the monitor's name in capitals (letters and digits, `_` between,
    at most 60), then what the secret is (`PASSWORD`, `SEND_PASSWORD`, `CLIENT_SECRET`...)."""
    slug = re.sub(r"[^A-Z0-9]+", "_", monitor_name.upper()).strip("_")[:SLUG_MAX].strip("_")
    return f"{SECRET_PREFIX}{slug or 'MONITOR'}_{what}"


def what_of(steps: tuple[str, ...], legs: int) -> str:
    """What a secret at `steps` of a config is, for `export_name`: `PASSWORD` for a kind's one
    password, the leg before it when the kind has two (`SEND_PASSWORD`, `RECEIVE_PASSWORD`),
    an OAuth2 grant's key in capitals (`CLIENT_SECRET`, `SEND_REFRESH_TOKEN`)."""
    leg = f"{steps[0].upper()}_" if legs > 1 else ""
    leaf = steps[-1]
    if "oauth2" in steps:
        return leg + re.sub(r"(?<!^)(?=[A-Z])", "_", leaf).upper()
    return f"{leg}PASSWORD"
