"""`python -m deploy.mint_country CC`: NATS credentials for the agents of a new country.

Generates a random password, stores only its bcrypt hash in a user block `agent-CC` of
deploy/nats/agents.conf (every other block is kept and re-rendered with the current permissions)
and prints, once, the settings that country's agents need. The same command mints the service
users (`controller`, `subscriber`) and the login of a regional leaf server at the hub
(`leaf-REGION --countries DE,FR`: the countries whose agents connect to that leaf).

    python -m deploy.mint_country DE --nats-url nats://nats.example.net:4222
    python -m deploy.mint_country DE --rotate          # new password for an existing country
    python -m deploy.mint_country leaf-eu --countries DE,FR --hub-leaf-url nats-leaf://hub:7422
    python -m deploy.mint_country leaf-eu --countries DE,FR,NL   # change a leaf's countries
    python -m deploy.mint_country --refresh            # re-render all blocks, no new credentials
    python -m deploy.mint_country DE --print-only      # print the block, write nothing

Afterwards reload every NATS server that includes the file (`nats-server --signal reload`).
"""

import argparse
import dataclasses
import sys
from datetime import UTC, datetime
from pathlib import Path

from deploy.nats_conf import (
    CONTROLLER_USER,
    SUBSCRIBER_INBOX_PREFIX,
    SUBSCRIBER_USER,
    StoredUser,
    agent_inbox_prefix,
    countries_of,
    credentials_url,
    hash_password,
    is_leaf_user,
    new_password,
    parse_users_conf,
    render_user,
    render_users_conf,
    user_for,
    with_user,
)

DEFAULT_CONF = Path(__file__).resolve().parent / "nats" / "agents.conf"
RELOAD = "reload the NATS servers that include it: nats-server --signal reload (or kill -HUP <pid>)"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m deploy.mint_country",
        description="mint NATS credentials for a country's agents, a leaf server or a service",
    )
    p.add_argument(
        "name",
        nargs="?",
        help=f"country code like DE, leaf-REGION, {CONTROLLER_USER} or {SUBSCRIBER_USER}",
    )
    p.add_argument("--conf", type=Path, default=DEFAULT_CONF, help="the agents.conf to edit")
    p.add_argument(
        "--nats-url",
        default="nats://nats:4222",
        help="NATS URL(s) the new user connects to (comma-separated); credentials are added",
    )
    p.add_argument(
        "--countries", help="leaf-REGION only: countries whose agents use that leaf, e.g. DE,FR"
    )
    p.add_argument(
        "--hub-leaf-url",
        default="nats-leaf://nats:7422",
        help="leaf-REGION only: the hub's leaf-node URL; credentials are added",
    )
    p.add_argument("--rotate", action="store_true", help="replace an existing password")
    p.add_argument("--print-only", action="store_true", help="print the block, write nothing")
    p.add_argument(
        "--refresh", action="store_true", help="re-render every block with current permissions"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.name is None and not args.refresh:
        p.error("give a country code, leaf-REGION or service user, or --refresh")
    try:
        return _run(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    conf: Path = args.conf
    users = parse_users_conf(conf.read_text()) if conf.exists() else {}
    if args.name is None:
        conf.write_text(render_users_conf(users.values()))
        print(f"re-rendered {len(users)} users in {conf}", file=sys.stderr)
        return 0
    user = user_for(args.name)
    countries = _countries(user, args.countries)
    if user in users and countries and not args.rotate and not args.print_only:
        users[user] = dataclasses.replace(users[user], countries=countries)
        conf.write_text(render_users_conf(users.values()))
        print(f"{user} now carries {','.join(countries)} in {conf}; {RELOAD}", file=sys.stderr)
        return 0
    password = new_password()
    minted = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    stored = StoredUser(user, hash_password(password), minted, countries)
    if args.print_only:
        sys.stdout.write(
            render_user(user, stored.password_hash, minted=minted, countries=countries)
        )
    else:
        conf.write_text(render_users_conf(with_user(users, stored, rotate=args.rotate).values()))
        print(
            f"{'rotated' if args.rotate else 'added'} {user} in {conf}; {RELOAD}", file=sys.stderr
        )
    _print_settings(args, user, password, countries)
    return 0


def _countries(user: str, given: str | None) -> tuple[str, ...]:
    """The countries of a leaf user (required for one), none for any other user."""
    if not is_leaf_user(user):
        if given is not None:
            raise ValueError("--countries is for leaf-REGION users only")
        return ()
    if given is None:
        raise ValueError(f"{user} is a leaf user: say whose agents it carries, --countries DE,FR")
    return countries_of(given)


def _print_settings(
    args: argparse.Namespace, user: str, password: str, countries: tuple[str, ...]
) -> None:
    print(f"# {user}: shown once, only the bcrypt hash is stored")
    if countries:
        print(f"# the leaf server's settings (deploy/nats/leaf.conf) for agents of {countries}:")
        print(f"NATS_HUB_LEAF_URL={credentials_url(args.hub_leaf_url, user, password)}")
        print(f"NATS_SERVER_NAME={user}-1")
        print("# agents there keep their own agent-CC users, with NATS_URL pointing at the leaf")
        return
    print(f"NATS_URL={credentials_url(args.nats_url, user, password)}")
    if user.startswith("agent-"):
        cc = user.removeprefix("agent-")
        print(f"AGENT_COUNTRY={cc}")
        print(f"# the agent connects with inbox_prefix={agent_inbox_prefix(cc)}")
    elif user == SUBSCRIBER_USER:
        print(f"# connect with inbox_prefix={SUBSCRIBER_INBOX_PREFIX}; no consumers: follow live")
        print("# by core subscription (mon.results.>, mon.events.*), read history with stream")
        print("# info and message get (nats stream get, js.get_msg(..., next=True))")


if __name__ == "__main__":
    sys.exit(main())
