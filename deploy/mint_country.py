"""`python -m deploy.mint_country CC`: NATS credentials and the sealing key pair of a country.

For a country: a random password whose bcrypt hash goes into the user `agent-CC` of the account
`AGENT_CC` in deploy/nats/agents.conf (every other user is kept, and every file is written again
with the current accounts and permissions), and the country's sealing key pair
(shared.sealing): the private key for the agents (`deploy/seal/agent-CC.keys`, mode 0600, one
base64 key per line) and the public key for the controllers (`deploy/seal/public/CC.pub`). The
user's NATS_URL, with its password, goes into `deploy/.env` (mode 0600) as compose reads it
(`AGENT_CC_NATS_URL`, `CONTROLLER_NATS_URL`, `SUBSCRIBER_NATS_URL`); a password is never
printed. The same command mints the service users (`controller`, `subscriber`) and the logins
of a regional leaf server at the hub (`leaf-REGION --countries DE,FR`: one login per country,
`leaf-REGION-CC`), and writes that leaf server's own `deploy/nats/leaf-REGION/agents.conf` and
`leaf.env` (its NATS_HUB_LEAF_URL_CC variables, mode 0600).

Every file it writes is git-ignored (deploy/.gitignore): agents.conf holds password hashes, and
the others passwords and keys.

    python -m deploy.mint_country DE --nats-url tls://nats.example.net:4222
    python -m deploy.mint_country DE --rotate           # new NATS password for an existing country
    python -m deploy.mint_country DE --rotate-seal-key  # new key pair; the agents keep the last
    python -m deploy.mint_country leaf-eu --countries DE,FR --hub-leaf-url nats-leaf://hub:7422
    python -m deploy.mint_country leaf-eu --countries DE,FR,NL   # change a leaf's countries
    python -m deploy.mint_country --refresh             # re-render every file, no new credentials
    python -m deploy.mint_country DE --print-only       # print the user's block, write nothing

Afterwards reload every NATS server whose agents.conf changed (`nats-server --signal reload`).
"""

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from deploy.gen_env import ENV_FILE, put, write_private
from deploy.nats_conf import (
    CONTROLLER_USER,
    SUBSCRIBER_INBOX_PREFIX,
    SUBSCRIBER_USER,
    StoredUser,
    agent_inbox_prefix,
    countries_of,
    credentials_url,
    hash_password,
    is_leaf_region,
    leaf_login,
    leaf_of,
    leaf_regions,
    leaf_url_variable,
    legacy_leaf_users,
    new_password,
    parse_users_conf,
    render_leaf_conf,
    render_user,
    render_users_conf,
    user_for,
    with_user,
)
from shared.sealing import generate

DEPLOY = Path(__file__).resolve().parent
DEFAULT_CONF = DEPLOY / "nats" / "agents.conf"
DEFAULT_SEAL_DIR = DEPLOY / "seal"
# Key pairs an agent keeps: the current one and the one before, so jobs sealed just before a
# rotation still open.
SEAL_KEYS_KEPT = 2
LEAF_ENV = "leaf.env"
RELOAD = "reload the NATS servers that include it: nats-server --signal reload (or kill -HUP <pid>)"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m deploy.mint_country",
        description="mint the NATS credentials and sealing keys of a country's agents, the "
        "logins of a leaf server, or a service user",
    )
    p.add_argument(
        "name",
        nargs="?",
        help=f"country code like DE, leaf-REGION, {CONTROLLER_USER} or {SUBSCRIBER_USER}",
    )
    p.add_argument("--conf", type=Path, default=DEFAULT_CONF, help="the hub's agents.conf")
    p.add_argument(
        "--env",
        type=Path,
        default=ENV_FILE,
        help="the env file the minted NATS URLs are written to (made readable by its owner only)",
    )
    p.add_argument(
        "--seal-dir",
        type=Path,
        default=DEFAULT_SEAL_DIR,
        help="where the countries' sealing keys are written (agent-CC.keys, public/CC.pub)",
    )
    p.add_argument(
        "--nats-url",
        default="tls://nats:4222",
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
    p.add_argument(
        "--rotate-seal-key",
        action="store_true",
        help="a country only: a new sealing key pair (its agents keep the previous key too)",
    )
    p.add_argument("--print-only", action="store_true", help="print the block, write nothing")
    p.add_argument(
        "--refresh", action="store_true", help="re-render every file with current permissions"
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


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _run(args: argparse.Namespace) -> int:
    conf: Path = args.conf
    text = conf.read_text() if conf.exists() else ""
    users = parse_users_conf(text)
    for legacy in legacy_leaf_users(text):
        print(
            f"dropped the leaf user {legacy} of an earlier version: leaf servers log in once per "
            f"country now; mint them with `{legacy} --countries … --rotate`",
            file=sys.stderr,
        )
    if args.name is None:
        _write(conf, users)
        print(f"re-rendered {len(users)} users in {conf} and its leaf servers", file=sys.stderr)
        return 0
    if is_leaf_region(args.name):
        return _mint_leaf(args, users)
    if args.countries is not None:
        raise ValueError("--countries is for leaf-REGION servers only")
    user = user_for(args.name)
    cc = user.removeprefix("agent-") if user.startswith("agent-") else None
    if args.rotate_seal_key and cc is None:
        raise ValueError("--rotate-seal-key is for a country only")
    password = None
    if cc is not None and user in users and not args.rotate and not args.print_only:
        if not args.rotate_seal_key and _has_seal_key(args.seal_dir, cc):
            raise ValueError(
                f"{user} already has credentials; pass --rotate to replace its password, "
                "--rotate-seal-key to replace its sealing key pair"
            )
        print(f"{user} keeps its NATS password", file=sys.stderr)
    else:
        password = new_password()
        stored = StoredUser(user, hash_password(password), _now())
        if args.print_only:
            sys.stdout.write(render_user(user, stored.password_hash, minted=stored.minted))
            return 0
        users = with_user(users, stored, rotate=args.rotate)
        _write(conf, users)
        print(
            f"{'rotated' if args.rotate else 'added'} {user} in {conf}; {RELOAD}", file=sys.stderr
        )
    if cc is not None:
        _seal_keys(args.seal_dir, cc, rotate=args.rotate_seal_key)
    if password is not None:
        _print_settings(args, user, password)
    return 0


def _mint_leaf(args: argparse.Namespace, users: dict[str, StoredUser]) -> int:
    """The logins of leaf server `args.name`: one per listed country (new ones, or all with
    --rotate, get a password), none for the others."""
    region: str = args.name
    if args.countries is None:
        raise ValueError(
            f"{region} is a leaf server: say whose agents it carries, --countries DE,FR"
        )
    if args.rotate_seal_key:
        raise ValueError("--rotate-seal-key is for a country only")
    countries = countries_of(args.countries)
    kept = {
        name: u
        for name, u in users.items()
        if (leaf := leaf_of(name)) is None or leaf[0] != region or leaf[1] in countries
    }
    minted: dict[str, str] = {}
    for cc in countries:
        login = leaf_login(region, cc)
        if login not in kept or args.rotate:
            minted[cc] = new_password()
            kept[login] = StoredUser(login, hash_password(minted[cc]), _now())
    if args.print_only:
        for cc in minted:
            login = leaf_login(region, cc)
            sys.stdout.write(render_user(login, kept[login].password_hash, minted=_now()))
        return 0
    _write(args.conf, kept)
    leaf_conf = args.conf.parent / region / args.conf.name
    print(
        f"{region} carries {','.join(countries)}: {args.conf} and {leaf_conf}; {RELOAD}",
        file=sys.stderr,
    )
    leaf_env = leaf_conf.parent / LEAF_ENV
    values = {
        leaf_url_variable(cc): credentials_url(args.hub_leaf_url, leaf_login(region, cc), password)
        for cc, password in minted.items()
    }
    carried = {leaf[1] for name in users if (leaf := leaf_of(name)) and leaf[0] == region}
    dropped = frozenset(leaf_url_variable(cc) for cc in carried - set(countries))
    put(leaf_env, {**values, "NATS_SERVER_NAME": f"{region}-1"}, template=None, drop=dropped)
    print(f"# {region}: the leaf server's settings are in {leaf_env} (mode 0600)")
    print(f"# wrote {', '.join(values) or 'no new login'}; only the hashes are kept elsewhere")
    if len(minted) < len(countries):
        print("# the variables of its other countries stay as they are")
    print(f"# copy {leaf_conf} beside leaf.conf and give the server {leaf_env}'s variables;")
    print("# agents there keep their agent-CC users")
    return 0


def _write(conf: Path, users: dict[str, StoredUser]) -> None:
    """The hub's agents.conf and every leaf server's (in `<conf dir>/leaf-REGION/`)."""
    conf.write_text(render_users_conf(users.values()))
    for region in leaf_regions(users.values()):
        leaf_conf = conf.parent / region / conf.name
        leaf_conf.parent.mkdir(exist_ok=True)
        leaf_conf.write_text(render_leaf_conf(region, users.values()))


def private_keys_file(seal_dir: Path, cc: str) -> Path:
    return seal_dir / f"agent-{cc}.keys"


def public_key_file(seal_dir: Path, cc: str) -> Path:
    return seal_dir / "public" / f"{cc}.pub"


def _has_seal_key(seal_dir: Path, cc: str) -> bool:
    return private_keys_file(seal_dir, cc).exists() and public_key_file(seal_dir, cc).exists()


def _seal_keys(seal_dir: Path, cc: str, *, rotate: bool) -> None:
    """Make the country's key pair if it has none, or a new one with `rotate`: the agents' file
    gets the new private key first and keeps the previous one (jobs sealed before the rotation
    still open), the public key file holds the new key only."""
    if _has_seal_key(seal_dir, cc) and not rotate:
        return
    private_file, public_file = private_keys_file(seal_dir, cc), public_key_file(seal_dir, cc)
    seal_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    public_file.parent.mkdir(exist_ok=True)
    old = private_file.read_text().split() if private_file.exists() else []
    private, public = generate()
    _write_secret(private_file, "".join(f"{k}\n" for k in [private, *old][:SEAL_KEYS_KEPT]))
    public_file.write_text(f"{public}\n")
    print(
        f"{'rotated' if old else 'made'} the sealing key pair of {cc}: {private_file} (for "
        f"its agents, AGENT_SEAL_KEYS_FILE) and {public_file} (for the controllers, "
        f"SEAL_PUBLIC_KEYS_DIR)"
        + ("; give the agents the new file before the controllers the new key" if old else ""),
        file=sys.stderr,
    )


def _write_secret(path: Path, text: str) -> None:
    """Write `text` to `path` readable by its owner only, from the first byte on."""
    tmp = path.with_name(path.name + ".tmp")
    write_private(tmp, text)
    os.replace(tmp, path)


def env_variable(user: str) -> str:
    """The variable of deploy/.env (what compose reads) holding `user`'s NATS_URL."""
    return f"{user.upper().replace('-', '_')}_NATS_URL"


def _print_settings(args: argparse.Namespace, user: str, password: str) -> None:
    variable = env_variable(user)
    put(args.env, {variable: credentials_url(args.nats_url, user, password)})
    print(f"# {user}: its NATS_URL, with the password, is {variable} in {args.env} (mode 0600);")
    print("# only the bcrypt hash is kept in agents.conf. Elsewhere than compose, set:")
    print(f"NATS_URL=<{variable} of {args.env}>")
    print("NATS_TLS_CA_FILE=/etc/mailprobe/tls/ca.pem  # the CA of the hub's certificate")
    if user.startswith("agent-"):
        cc = user.removeprefix("agent-")
        print(f"AGENT_COUNTRY={cc}")
        print(f"AGENT_SEAL_KEYS_FILE=/etc/mailprobe/seal/{private_keys_file(Path(), cc).name}")
        print(f"# copy {private_keys_file(args.seal_dir, cc)} there (mode 0600)")
        print(f"# the agent connects with inbox_prefix={agent_inbox_prefix(cc)}")
    elif user == SUBSCRIBER_USER:
        print(f"# connect with inbox_prefix={SUBSCRIBER_INBOX_PREFIX}; no consumers: follow live")
        print("# by core subscription (mon.results.>, mon.events.*), read history with stream")
        print("# info and message get (nats stream get, js.get_msg(..., next=True))")
    else:
        print(
            f"SEAL_PUBLIC_KEYS_DIR=/etc/mailprobe/seal/public  # a copy of {args.seal_dir}/public"
        )


if __name__ == "__main__":
    sys.exit(main())
