"""What `make run` left for the command-line tools in `.run/` (or MAILPROBE_RUN_DIR): the URLs
it chose (`endpoints.json`: the API's, NATS's, each moved off its default when that port was
busy) and its controller's instance key (`instance.key`, readable by its owner only), which a
tool checks the API against before sending a token (controller.access.instance_proof).
A flag or an environment variable still wins over a URL found here."""

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

RUN_DIR_ENV = "MAILPROBE_RUN_DIR"
DEFAULT_RUN_DIR = ".run"
ENDPOINTS = "endpoints.json"
INSTANCE_KEY = "instance.key"


@dataclass(frozen=True, slots=True)
class Run:
    api: str | None
    nats: str | None
    key: str | None  # the controller's INSTANCE_KEY


def folder(env: Mapping[str, str]) -> Path:
    return Path(env.get(RUN_DIR_ENV) or DEFAULT_RUN_DIR)


def read(env: Mapping[str, str]) -> Run | None:
    """The run's endpoints and key; None when no run left any (or a file is unreadable)."""
    where = folder(env)
    try:
        found = json.loads((where / ENDPOINTS).read_text())
    except (OSError, ValueError):
        found = None
    try:
        key = (where / INSTANCE_KEY).read_text().strip() or None
    except OSError:
        key = None
    if not isinstance(found, dict) and key is None:
        return None
    found = found if isinstance(found, dict) else {}
    api, nats = found.get("api"), found.get("nats")
    return Run(api if isinstance(api, str) else None, nats if isinstance(nats, str) else None, key)
