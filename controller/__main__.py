"""`python -m controller migrate | create-admin | create-user | operator | serve | gen-key | apply |
export | oauth2-device | tail |
streams-move`."""

import argparse
import asyncio
import os
import sys

import asyncpg
import structlog

from controller.access import accounts_store as accounts
from controller.access.credentials import hash_password, new_token
from controller.cli import parser
from controller.db.migrate import migrate
from controller.db.pool import connect
from controller.secrets.box import generate_key
from controller.settings import ControllerSettings
from shared import startup
from shared.clock import WALL, Clock
from shared.logging import configure
from shared.loop import run_loop
from shared.settings import SettingsError, load

log = structlog.get_logger("controller")


async def _migrate(settings: ControllerSettings) -> None:
    conn = await connect(settings.database.database_url)
    try:
        applied = await migrate(conn)
    finally:
        await conn.close()
    log.info("migrations done", applied=applied)


async def _create_user(
    settings: ControllerSettings,
    args: argparse.Namespace,
    role: str,
    global_supporter: bool,
    operator: bool,
    clock: Clock,
) -> str:
    conn = await connect(settings.database.database_url)
    try:
        async with conn.transaction():
            org_id = await accounts.ensure_organization(conn, args.org)
            user = await accounts.create_user(
                conn,
                org_id,
                args.email,
                hash_password(args.password),
                role,
                global_supporter,
                operator,
            )
            token, digest = new_token()
            ttl = settings.access.token_ttl_seconds
            await accounts.issue_token(conn, user.id, digest, ttl, clock.now())
    finally:
        await conn.close()
    return token


async def _set_operator(
    settings: ControllerSettings, email: str, operator: bool, clock: Clock
) -> bool:
    conn = await connect(settings.database.database_url)
    try:
        return await accounts.set_operator(conn, email, operator, clock.now()) is not None
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # A command's module is imported once it is chosen: `serve` needs the whole controller,
    # the others a small part of it.
    if args.command == "gen-key":
        print(generate_key())
        return 0
    if args.command in ("apply", "export"):
        with startup.imports():
            from controller.ascode import run as ascode

        # API clients: they need a token, not the controller's settings.
        return ascode.main(args, os.environ)
    if args.command == "oauth2-device":
        with startup.imports():
            from controller.ascode import device_cli

        return device_cli.main(args, os.environ)  # an API client, as apply
    if args.command == "tail":
        with startup.imports():
            from controller import tail

        return tail.main(args, os.environ)  # a NATS reader only
    try:
        settings = load(
            ControllerSettings,
            api_host=getattr(args, "host", None),
            api_port=getattr(args, "port", None),
        )
        if args.command == "serve" and settings.secrets.secrets_key is None:
            raise SettingsError(
                "setting SECRETS_KEY is required by serve (python -m controller gen-key makes one)"
            )
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure(settings.process.log_format, settings.process.log_level)
    try:
        if args.command == "migrate":
            asyncio.run(_migrate(settings))
        elif args.command in ("create-admin", "create-user"):
            role = "admin" if args.command == "create-admin" else args.role
            supporter = bool(getattr(args, "global_supporter", False))
            operator = bool(getattr(args, "operator", False))
            print(asyncio.run(_create_user(settings, args, role, supporter, operator, WALL)))
        elif args.command == "operator":
            if not asyncio.run(_set_operator(settings, args.email, not args.revoke, WALL)):
                print(f"error: no user has e-mail {args.email}", file=sys.stderr)
                return 1
            now = "no longer an operator" if args.revoke else "an operator"
            print(f"{args.email} is {now} of this deployment")
        elif args.command == "serve":
            with startup.imports():
                from controller.runtime.serve import serve
            run_loop(serve(settings))
        elif args.command == "streams-move":
            with startup.imports():
                from controller.runtime.streams_move import run

            return run(settings, args, os.environ)
    except asyncpg.UniqueViolationError:
        print(f"error: a user with e-mail {args.email} exists already", file=sys.stderr)
        return 1
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
