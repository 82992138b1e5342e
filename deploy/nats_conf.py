"""NATS accounts, users and permissions: the one source of `deploy/nats/agents.conf` (the hub's)
and `deploy/nats/leaf-REGION/agents.conf` (each regional leaf server's).

NATS does not check a request's reply subject against the requester's publish rights: with all
users in one account, an agent could have JetStream deliver its jobs to any subject of that
account (into RESULTS, to every subscriber), and a reader could make the server write into any
stream. So every party gets an account of its own, and replies stay in the requester's account:

- `MAILPROBE`: JetStream (JOBS, RESULTS, EVENTS) and the `controller` user. It exports to each
  country's account exactly that country's services (below), and to `SUBSCRIBER` the live
  results and events and the history reads.
- `AGENT_CC`, one per country: the users `agent-CC` and `leaf-REGION-CC` (the login of a regional
  leaf server carrying CC's agents). Service imports from MAILPROBE: consumer info and pull
  requests of `JOBS/jobs-CC`, its acks, results on `mon.results.CC.>` and its receivers'
  arrivals on `mon.arrivals.CC.*` (with their PubAck), and heartbeats on
  `mon.heartbeats.CC.>`, and the `RECEIVERS` bucket's keys and entries (stream info and
  message get of `KV_RECEIVERS`). Nothing else reaches MAILPROBE from there; a reply the agent names
  is delivered in AGENT_CC, where nothing forwards it (NATS does not route a service response
  through a further service import). One stream import the other way: the
  controller's requests to CC's agents on `mon.control.CC.>` (a `Preempt`), which agents and
  the leaf logins carrying them may subscribe to, never publish; and the bucket's changes as
  the controller puts them (`$KV.RECEIVERS.>`), likewise.
- `SUBSCRIBER`: the read-only `subscriber` user. Live results (RESULTS republishes what it stored
  on `live.results.>`, imported here as `mon.results.>`: NATS does not pass a message that came in
  through a service import, as agents' results do, on to a stream export) and events, and stream
  info and message get of RESULTS and EVENTS.

Every account but MAILPROBE also gets a JetStream import from the server itself (`$JS.API.>`,
answering "JetStream not enabled"), which would race ours: so imported JetStream requests live
under `JS.MAILPROBE.API.>` there, and a mapping moves a client's `$JS.API.>` onto it. Agents and
readers keep nats-py's default prefix; permissions are checked on the mapped subject.

A leaf server (no JetStream) has the accounts of its countries with the same agent users and
mapping, and one leaf connection per account to the hub, logging in as `leaf-REGION-CC` of that
country's account at the hub: it can send only what CC's agents may, replies stay in AGENT_CC.

Users stay within allow lists too (a `deny` on subscribe would also drop JetStream deliveries
whose original subject matches it). Each user's block in agents.conf is delimited by
`# BEGIN <user>` and `# END <user>` lines, so `python -m deploy.mint_country` can re-read the file
(keeping the stored bcrypt hashes), add or rotate a user and write every file again.
"""

import ctypes
import ctypes.util
import importlib
import json
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from shared.arrivals import RECEIVERS_BUCKET
from shared.streams import RESULTS_LIVE_SUBJECTS, jobs_consumer_name
from shared.subjects import (
    CONTROL_SUBJECTS,
    EVENTS_STREAM,
    EVENTS_SUBJECTS,
    HEARTBEATS_SUBJECTS,
    JOBS_STREAM,
    RESULTS_STREAM,
    RESULTS_SUBJECTS,
    agent_inbox_prefix,
    arrivals_country_filter,
    control_country_filter,
    heartbeats_country_filter,
    results_country_filter,
)

ACCOUNT: Final = "MAILPROBE"
SUBSCRIBER_ACCOUNT: Final = "SUBSCRIBER"
CONTROLLER_USER: Final = "controller"
SUBSCRIBER_USER: Final = "subscriber"
SERVICE_USERS: Final = (CONTROLLER_USER, SUBSCRIBER_USER)
SUBSCRIBER_INBOX_PREFIX: Final = "_INBOX_subscriber"
# Where imported JetStream requests live in the importing accounts (see the module's docstring).
IMPORTED_API: Final = f"JS.{ACCOUNT}.API"
BCRYPT_COST: Final = 11
CLIENT_CONNECTIONS: Final = ("STANDARD", "WEBSOCKET")
LEAF_CONNECTIONS: Final = ("LEAFNODE",)
# Where a leaf server finds the CA that signed the hub's certificate (deploy/make_certs.py).
LEAF_CA_FILE: Final = "/etc/nats/tls/ca.pem"

_AGENT_USER = re.compile(r"agent-([A-Z]{2})")
_REGION = r"leaf-[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?"
_LEAF_REGION = re.compile(_REGION)
_LEAF_LOGIN = re.compile(rf"({_REGION})-([A-Z]{{2}})")
_COUNTRY = re.compile(r"[A-Z]{2}")
_BLOCK = re.compile(r"^ *# BEGIN (?P<user>\S+)\n(?P<body>.*?)^ *# END (?P=user)$", re.M | re.S)
_PASSWORD = re.compile(r'^\s*password: "(?P<hash>[^"]+)"$', re.M)
_MINTED = re.compile(r"^\s*# minted (?P<minted>.+)$", re.M)


@dataclass(frozen=True)
class Permissions:
    """Subjects a user may publish to and subscribe to; everything else is denied."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]


@dataclass(frozen=True)
class Service:
    """A service MAILPROBE exports to one account: `subject` in MAILPROBE, `local` the subject
    the importing account's clients publish to; `stream` for more than one response (a pull
    request's messages)."""

    subject: str
    local: str
    stream: bool = False


@dataclass(frozen=True)
class StoredUser:
    """One user as kept in agents.conf: its name, bcrypt hash and when it was minted."""

    user: str
    password_hash: str
    minted: str = ""


def _country(cc: str) -> str:
    if not _COUNTRY.fullmatch(cc):
        raise ValueError(f"country must be an upper-case ISO 3166-1 alpha-2 code, got {cc!r}")
    return cc


def countries_of(text: str) -> tuple[str, ...]:
    """`"de, fr"` → `("DE", "FR")`: sorted, without repeats; at least one."""
    found = sorted({_country(c.strip().upper()) for c in text.split(",") if c.strip()})
    if not found:
        raise ValueError("a leaf server needs at least one country, e.g. --countries DE,FR")
    return tuple(found)


def agent_user(cc: str) -> str:
    return f"agent-{_country(cc)}"


def agent_account(cc: str) -> str:
    return f"AGENT_{_country(cc)}"


def is_leaf_region(name: str) -> bool:
    """`leaf-eu`: a regional leaf server, which logs in at the hub once per country."""
    return _LEAF_REGION.fullmatch(name) is not None


def leaf_login(region: str, cc: str) -> str:
    """The user `region`'s leaf server logs in with at the hub for the agents of `cc`."""
    if not is_leaf_region(region):
        raise ValueError(f"a leaf region is named like leaf-eu (lower case), got {region!r}")
    return f"{region}-{_country(cc)}"


def leaf_of(user: str) -> tuple[str, str] | None:
    """`leaf-eu-DE` → `("leaf-eu", "DE")`; None for any other user."""
    match = _LEAF_LOGIN.fullmatch(user)
    return (match.group(1), match.group(2)) if match else None


def country_of(user: str) -> str | None:
    """The country whose account holds `user` (an agent or leaf login), else None."""
    if match := _AGENT_USER.fullmatch(user):
        return match.group(1)
    leaf = leaf_of(user)
    return leaf[1] if leaf else None


def agent_services(cc: str) -> tuple[Service, ...]:
    """What agents of `cc` (and the leaf logins carrying them) reach in MAILPROBE. No consumer
    create or update, no message get: a consumer's config decides where its jobs go, so only
    the controller writes consumers, and jobs are read only through `jobs-CC`."""
    consumer = jobs_consumer_name(_country(cc))
    info = f"CONSUMER.INFO.{JOBS_STREAM}.{consumer}"
    pull = f"CONSUMER.MSG.NEXT.{JOBS_STREAM}.{consumer}"
    return (
        Service(f"$JS.API.{info}", f"{IMPORTED_API}.{info}"),
        Service(f"$JS.API.{pull}", f"{IMPORTED_API}.{pull}", stream=True),
        # The receiving addresses' present entries (agent.receiver.book), read only.
        *(Service(f"$JS.API.{op}", f"{IMPORTED_API}.{op}") for op in RECEIVERS_READS),
        *(
            Service(s, s)
            for s in (
                f"$JS.ACK.{JOBS_STREAM}.{consumer}.>",  # ack, nak, term, in-progress
                results_country_filter(cc),
                arrivals_country_filter(cc),
                heartbeats_country_filter(cc),
            )
        ),
    )


# The JetStream reads of the RECEIVERS bucket an agent makes (its keys, each key's last entry);
# its changes come as they are put, on the stream export of `RECEIVERS_SUBJECTS`.
RECEIVERS_READS: Final = (
    f"STREAM.INFO.KV_{RECEIVERS_BUCKET}",
    f"STREAM.MSG.GET.KV_{RECEIVERS_BUCKET}",
)
RECEIVERS_SUBJECTS: Final = f"$KV.{RECEIVERS_BUCKET}.>"


def subscriber_services() -> tuple[Service, ...]:
    """History of RESULTS and EVENTS: stream info and message get (walk a stream with
    `next_by_subj`). No consumer: JetStream creates *or updates* a consumer by the name in the
    request body even on the ephemeral create subject, so that right would let a reader
    re-filter or re-target the controller's `ingest`."""
    return tuple(
        Service(f"$JS.API.{op}.{stream}", f"{IMPORTED_API}.{op}.{stream}")
        for stream in (RESULTS_STREAM, EVENTS_STREAM)
        for op in ("STREAM.INFO", "STREAM.MSG.GET")
    )


def controller_permissions() -> Permissions:
    return Permissions(
        publish=(
            "mon.jobs.>",
            "mon.events.>",
            CONTROL_SUBJECTS,  # requests to agents (a `Preempt`), exported to their country
            "$JS.API.>",  # streams, consumers, fetches, stream info
            f"$JS.ACK.{RESULTS_STREAM}.>",  # acks of `ingest` (and any other RESULTS durable)
            RECEIVERS_SUBJECTS,  # the receiving addresses it puts and deletes
            # A stream's snapshot's flow acks and a restore's chunks: `controller streams-move`.
            "$JS.SNAPSHOT.ACK.>",
            "$JS.SNAPSHOT.RESTORE.>",
        ),
        subscribe=("_INBOX.>", HEARTBEATS_SUBJECTS),
    )


def agent_permissions(cc: str) -> Permissions:
    """Also the rights of a leaf login of `cc` at the hub: from the hub's side of a leaf
    connection, `publish` is what the leaf may send in and `subscribe` what may go back out."""
    return Permissions(
        publish=tuple(s.local for s in agent_services(cc)),
        subscribe=(f"{agent_inbox_prefix(cc)}.>", control_country_filter(cc), RECEIVERS_SUBJECTS),
    )


def subscriber_permissions() -> Permissions:
    return Permissions(
        publish=tuple(s.local for s in subscriber_services()),
        subscribe=(f"{SUBSCRIBER_INBOX_PREFIX}.>", RESULTS_SUBJECTS, EVENTS_SUBJECTS),
    )


def permissions_for(user: str) -> Permissions:
    if user == CONTROLLER_USER:
        return controller_permissions()
    if user == SUBSCRIBER_USER:
        return subscriber_permissions()
    if cc := country_of(user):
        return agent_permissions(cc)
    raise ValueError(
        f"unknown NATS user {user!r}: expected agent-CC, leaf-REGION-CC, "
        f"{CONTROLLER_USER} or {SUBSCRIBER_USER}"
    )


def account_of(user: str) -> str:
    if user == CONTROLLER_USER:
        return ACCOUNT
    if user == SUBSCRIBER_USER:
        return SUBSCRIBER_ACCOUNT
    if cc := country_of(user):
        return agent_account(cc)
    raise ValueError(f"unknown NATS user {user!r}")


def user_for(name: str) -> str:
    """`DE` → `agent-DE`; `controller` and `subscriber` stay as they are."""
    if name in SERVICE_USERS:
        return name
    if _COUNTRY.fullmatch(name.upper()):
        return agent_user(name.upper())
    raise ValueError(
        f"expected a country code like DE, leaf-REGION (lower case, e.g. leaf-eu), "
        f"{CONTROLLER_USER} or {SUBSCRIBER_USER}, got {name!r}"
    )


# Rendering. NATS's configuration format takes JSON values, so subjects are written with
# json.dumps and need no escaping of their own.


def _q(value: str) -> str:
    return json.dumps(value)


def _allow(kind: str, subjects: Iterable[str]) -> list[str]:
    return [f"    {kind}: {{ allow: [", *(f"      {_q(s)}" for s in subjects), "    ] }"]


def render_user(user: str, password_hash: str, *, minted: str = "") -> str:
    """One user's block, with its current permissions. A leaf login may connect only as a leaf
    connection, every other user only as a client."""
    perms = permissions_for(user)
    connections = LEAF_CONNECTIONS if leaf_of(user) else CLIENT_CONNECTIONS
    lines = [f"# BEGIN {user}", "{"]
    if minted:
        lines.append(f"  # minted {minted}")
    lines += [
        f"  user: {_q(user)}",
        f"  password: {_q(password_hash)}",
        f"  allowed_connection_types: {json.dumps(list(connections))}",
        "  permissions: {",
        *_allow("publish", perms.publish),
        *_allow("subscribe", perms.subscribe),
        "  }",
        "}",
        f"# END {user}",
    ]
    return "\n".join(lines) + "\n"


def _users(users: Iterable[StoredUser]) -> list[str]:
    blocks = [render_user(u.user, u.password_hash, minted=u.minted) for u in users]
    return ["users: [", *(f"  {line}" for b in blocks for line in b.splitlines()), "]"]


def _mapped_api() -> str:
    """Client JetStream requests onto the imported API (see the module's docstring)."""
    return f"mappings: {{ {_q('$JS.API.>')}: {_q(IMPORTED_API + '.>')} }}"


def _service_export(service: Service, account: str) -> str:
    response = ", response_type: stream" if service.stream else ""
    return f"{{ service: {_q(service.subject)}{response}, accounts: [{account}] }}"


def _service_import(service: Service) -> str:
    where = f"{{ account: {ACCOUNT}, subject: {_q(service.subject)} }}"
    return f"{{ service: {where}, to: {_q(service.local)} }}"


def _block(name: str, body: list[str]) -> list[str]:
    return [f"{name} {{", *(f"  {line}" if line else "" for line in body), "}"]


def _list(name: str, items: list[str]) -> list[str]:
    return [f"{name}: [", *(f"  {item}" for item in items), "]"]


def _mailprobe(controller: list[StoredUser], countries: Iterable[str]) -> list[str]:
    countries = list(countries)
    exports = [
        _service_export(s, agent_account(cc)) for cc in countries for s in agent_services(cc)
    ]
    exports += [
        f"{{ stream: {_q(control_country_filter(cc))}, accounts: [{agent_account(cc)}] }}"
        for cc in countries
    ]
    if countries:
        agents = ", ".join(agent_account(cc) for cc in countries)
        exports.append(f"{{ stream: {_q(RECEIVERS_SUBJECTS)}, accounts: [{agents}] }}")
    exports += [
        f"{{ stream: {_q(RESULTS_LIVE_SUBJECTS)}, accounts: [{SUBSCRIBER_ACCOUNT}] }}",
        f"{{ stream: {_q(EVENTS_SUBJECTS)}, accounts: [{SUBSCRIBER_ACCOUNT}] }}",
        *(_service_export(s, SUBSCRIBER_ACCOUNT) for s in subscriber_services()),
    ]
    return _block(ACCOUNT, ["jetstream: enabled", *_users(controller), *_list("exports", exports)])


def _agents_account(cc: str, users: list[StoredUser], *, imports: bool) -> list[str]:
    body = [*_users(users), _mapped_api()]
    if imports:
        control = (
            f"{{ stream: {{ account: {ACCOUNT}, subject: {_q(control_country_filter(cc))} }} }}"
        )
        receivers = f"{{ stream: {{ account: {ACCOUNT}, subject: {_q(RECEIVERS_SUBJECTS)} }} }}"
        body += _list(
            "imports", [*(_service_import(s) for s in agent_services(cc)), control, receivers]
        )
    return _block(agent_account(cc), body)


def _subscriber(users: list[StoredUser]) -> list[str]:
    imports = [
        f"{{ stream: {{ account: {ACCOUNT}, subject: {_q(RESULTS_LIVE_SUBJECTS)} }}, "
        f"to: {_q(RESULTS_SUBJECTS)} }}",
        f"{{ stream: {{ account: {ACCOUNT}, subject: {_q(EVENTS_SUBJECTS)} }} }}",
        *(_service_import(s) for s in subscriber_services()),
    ]
    body = [*_users(users), _mapped_api(), *_list("imports", imports)]
    return _block(SUBSCRIBER_ACCOUNT, body)


def _by_account(users: Iterable[StoredUser]) -> dict[str, list[StoredUser]]:
    found: dict[str, list[StoredUser]] = {}
    for u in sorted(users, key=lambda u: u.user):
        found.setdefault(account_of(u.user), []).append(u)
    return found


HEADER: Final = """\
# Generated by `python -m deploy.mint_country` (see deploy/README.md): add or rotate users with it;
# a hand edit is overwritten the next time it runs. Passwords are stored only as bcrypt hashes.
# After a change: `nats-server --signal reload` (or SIGHUP) on every server that includes it.
"""


def render_users_conf(users: Iterable[StoredUser]) -> str:
    """The hub's agents.conf: every account, its users, exports and imports."""
    stored = list(users)
    accounts = _by_account(stored)
    countries = sorted({cc for u in stored if (cc := country_of(u.user))})
    lines = [
        *_mailprobe(accounts.get(ACCOUNT, []), countries),
        *(
            line
            for cc in countries
            for line in _agents_account(cc, accounts[agent_account(cc)], imports=True)
        ),
        *_subscriber(accounts.get(SUBSCRIBER_ACCOUNT, [])),
    ]
    return (
        f"# The hub's NATS accounts, included by hub.conf.\n{HEADER}"
        + "\n".join(_block("accounts", lines))
        + "\n"
    )


def leaf_regions(users: Iterable[StoredUser]) -> dict[str, tuple[str, ...]]:
    """Every leaf region with the countries it carries."""
    found: dict[str, list[str]] = {}
    for u in users:
        if leaf := leaf_of(u.user):
            found.setdefault(leaf[0], []).append(leaf[1])
    return {region: tuple(sorted(ccs)) for region, ccs in sorted(found.items())}


def leaf_url_variable(cc: str) -> str:
    """The environment variable holding a leaf server's hub URL (with the login) for `cc`."""
    return f"NATS_HUB_LEAF_URL_{_country(cc)}"


def render_leaf_conf(
    region: str, users: Iterable[StoredUser], *, ca_file: str = LEAF_CA_FILE
) -> str:
    """A leaf server's agents.conf: the accounts of its countries with their agent users (the
    hub's hashes), and one leaf connection per account to the hub, verifying the hub's
    certificate with `ca_file`."""
    stored = list(users)
    countries = leaf_regions(stored).get(region, ())
    if not countries:
        raise ValueError(f"{region} carries no country: mint it with --countries DE,FR")
    agents = {u.user: u for u in stored}
    accounts: list[str] = []
    remotes: list[str] = []
    for cc in countries:
        own = [agents[agent_user(cc)]] if agent_user(cc) in agents else []
        accounts += _agents_account(cc, own, imports=False)
        remotes.append(
            f"{{ urls: [${leaf_url_variable(cc)}], account: {agent_account(cc)}, "
            f"tls: {{ ca_file: {_q(ca_file)} }} }}"
        )
    return (
        f"# The NATS accounts of leaf server {region}, included by its leaf.conf.\n{HEADER}"
        f"# Environment: {', '.join(leaf_url_variable(cc) for cc in countries)} (mint_country "
        "prints them).\n"
        + "\n".join(
            [*_block("accounts", accounts), *_block("leafnodes", _list("remotes", remotes))]
        )
        + "\n"
    )


def legacy_leaf_users(text: str) -> list[str]:
    """Leaf users of the single-account agents.conf of earlier versions (`leaf-eu`, one login
    for several countries): `parse_users_conf` drops them, they are minted per country now."""
    return [u for b in _BLOCK.finditer(text) if is_leaf_region(u := b.group("user"))]


def parse_users_conf(text: str) -> dict[str, StoredUser]:
    """The users stored in an agents.conf written by `render_users_conf` (or by an earlier
    version, with every user in one account: the same blocks, but see `legacy_leaf_users`)."""
    users: dict[str, StoredUser] = {}
    for block in _BLOCK.finditer(text):
        user, body = block.group("user"), block.group("body")
        if is_leaf_region(user):
            continue
        password = _PASSWORD.search(body)
        if password is None:
            raise ValueError(f"agents.conf: the block of {user} has no password line")
        try:  # an unknown user name is an error, not dropped
            permissions_for(user)
        except ValueError as exc:
            raise ValueError(f"agents.conf: the block of {user}: {exc}") from None
        minted = _MINTED.search(body)
        users[user] = StoredUser(
            user, password.group("hash"), minted.group("minted").strip() if minted else ""
        )
    return users


def with_user(
    users: Mapping[str, StoredUser], user: StoredUser, *, rotate: bool = False
) -> dict[str, StoredUser]:
    """`users` plus `user`; replacing an existing user's password needs `rotate`."""
    if user.user in users and not rotate:
        raise ValueError(f"{user.user} already has credentials; pass --rotate to replace them")
    return {**users, user.user: user}


def new_password() -> str:
    """A random password safe inside a URL's user-info (letters, digits, `-` and `_`)."""
    return secrets.token_urlsafe(32)


def hash_password(password: str, cost: int = BCRYPT_COST) -> str:
    """A bcrypt hash nats-server accepts: from the `bcrypt` package when installed, else from
    the system's libcrypt (libxcrypt, present on Debian/Ubuntu and the python:*-slim images)."""
    try:
        bcrypt: Any = importlib.import_module("bcrypt")
    except ImportError:
        return _libcrypt_bcrypt(password, cost)
    hashed: bytes = bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost))
    return hashed.decode()


_CRYPT_DATA_SIZE = 32768  # sizeof(struct crypt_data) in libxcrypt


def _libcrypt_bcrypt(password: str, cost: int) -> str:
    name = ctypes.util.find_library("crypt")
    if name is None:
        raise RuntimeError("no bcrypt available: install the `bcrypt` package (pip install bcrypt)")
    lib = ctypes.CDLL(name)
    gensalt = lib.crypt_gensalt_rn
    gensalt.restype = ctypes.c_char_p
    gensalt.argtypes = [
        ctypes.c_char_p,
        ctypes.c_ulong,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
    ]
    crypt = lib.crypt_rn
    crypt.restype = ctypes.c_char_p
    crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int]
    salt_buf = ctypes.create_string_buffer(128)
    salt = gensalt(b"$2b$", cost, None, 0, salt_buf, len(salt_buf))
    data = ctypes.create_string_buffer(_CRYPT_DATA_SIZE)
    hashed = crypt(password.encode(), salt, data, _CRYPT_DATA_SIZE) if salt else None
    if not hashed or not hashed.startswith(b"$2b$"):
        raise RuntimeError(
            "libcrypt cannot make bcrypt hashes: install the `bcrypt` package (pip install bcrypt)"
        )
    result: str = hashed.decode()
    return result


def credentials_url(nats_url: str, user: str, password: str) -> str:
    """`nats://host:4222[,…]` with `user:password@` in every URL (what NATS_URL takes)."""
    parts = []
    for url in nats_url.split(","):
        scheme, sep, rest = url.strip().partition("://")
        if not sep:
            raise ValueError(f"not a NATS URL: {url!r}")
        rest = rest.rpartition("@")[2]  # drop credentials already there
        parts.append(f"{scheme}://{user}:{password}@{rest}")
    return ",".join(parts)


__all__ = [
    "ACCOUNT",
    "Permissions",
    "Service",
    "StoredUser",
    "agent_account",
    "agent_inbox_prefix",
    "agent_permissions",
    "agent_services",
    "agent_user",
    "controller_permissions",
    "countries_of",
    "credentials_url",
    "hash_password",
    "is_leaf_region",
    "leaf_login",
    "leaf_of",
    "leaf_regions",
    "leaf_url_variable",
    "legacy_leaf_users",
    "new_password",
    "parse_users_conf",
    "permissions_for",
    "render_leaf_conf",
    "render_user",
    "render_users_conf",
    "subscriber_permissions",
    "user_for",
    "with_user",
]
