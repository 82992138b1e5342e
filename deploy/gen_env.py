"""`python -m deploy.gen_env [--ha]`: deploy/.env with every password and key generated.

Starts from the file as it is (or from `.env.example` the first time) and fills each secret
that is empty or still a template's placeholder (`change-me`): POSTGRES_PASSWORD and
SECRETS_KEY, and with `--ha` (deploy/compose.ha.yaml) REPLICATION_PASSWORD,
PATRONI_SUPERUSER_PASSWORD and PATRONI_RESTAPI_PASSWORD. A value already set is kept, so
running it again changes nothing; every other line is kept as it is. The file is readable
by its owner only. It prints the names it filled, never a value. The NATS URLs come from
`python -m deploy.mint_country`, which writes each into the same file (`put`), so the two
commands run in either order.
"""

import argparse
import os
import re
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

from controller.secrets.box import generate_key
from shared.settings import is_placeholder

DEPLOY = Path(__file__).resolve().parent
ENV_FILE = DEPLOY / ".env"
TEMPLATE = DEPLOY / ".env.example"


def _password() -> str:
    # URL-safe: the passwords go into DATABASE_URL as they are.
    return secrets.token_urlsafe(32)


SECRETS: dict[str, Callable[[], str]] = {
    "POSTGRES_PASSWORD": _password,
    "SECRETS_KEY": generate_key,
}
HA_SECRETS: dict[str, Callable[[], str]] = {
    "REPLICATION_PASSWORD": _password,
    "PATRONI_SUPERUSER_PASSWORD": _password,
    "PATRONI_RESTAPI_PASSWORD": _password,
}
_LINE = re.compile(r"^(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")


def fill(text: str, wanted: dict[str, Callable[[], str]]) -> tuple[str, list[str]]:
    """`text` (an env file) with each of `wanted` that is missing, empty or a placeholder
    generated; the names filled."""
    lines, filled, seen = text.splitlines(), [], set()
    for i, line in enumerate(lines):
        found = _LINE.match(line)
        if found is None or found["name"] not in wanted:
            continue
        name = found["name"]
        seen.add(name)
        if not found["value"].strip().strip("'\"") or is_placeholder(found["value"].strip("'\"")):
            lines[i] = f"{name}={wanted[name]()}"
            filled.append(name)
    for name in wanted:
        if name not in seen:
            lines.append(f"{name}={wanted[name]()}")
            filled.append(name)
    return "\n".join(lines) + "\n", filled


def put(
    path: Path,
    values: dict[str, str],
    template: Path | None = TEMPLATE,
    drop: frozenset[str] = frozenset(),
) -> None:
    """Set `values` in the env file `path` (from `template` when it does not exist yet): a
    variable's line is replaced, a new one appended, the lines of `drop` removed; every other
    line is kept. Owner-only."""
    source = path if path.exists() else template
    text = source.read_text() if source is not None and source.exists() else ""
    left, lines = dict(values), []
    for line in text.splitlines():
        found = _LINE.match(line)
        name = found["name"] if found is not None else None
        if name in drop:
            continue
        lines.append(f"{name}={left.pop(name)}" if name in left else line)
    lines += [f"{name}={value}" for name, value in left.items()]
    write_private(path, "\n".join(lines) + "\n")


def write_private(path: Path, text: str) -> None:
    """Readable by its owner only, from the first byte on (an older file made private too)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m deploy.gen_env", description=__doc__)
    p.add_argument("--ha", action="store_true", help="also compose.ha.yaml's passwords")
    p.add_argument("--env", type=Path, default=ENV_FILE, help="the file to fill")
    args = p.parse_args(argv)
    source = args.env if args.env.exists() else TEMPLATE
    wanted = {**SECRETS, **(HA_SECRETS if args.ha else {})}
    text, filled = fill(source.read_text(), wanted)
    write_private(args.env, text)
    kept = [n for n in wanted if n not in filled]
    print(f"{args.env}: generated {', '.join(filled) or 'nothing'}", end="")
    print(f"; kept {', '.join(kept)}" if kept else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
