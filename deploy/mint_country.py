"""`python -m deploy.mint_country CC`: NATS credentials for the agents of a new country.

Generates a random password, stores only its bcrypt hash in a user block `agent-CC` of
deploy/nats/agents.conf (every other block is kept and re-rendered with the current permissions)
and prints, once, the settings that country's agents need. The same command mints the service
users: `python -m deploy.mint_country controller` and `python -m deploy.mint_country subscriber`.

    python -m deploy.mint_country DE --nats-url nats://nats.example.net:4222
    python -m deploy.mint_country DE --rotate          # new password for an existing country
    python -m deploy.mint_country --refresh            # re-render all blocks, no new credentials
    python -m deploy.mint_country DE --print-only      # print the block, write nothing

Afterwards reload every NATS server that includes the file (`nats-server --signal reload`).
"""

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from deploy.nats_conf import (
    CONTROLLER_USER,
    SUBSCRIBER_INBOX_PREFIX,
    SUBSCRIBER_USER,
    StoredUser,
    agent_inbox_prefix,
    credentials_url,
    hash_password,
    new_password,
    parse_users_conf,
    render_user,
    render_users_conf,
    user_for,
    with_user,
)

DEFAULT_CONF = Path(__file__).resolve().parent / "nats" / "agents.conf"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.mint_country",
        description="mint NATS credentials for a country's agents (or a service user)",
    )
    parser.add_argument(
        "name", nargs="?", help=f"country code like DE, or {CONTROLLER_USER} / {SUBSCRIBER_USER}"
    )
    parser.add_argument("--conf", type=Path, default=DEFAULT_CONF, help="the agents.conf to edit")
    parser.add_argument(
        "--nats-url",
        default="nats://nats:4222",
        help="NATS URL(s) the new user connects to (comma-separated); credentials are added",
    )
    parser.add_argument("--rotate", action="store_true", help="replace an existing password")
    parser.add_argument("--print-only", action="store_true", help="print the block, write nothing")
    parser.add_argument(
        "--refresh", action="store_true", help="re-render every block with current permissions"
    )
    args = parser.parse_args(argv)

    conf: Path = args.conf
    try:
        users = parse_users_conf(conf.read_text()) if conf.exists() else {}
        if args.name is None:
            if not args.refresh:
                parser.error("give a country code or service user, or --refresh")
            conf.write_text(render_users_conf(users.values()))
            print(f"re-rendered {len(users)} users in {conf}", file=sys.stderr)
            return 0
        user = user_for(args.name)
        password = new_password()
        stored = StoredUser(
            user, hash_password(password), datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        )
        if args.print_only:
            sys.stdout.write(render_user(stored.user, stored.password_hash, minted=stored.minted))
        else:
            users = with_user(users, stored, rotate=args.rotate)
            conf.write_text(render_users_conf(users.values()))
            print(
                f"{'rotated' if args.rotate else 'added'} {user} in {conf}; reload the NATS "
                "servers that include it: nats-server --signal reload (or kill -HUP <pid>)",
                file=sys.stderr,
            )
        url = credentials_url(args.nats_url, user, password)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"# {user}: shown once, only the bcrypt hash is stored")
    print(f"NATS_URL={url}")
    if user.startswith("agent-"):
        cc = user.removeprefix("agent-")
        print(f"AGENT_COUNTRY={cc}")
        print(f"# the agent connects with inbox_prefix={agent_inbox_prefix(cc)}")
    elif user == SUBSCRIBER_USER:
        print(f"# connect with inbox_prefix={SUBSCRIBER_INBOX_PREFIX} and read through ordered")
        print("# consumers (ack policy none) on the RESULTS and EVENTS streams")
    return 0


if __name__ == "__main__":
    sys.exit(main())
