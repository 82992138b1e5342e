"""The controller's command line: every command and its arguments.

Only the grammar lives here, on light imports, so that parsing (and `--help`) costs a fraction
of a second; `controller.__main__` imports the module that runs a command once it is chosen.
"""

import argparse
import re
from typing import get_args
from uuid import UUID

from controller.access.accounts_store import ROLES
from controller.ascode.api_url import DEFAULT_API
from shared.messages import Status

DEFAULT_NATS = "nats://127.0.0.1:4222"
_API_HELP = f"the API's base URL (default: MAILPROBE_API or {DEFAULT_API})"


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m controller")
    sub = root.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply schema migrations (idempotent, safe with replicas)")
    for name, helptext in (
        ("create-admin", "create the organization if needed and an admin user; print a token"),
        ("create-user", "create a user with any role; print a token"),
    ):
        cmd = sub.add_parser(name, help=helptext)
        cmd.add_argument("--org", required=True, help="organization name")
        cmd.add_argument("--email", required=True)
        cmd.add_argument("--password", required=True)
        if name == "create-user":
            cmd.add_argument("--role", required=True, choices=ROLES)
            cmd.add_argument("--global-supporter", action="store_true")
            cmd.add_argument(
                "--operator", action="store_true", help="one of the deployment's operators"
            )
    op = sub.add_parser(
        "operator",
        help="make a user one of the deployment's operators (agents, fleet, oracles and their"
        " notices), or no longer one with --revoke",
    )
    op.add_argument("--email", required=True)
    op.add_argument("--revoke", action="store_true")
    serve = sub.add_parser("serve", help="API + scheduler + ingester + alerter")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    sub.add_parser("gen-key", help="print a new SECRETS_KEY")
    _ascode(sub)
    _oauth2_device(sub)
    _tail(sub)
    _streams_move(sub)
    return root


def _streams_move(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """`streams-move` (controller.runtime.stream_snapshots)."""
    cmd = sub.add_parser(
        "streams-move",
        help="copy JOBS, RESULTS and EVENTS with their consumers from another NATS server (a"
        " single hub) onto NATS_URL's cluster at STREAM_REPLICAS; controllers and agents stopped",
    )
    cmd.add_argument(
        "--from",
        dest="source",
        required=True,
        help="the old server's URL, with its user but no password (tls://controller@old-hub:4222;"
        " its TLS verified with the NATS_TLS_* settings)",
    )
    cmd.add_argument(
        "--from-password-file",
        default=None,
        help="a file holding the old server's password (its first line); else the environment"
        " variable STREAMS_MOVE_FROM_PASSWORD. Never on the command line, which every user of"
        " the machine can read",
    )
    cmd.add_argument(
        "--work-dir",
        default=None,
        help="where each stream's snapshot waits until restored (default: a temporary"
        " directory; needs room for the largest stream)",
    )


def _ascode(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """`apply` and `export` (controller.ascode.run)."""
    cmd = sub.add_parser(
        "apply",
        help="create/update (and --prune delete) monitors, or notification channels, from a file",
    )
    cmd.add_argument("-f", "--file", required=True, help="the monitors file (YAML)")
    cmd.add_argument(
        "--prune",
        action="store_true",
        help="delete the customer's other monitors (a channels file: the other channels)",
    )
    cmd.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    export = sub.add_parser(
        "export", help="print a customer's monitors (or the channels) as a file apply takes"
    )
    which = export.add_mutually_exclusive_group(required=True)
    which.add_argument("--customer", help="numeric id or public UUID")
    which.add_argument(
        "--channels", action="store_true", help="the organization's notification channels"
    )
    for c in (cmd, export):
        c.add_argument("--api", default=None, help=_API_HELP)
        c.add_argument(
            "--insecure-http",
            action="store_true",
            help="allow a plain http:// --api on another host (the token then crosses the"
            " network unencrypted); without it only localhost and loopback addresses",
        )


def _oauth2_device(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """`oauth2-device` (controller.ascode.device_cli)."""
    cmd = sub.add_parser(
        "oauth2-device",
        help="sign a mailbox in by the device code flow and store its refresh token on a monitor",
    )
    cmd.add_argument("--monitor", required=True, help="the monitor's public id")
    cmd.add_argument(
        "--login", default="", choices=["", "send", "receive"], help="a round trip's leg"
    )
    cmd.add_argument("--provider", default="microsoft", choices=["microsoft", "google", "custom"])
    cmd.add_argument("--tenant", default="", help="microsoft: the tenant (id, domain, common)")
    cmd.add_argument("--client-id", required=True)
    cmd.add_argument(
        "--client-secret-env",
        default=None,
        help="an environment variable holding the client secret, if any",
    )
    cmd.add_argument("--scope", action="append", default=[], help="a scope (repeatable)")
    cmd.add_argument("--mechanism", default="XOAUTH2", choices=["XOAUTH2", "OAUTHBEARER"])
    cmd.add_argument("--token-url", default=None, help="custom: the token endpoint")
    cmd.add_argument("--device-url", default=None, help="custom: the device endpoint")
    cmd.add_argument("--api", default=None, help=_API_HELP)
    cmd.add_argument("--insecure-http", action="store_true")


def _country(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z]{2}", value):
        raise argparse.ArgumentTypeError("an ISO 3166-1 alpha-2 code like DE")
    return value.upper()


def _monitor(value: str) -> str:
    if not value.strip():
        raise argparse.ArgumentTypeError("a monitor's name or publicId")
    try:
        return str(UUID(value))
    except ValueError:
        return value  # a name, looked up through the API


def _tail(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """`tail` (controller.tail)."""
    cmd = sub.add_parser("tail", help="print check results as they arrive (Ctrl-C stops)")
    cmd.add_argument("--country", type=_country, help="only results from this country")
    cmd.add_argument(
        "--monitor",
        type=_monitor,
        help="only this monitor: its publicId, or its name (looked up through the API with"
        " MAILPROBE_TOKEN)",
    )
    cmd.add_argument(
        "--status",
        choices=get_args(Status),
        help="only up, only down or only inconclusive results (the agent's own path failed)",
    )
    cmd.add_argument(
        "--ids",
        action="store_true",
        help="show each monitor's publicId beside its name (a monitor whose name is not known"
        " shows its publicId anyway)",
    )
    cmd.add_argument("--nats", default=None, help=f"NATS URL (default: NATS_URL or {DEFAULT_NATS})")
    cmd.add_argument(
        "--api",
        default=None,
        help=f"the API that finds a monitor by name (default: MAILPROBE_API or {DEFAULT_API})",
    )
    cmd.add_argument(
        "--insecure-http",
        action="store_true",
        help="allow a plain http:// --api on another host (as for apply)",
    )
