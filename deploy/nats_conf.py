"""NATS users and permissions of the MAILPROBE account: the one source of `deploy/nats/agents.conf`.

`hub.conf` and `leaf.conf` include `agents.conf` inside the account; this module renders it, one
block per user, from the permission lists below. Each block is delimited by `# BEGIN <user>` and
`# END <user>` lines, so `python -m deploy.mint_country` can re-read the file (keeping the stored
bcrypt hashes), add or rotate one user and write every block again with the current permissions.

Users (see deploy/README.md):

- `controller`: the controller process (scheduler, ingester, alerter, API).
- `agent-CC`: every agent of country CC; looks up and pulls only `jobs-CC` (which the controller
  creates: an agent may not create or change a consumer), publishes only `mon.results.CC.>` and
  its heartbeat `CC.*` in the `agents` bucket. Replies reach it on `_INBOX_agent_CC.>` only, so
  an agent must connect with `inbox_prefix=agent_inbox_prefix(CC)`.
- `leaf-REGION`: the login of one regional leaf server (leaf.conf) at the hub, for the countries
  given when it was minted (kept in its block as `# countries DE,FR`): exactly what those
  countries' agents send to the hub, and their inboxes back. Usable only as a leaf connection.
- `subscriber`: read-only: RESULTS and EVENTS history through stream info and message get, live
  results and events by core subscription; replies on `_INBOX_subscriber.>`. It may create no
  consumer (see `subscriber_permissions`).

Agents behind a leaf reach the hub's JetStream through its domain `hub` (JetStream API traffic
does not cross a leaf connection unqualified): leaf.conf maps `$JS.API.>` to `$JS.hub.API.>` and
`$KV.agents.>` to `$JS.hub.API.$KV.agents.>`, and servers check permissions after mapping, so
an agent's user allows both forms and the agent itself needs no setting.

Only allow lists are used: a `deny` on subscribe would also drop JetStream deliveries whose
original subject matches it.
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

from shared.streams import jobs_consumer_name
from shared.subjects import (
    AGENTS_BUCKET,
    EVENTS_STREAM,
    EVENTS_SUBJECTS,
    JOBS_STREAM,
    RESULTS_STREAM,
    RESULTS_SUBJECTS,
    results_country_filter,
)

ACCOUNT: Final = "MAILPROBE"
CONTROLLER_USER: Final = "controller"
SUBSCRIBER_USER: Final = "subscriber"
SERVICE_USERS: Final = (CONTROLLER_USER, SUBSCRIBER_USER)
SUBSCRIBER_INBOX_PREFIX: Final = "_INBOX_subscriber"
BCRYPT_COST: Final = 11
# The hub's JetStream domain (hub.conf `jetstream { domain: hub }`, leaf.conf's mappings).
JS_DOMAIN: Final = "hub"
HUB_API: Final = f"$JS.{JS_DOMAIN}.API"
CLIENT_CONNECTIONS: Final = ("STANDARD", "WEBSOCKET")
LEAF_CONNECTIONS: Final = ("LEAFNODE",)

_AGENT_USER = re.compile(r"agent-([A-Z]{2})")
_LEAF_USER = re.compile(r"leaf-[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?")
_COUNTRY = re.compile(r"[A-Z]{2}")
_BLOCK = re.compile(r"^# BEGIN (?P<user>\S+)\n(?P<body>.*?)^# END (?P=user)$", re.M | re.S)
_PASSWORD = re.compile(r'^\s*password: "(?P<hash>[^"]+)"$', re.M)
_MINTED = re.compile(r"^\s*# minted (?P<minted>.+)$", re.M)
_COUNTRIES = re.compile(r"^\s*# countries (?P<countries>.*)$", re.M)


@dataclass(frozen=True)
class Permissions:
    """Subjects a user may publish to and subscribe to; everything else is denied."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]


@dataclass(frozen=True)
class StoredUser:
    """One user as kept in agents.conf: its name, bcrypt hash, when it was minted and, for a
    leaf user, the countries whose agents it carries."""

    user: str
    password_hash: str
    minted: str = ""
    countries: tuple[str, ...] = ()


def _country(cc: str) -> str:
    if not _COUNTRY.fullmatch(cc):
        raise ValueError(f"country must be an upper-case ISO 3166-1 alpha-2 code, got {cc!r}")
    return cc


def countries_of(text: str) -> tuple[str, ...]:
    """`"de, fr"` → `("DE", "FR")`: sorted, without repeats; at least one."""
    found = sorted({_country(c.strip().upper()) for c in text.split(",") if c.strip()})
    if not found:
        raise ValueError("a leaf user needs at least one country, e.g. --countries DE,FR")
    return tuple(found)


def agent_user(cc: str) -> str:
    return f"agent-{_country(cc)}"


def is_leaf_user(user: str) -> bool:
    return _LEAF_USER.fullmatch(user) is not None


def agent_inbox_prefix(cc: str) -> str:
    """The `inbox_prefix` an agent of `cc` must pass to `nats.connect`."""
    return f"_INBOX_agent_{_country(cc)}"


def controller_permissions() -> Permissions:
    return Permissions(
        publish=(
            "mon.jobs.>",
            "mon.events.>",
            "$JS.API.>",  # streams, consumers, KV bucket, fetches, stream info
            f"$JS.ACK.{RESULTS_STREAM}.>",  # acks of `ingest` (and any other RESULTS durable)
            "$JS.FC.>",  # flow-control replies of the ordered consumer watching the KV bucket
            f"$KV.{AGENTS_BUCKET}.>",
        ),
        subscribe=("_INBOX.>",),
    )


def _hub_rights(cc: str) -> tuple[str, ...]:
    """What an agent of `cc` sends to the hub's JetStream in its domain form (`$JS.hub.API`),
    as it arrives from a leaf; also all a leaf user may send for `cc`. No consumer create or
    update: a consumer's config decides where its jobs (with their secrets) go, so only the
    controller writes consumers."""
    consumer = jobs_consumer_name(_country(cc))
    return (
        f"{HUB_API}.CONSUMER.INFO.{JOBS_STREAM}.{consumer}",
        f"{HUB_API}.CONSUMER.MSG.NEXT.{JOBS_STREAM}.{consumer}",
        f"$JS.ACK.{JOBS_STREAM}.{consumer}.>",  # ack, nak, term, in-progress
        results_country_filter(cc),
        f"{HUB_API}.$KV.{AGENTS_BUCKET}.{cc}.>",  # heartbeat put and delete of `CC.<agentId>`
    )


def agent_permissions(cc: str) -> Permissions:
    consumer = jobs_consumer_name(_country(cc))
    return Permissions(
        publish=(
            f"$JS.API.CONSUMER.INFO.{JOBS_STREAM}.{consumer}",
            f"$JS.API.CONSUMER.MSG.NEXT.{JOBS_STREAM}.{consumer}",
            f"$JS.API.STREAM.INFO.KV_{AGENTS_BUCKET}",  # js.key_value() looks the bucket up
            f"$KV.{AGENTS_BUCKET}.{cc}.>",
            f"{HUB_API}.STREAM.INFO.KV_{AGENTS_BUCKET}",
            *_hub_rights(cc),
        ),
        subscribe=(f"{agent_inbox_prefix(cc)}.>",),
    )


def leaf_permissions(countries: Iterable[str]) -> Permissions:
    """From the hub's side of a leaf connection, `publish` is what the leaf may send into the
    hub and `subscribe` what the hub may send to it: the agents' requests and their replies."""
    found = sorted(countries)
    if not found:
        raise ValueError("a leaf user needs at least one country")
    publish = [f"{HUB_API}.STREAM.INFO.KV_{AGENTS_BUCKET}"]
    for cc in found:
        publish += _hub_rights(cc)
    return Permissions(
        publish=tuple(publish),
        subscribe=tuple(f"{agent_inbox_prefix(cc)}.>" for cc in found),
    )


def subscriber_permissions() -> Permissions:
    """Read-only: stream info and message get (iterate history with `next_by_subj`) on RESULTS
    and EVENTS, and live messages by core subscription. No consumer may be created: the JetStream
    API creates or *updates* a consumer by the name in the request body even on the ephemeral
    create subject, so that right would let a reader re-filter or re-target `ingest`."""
    publish: list[str] = []
    for stream in (RESULTS_STREAM, EVENTS_STREAM):
        publish += [f"$JS.API.STREAM.INFO.{stream}", f"$JS.API.STREAM.MSG.GET.{stream}"]
    return Permissions(
        publish=tuple(publish),
        subscribe=(f"{SUBSCRIBER_INBOX_PREFIX}.>", RESULTS_SUBJECTS, EVENTS_SUBJECTS),
    )


def permissions_for(user: str, countries: Iterable[str] = ()) -> Permissions:
    """The rights of `user`; `countries` only for a leaf user."""
    if user == CONTROLLER_USER:
        return controller_permissions()
    if user == SUBSCRIBER_USER:
        return subscriber_permissions()
    if match := _AGENT_USER.fullmatch(user):
        return agent_permissions(match.group(1))
    if is_leaf_user(user):
        return leaf_permissions(countries)
    raise ValueError(
        f"unknown NATS user {user!r}: expected a country code (agent-CC), leaf-REGION, "
        f"{CONTROLLER_USER} or {SUBSCRIBER_USER}"
    )


def user_for(name: str) -> str:
    """`DE` → `agent-DE`; `controller`, `subscriber` and `leaf-REGION` stay as they are."""
    if name in SERVICE_USERS or is_leaf_user(name):
        return name
    if _COUNTRY.fullmatch(name.upper()):
        return agent_user(name.upper())
    raise ValueError(
        f"expected a country code like DE, leaf-REGION (lower case, e.g. leaf-eu), "
        f"{CONTROLLER_USER} or {SUBSCRIBER_USER}, got {name!r}"
    )


def _allow(kind: str, subjects: Iterable[str]) -> list[str]:
    return [f"    {kind}: {{ allow: [", *(f"      {json.dumps(s)}" for s in subjects), "    ] }"]


def render_user(
    user: str, password_hash: str, *, minted: str = "", countries: Iterable[str] = ()
) -> str:
    """One user's block for agents.conf, with its current permissions. A leaf user may log in
    only as a leaf connection, every other user only as a client."""
    countries = tuple(countries)
    perms = permissions_for(user, countries)
    leaf = is_leaf_user(user)
    lines = [f"# BEGIN {user}", "{"]
    if minted:
        lines.append(f"  # minted {minted}")
    if leaf:
        lines.append(f"  # countries {','.join(countries)}")
    connections = LEAF_CONNECTIONS if leaf else CLIENT_CONNECTIONS
    lines += [
        f"  user: {json.dumps(user)}",
        f"  password: {json.dumps(password_hash)}",
        f"  allowed_connection_types: {json.dumps(list(connections))}",
        "  permissions: {",
        *_allow("publish", perms.publish),
        *_allow("subscribe", perms.subscribe),
        "  }",
        "}",
        f"# END {user}",
    ]
    return "\n".join(lines) + "\n"


def render_agent_block(cc: str, password_hash: str, *, minted: str = "") -> str:
    """The block of country `cc`'s agents (user `agent-CC`)."""
    return render_user(agent_user(cc), password_hash, minted=minted)


def _order(user: str) -> tuple[int, str]:
    """Service users, then agents by country, then leaf users by region."""
    if user in SERVICE_USERS:
        return SERVICE_USERS.index(user), ""
    return len(SERVICE_USERS) + is_leaf_user(user), user


HEADER: Final = f"""\
# NATS users of the {ACCOUNT} account, included by hub.conf and leaf.conf.
# Generated by `python -m deploy.mint_country` (see deploy/README.md): add or rotate users with it;
# a hand edit between BEGIN/END lines is overwritten the next time it runs. Passwords are stored
# only as bcrypt hashes. After a change: `nats-server --signal reload` (or SIGHUP) on every server.
"""


def render_users_conf(users: Iterable[StoredUser]) -> str:
    """The whole agents.conf: every user's block inside the account's `users` list."""
    blocks = [
        render_user(u.user, u.password_hash, minted=u.minted, countries=u.countries)
        for u in sorted(users, key=lambda u: _order(u.user))
    ]
    return HEADER + "users: [\n" + "".join(blocks) + "]\n"


def parse_users_conf(text: str) -> dict[str, StoredUser]:
    """The users stored in an agents.conf written by `render_users_conf`."""
    users: dict[str, StoredUser] = {}
    for block in _BLOCK.finditer(text):
        user, body = block.group("user"), block.group("body")
        password = _PASSWORD.search(body)
        if password is None:
            raise ValueError(f"agents.conf: the block of {user} has no password line")
        listed = _COUNTRIES.search(body)
        countries = countries_of(listed.group("countries")) if listed else ()
        # An unknown user name, or a leaf user without countries, is an error, not dropped.
        try:
            permissions_for(user, countries)
        except ValueError as exc:
            raise ValueError(f"agents.conf: the block of {user}: {exc}") from None
        minted = _MINTED.search(body)
        users[user] = StoredUser(
            user,
            password.group("hash"),
            minted.group("minted").strip() if minted else "",
            countries,
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
    "StoredUser",
    "agent_inbox_prefix",
    "agent_permissions",
    "agent_user",
    "controller_permissions",
    "countries_of",
    "credentials_url",
    "hash_password",
    "is_leaf_user",
    "leaf_permissions",
    "new_password",
    "parse_users_conf",
    "permissions_for",
    "render_agent_block",
    "render_user",
    "render_users_conf",
    "subscriber_permissions",
    "user_for",
    "with_user",
]
