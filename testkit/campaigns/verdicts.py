"""The verdict campaign (issue 60): random histories of outages, freezes and restarts against real
servers, every verdict, incident and notice checked against what the harness did.

Embedded PostgreSQL and NATS, `python -m controller serve` (API, scheduler, ingester, alerter; two
replicas in the full campaign) and one `python -m agent` per country (DE, US), each agent in a
network namespace of its own (testkit/netns.py); one mail server process per monitor
(`testkit.campaigns.verdict_server`: SMTP plain, STARTTLS and implicit TLS, IMAP plain, STARTTLS and
implicit TLS, POP3 plain and implicit TLS, logins, round trips, and a forwarder to Dovecot's IMAPS
with OAuth2 logins, testkit/oauth2/) listening on the host side of DE's namespace, which both
namespaces reach; a monitor may share another's server (`Campaign.shared`): what the history does to
the server it does to both, and their outages must be one flow incident, paged once per channel
(issue 66). Monitors may declare what they depend on (`Campaign.depends`: other monitors, or the
servers' host), and a joint outage (`Campaign.joint`) takes some down together, a round trip by
its send side: related outages must join one flow incident; a burst of TLS-RPT reports about
the first joint target's mail domain, posted to the controller's report endpoint while it lasts,
must be that incident's evidence, not notices of their own. A history drawn from the seed
(`testkit.campaigns.verdict_history`) kills servers (outage everywhere), SIGSTOPs them (freeze),
drops one country's path to them with nftables (an outage seen from that country only) and kills
agents, the controller, one replica and NATS; the harness logs each step's real time, the truth.
The state of every monitor is sampled each second, incidents, queued notices and evidence read at
the end, and `testkit.campaigns.verdict_truth` judges them.

`python -m bench verdicts --seed N --minutes M` (or `python -m testkit.campaigns.verdicts ...`);
`--short` is the version `make test` runs. Prints the seed, the history and the figures; exits 1
when a target is missed. Needs root (namespaces); `VERDICTS_KEEP=1` keeps the processes' logs and
`said.json`.
"""

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import asyncpg
import nats
import trustme
from nats.aio.msg import Msg

from controller.access import accounts_store as accounts
from controller.access.credentials import hash_password, new_token
from controller.db.migrate import migrate
from controller.db.pool import connect
from shared import embedded
from shared.clock import WALL
from shared.streams import ensure_streams
from shared.subjects import HEARTBEATS_SUBJECTS
from testkit import netns
from testkit.campaigns.soak_rig import stop_together
from testkit.campaigns.verdict_api import (
    CREDENTIALED,
    INTERVAL,
    KINDS,
    LEGGED,
    OAUTH2,
    OAUTH2_CLIENT,
    OAUTH2_USER,
    TARPIT_TIMEOUT,
    TIMEOUT,
    Api,
    Owner,
    body,
    first_results,
    outcome_counts,
    private_key_file,
    with_timeout,
)
from testkit.campaigns.verdict_history import (
    EVENTS,
    FAULTS,
    Shape,
    Step,
    draw,
    draw_once,
)
from testkit.campaigns.verdict_server import FORWARDED, PASSWORD
from testkit.campaigns.verdict_truth import (
    SLACK_S,
    Applied,
    Burst,
    Created,
    Evidence,
    Fact,
    Figures,
    Incident,
    Joint,
    Notice,
    Observed,
    Rules,
    Saturation,
    judge,
)
from testkit.common import child_env, discard_logs, http_ok, machine, verdict
from testkit.oauth2 import dovecot
from testkit.oauth2.dovecot import Dovecot
from testkit.oauth2.token_endpoint import TokenEndpoint
from testkit.oauth2.token_endpoint import serve as serve_tokens
from testkit.reports import made
from testkit.sealing import KeyRing

COUNTRIES = ("DE", "US")
SECRETS_KEY = "Aq1QnlR2gU7GxwqZ6fZ7Y8Yk5o3wB8vQ1bq0yVJf2lE="
WARMUP_S = 25.0  # agents live and a few passing rounds before the first step
START_TIMEOUT_S = 30.0
LOGIN_SPACING_S = 5.0  # the controller's default LOGIN_SPACING_SECONDS
# A flow incident's first notice waits this long for other monitors to join it; a change
# notice follows at once (the defaults, 30 s and 5 min, would outlast the short history).
GROUP_WAIT_S = 5
GROUP_INTERVAL_S = 0
# A second organization saturating a country: SATURATED's agent runs this many checks at once,
# the tarpit's monitors want about twice as many slots. Admission keeps a slot in reserve, so
# with 4 our own monitors' hanging checks (4 s, a freeze or a drop each) saturated DE on their
# own, outside the tarpit's spell (seed 101: `missed` / `saturated` with 3 of 4 slots busy, all
# ours), which is no verdict the harness can know of; with 8 they leave our share alone.
SATURATED = "DE"
SATURATED_SLOTS = 8
TARPITS = 2 * SATURATED_SLOTS
# what applying an export made elsewhere writes without a change: the secrets' variable names
NAMES_RECORDED = frozenset({"secret_env", "updated_at"})
# `Campaign.depends`: the servers' host (every target's), not a monitor
HOST = "host"
# The first joint target's mail domain, and its report burst: TLS-RPT reports with failures
# for its MX, each a new report (a finding's news), posted one after another.
REPORT_DOMAIN = "verdicts.test"
BURST = 4
# The burst waits this long at most for the joint outage's incident to open; it posts SLACK_S
# (and a second) after the opening, and the joint outage ends no sooner than SLACK_S (and a
# second) after the last post, so the judge counts the burst as inside the incident.
BURST_WAIT_S = 60.0


@dataclass(frozen=True)
class Campaign:
    minutes: float
    kinds: tuple[str, ...]  # created through the API before the history
    faults: tuple[str, ...] = FAULTS
    restarts: tuple[str, ...] = ("agent", "controller", "nats")
    created: tuple[str, ...] = ()  # created (and checked at once) during the history
    events: tuple[str, ...] = EVENTS
    warmup_s: float = WARMUP_S
    replicas: int = 1  # `python -m controller serve` processes, every role in each
    # Monitors sharing another target's server (alias, that target): what the history does to
    # the server it does to both, so their outages are one mail-flow problem, one page.
    shared: tuple[tuple[str, str], ...] = ()
    # What a target declares it depends on (`dependsOn`): other targets, or HOST.
    depends: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # Targets going down together first (a round trip by its send side); `reports` among the
    # events posts a report burst while they are down.
    joint: tuple[str, ...] = ()
    # Every case once and at once (verdict_history.draw_once), each of these targets with its
    # one fault; empty: a history of `minutes` drawn from the seed (draw).
    once: tuple[tuple[str, str], ...] = ()
    # The history ends with a quiet spell as long as the last recoveries' bound; False: as soon
    # as every verdict owed is in (every monitor up, no incident open, every notice queued),
    # that bound at the latest.
    quiet_end: bool = True
    # The controllers' LOGIN_SPACING_SECONDS: a logging target's countries log in this far
    # apart, and its bounds are that much longer.
    login_spacing_s: float = LOGIN_SPACING_S

    @property
    def targets(self) -> tuple[str, ...]:
        return self.kinds + self.created + tuple(alias for alias, _ in self.shared)

    def server_of(self, target: str) -> str:
        """The target whose server `target` checks (itself unless it shares one)."""
        return dict(self.shared).get(target, target)

    def related(self) -> dict[str, frozenset[str]]:
        """Each target's related ones, whose outages are one mail-flow problem with its own:
        every other target, their servers all listening at the campaign's one address (one
        server whatever the ports: controller.alerting.flows `same_server`), and so those it
        depends on or that depend on it (HOST) too."""
        pairs = {(a, b) for a in self.targets for b in self.targets if a != b}
        for target, on in self.depends:
            named = self.targets if HOST in on else on
            pairs |= {(target, b) for b in named if b != target}
        pairs |= {(b, a) for a, b in pairs}
        return {t: frozenset(b for a, b in pairs if a == t) for t in self.targets}


FULL_KINDS: tuple[str, ...] = ("smtp", "smtp-starttls", "smtps", "smtp-auth", "imap")
FULL_KINDS += ("imap-starttls", "imaps", "pop3", "pop3s", "rt-imap", "imap-oauth2")
FULL_RESTARTS = ("agent", "controller", "nats", "replica")
FULL_CREATED = ("imap-auth", "pop3-auth", "rt-pop3")
SHORT = Campaign(
    minutes=1.0,
    kinds=("smtp", "smtps", "imap-starttls", "pop3", "rt-imap"),
    faults=("outage", "freeze", "country"),
    restarts=("agent",),
    created=("smtp-auth",),
    events=("apply", "reports"),
    warmup_s=0.0,
    once=(("imap-starttls", "outage"), ("pop3", "freeze"), ("smtps", "country")),
    quiet_end=False,
    shared=(("imap-starttls-webmail", "imap-starttls"),),
    depends=(("rt-imap", ("smtp", "imap-starttls")), ("pop3", (HOST,))),
    joint=("smtp", "rt-imap"),
    login_spacing_s=1.0,
)


def rules() -> Rules:
    return Rules(
        interval=INTERVAL,
        timeout=TIMEOUT,
        countries=COUNTRIES,
        group_wait=GROUP_WAIT_S,
        group_interval=GROUP_INTERVAL_S,
    )


def per_target(c: Campaign, history: list[Step]) -> dict[str, Rules]:
    """Each target's rules: login turns for the credentialed, the longer timeout for one an
    `apply` changed."""
    longer = {s.target for s in history if s.action == "apply_changed"}
    return {
        t: Rules(
            interval=INTERVAL,
            timeout=TIMEOUT + (1 if t in longer else 0),
            countries=COUNTRIES,
            login_spacing=c.login_spacing_s if c.server_of(t) in CREDENTIALED else 0.0,
            group_wait=GROUP_WAIT_S,
            group_interval=GROUP_INTERVAL_S,
        )
        for t in c.targets
    }


def shape(c: Campaign) -> Shape:
    return Shape(INTERVAL, TIMEOUT, c.minutes, c.faults, c.restarts, c.events)


def history_of(c: Campaign, seed: int) -> list[Step]:
    if c.once:
        return draw_once(
            seed,
            c.once,
            COUNTRIES,
            shape(c),
            legs=frozenset(c.targets) & LEGGED,
            created=c.created,
            joint=c.joint,
        )
    return draw(
        seed,
        list(c.kinds),
        COUNTRIES,
        shape(c),
        legs=frozenset(c.targets) & LEGGED,
        created=c.created,
        joint=c.joint,
    )


def _listening(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
        return True
    return False


async def _until(what: str, ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not await asyncio.to_thread(ready):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready within {START_TIMEOUT_S:.0f} s")
        await asyncio.sleep(0.1)


@dataclass
class Rig:
    """The processes, the namespaces, the owners and the truth log (`facts`)."""

    tmp: Path
    campaign: Campaign
    facts: list[Fact] = field(default_factory=list)
    ns: dict[str, netns.Netns] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ports: dict[str, tuple[int, ...]] = field(default_factory=dict)  # a server's ports
    dropped: dict[str, set[int]] = field(default_factory=dict)
    created: dict[str, tuple[float, int]] = field(default_factory=dict)  # at, check-now status
    applied: list[Applied] = field(default_factory=list)
    host: str = ""
    nats_port: int = 0
    api_ports: list[int] = field(default_factory=list)  # one per controller replica
    token_url: str = ""  # the loopback OAuth2 token endpoint's, when a target logs in by OAuth2
    upstream: int = 0  # Dovecot's IMAPS port, which the OAuth2 targets' forwarders pass on to
    stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)
    nats_url: str = ""
    database_url: str = ""
    pg: object = None
    keys: KeyRing | None = None
    api: Api | None = None
    ours: Owner = field(default_factory=lambda: Owner(""))
    noisy: Owner = field(default_factory=lambda: Owner(""))
    bursts: list[Burst] = field(default_factory=list)
    bursting: asyncio.Task[None] | None = None  # the report burst, while it waits and posts

    def _spawn(self, key: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        with (self.tmp / f"{key}.log").open("ab") as out:
            self.procs[key] = subprocess.Popen(argv, env=env, stdout=out, stderr=out)

    def fact(self, kind: str, target: str, country: str | None, failing: bool) -> None:
        """What the harness did, to `target` and to every monitor sharing its server."""
        at = time.time()
        sharing = [alias for alias, server in self.campaign.shared if server == target]
        for t in (target, *sharing) if target else (target,):
            self.facts.append(Fact(at, kind, t, country, failing))  # type: ignore[arg-type]

    @property
    def saturating(self) -> bool:
        return "saturate" in self.campaign.events

    async def up(self) -> None:
        for cc in COUNTRIES:
            self.ns[cc] = await asyncio.to_thread(netns._create, (), None)
            self.dropped[cc] = set()
        self.host = self.ns[COUNTRIES[0]].host_ip
        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(self.tmp / "ca.pem"))
        if set(self.campaign.targets) & OAUTH2:
            await self.oauth2(ca)
        leaf = ca.issue_cert(self.host)
        leaf.cert_chain_pems[0].write_to_path(str(self.tmp / "cert.pem"))
        leaf.private_key_pem.write_to_path(str(self.tmp / "key.pem"))
        self.keys = KeyRing(self.tmp / "seal", COUNTRIES)
        self.nats_port = embedded.free_port(self.host)
        self.start_nats()
        nc = await nats.connect(self.nats_url)
        try:
            await ensure_streams(nc.jetstream())
        finally:
            await nc.close()
        servers = [t for t in self.campaign.targets if self.campaign.server_of(t) == t]
        servers += ["tarpit"] if self.saturating else []
        for kind in servers:
            pair = KINDS.get(kind, ("",))[0] == "roundtrip"
            self.ports[kind] = tuple(embedded.free_port(self.host) for _ in range(1 + pair))
        self.api_ports = [embedded.free_port() for _ in range(self.campaign.replicas)]
        self.api = Api(f"http://127.0.0.1:{self.api_ports[0]}")
        # the servers, the agents (which need only NATS) and the central parts start together
        await asyncio.gather(
            *(self.start_server(kind) for kind in servers),
            *(self.start_agent(cc) for cc in COUNTRIES),
            self._central(),
        )
        await self.api.customer(self.ours, "verdicts")
        if self.saturating:
            await self.api.customer(self.noisy, "noisy")
        for kind in self.campaign.kinds:
            await self.create(kind)
        for alias, server in self.campaign.shared:
            await self.create(alias, server)

    async def _central(self) -> None:
        """PostgreSQL started and seeded, then the controller replicas."""
        self.pg, self.database_url = await asyncio.to_thread(
            embedded.start_postgres, self.tmp / "pg", throwaway=True
        )
        await self.seed()
        await asyncio.gather(*(self.start_controller(n) for n in range(self.campaign.replicas)))

    async def oauth2(self, ca: trustme.CA) -> None:
        """Dovecot with its OAuth2 passdb and the token endpoint issuing its tokens (client
        credentials), both on loopback for the rig's whole life."""
        why = dovecot.missing()
        if why is not None:
            raise SystemExit(f"verdicts: {why}")
        server = await self.stack.enter_async_context(Dovecot(ca))
        self.upstream = server.ports["imaps"]
        endpoint = TokenEndpoint(server.issuer, OAUTH2_USER, clients={OAUTH2_CLIENT: PASSWORD})
        await self.stack.enter_async_context(serve_tokens(endpoint, ca))
        self.token_url = endpoint.url

    async def seed(self) -> None:
        """Two organizations, each with an owner and its token."""
        conn = await connect(self.database_url)
        try:
            await migrate(conn)
            for owner, org in ((self.ours, "verdicts"), (self.noisy, "noisy")):
                org_id = await accounts.ensure_organization(conn, org)
                user = await accounts.create_user(
                    conn, org_id, f"owner@{org}.test", hash_password("unused-pw-1"), "owner"
                )
                owner.token, digest = new_token()
                await accounts.issue_token(conn, user.id, digest, 24 * 3600, WALL.now())
        finally:
            await conn.close()

    async def create(self, target: str, server: str = "") -> None:
        """The monitor `target`, of its own server's kind, or of `server`'s on that server."""
        assert self.api is not None
        kind = server or target
        monitor = body(
            target,
            kind,
            self.ours.customer,
            self.host,
            self.ports[kind],
            COUNTRIES,
            token_url=self.token_url,
        )
        declared = dict(self.campaign.depends).get(target, ())
        if declared:
            monitor["dependsOn"] = [
                self.host if d == HOST else self.ours.monitors[d][1] for d in declared
            ]
        if self.campaign.joint[:1] == (target,):
            monitor["mailDomain"] = REPORT_DOMAIN
        await self.api.create(self.ours, KINDS[kind][0], monitor)

    async def report_burst(self, target: str) -> None:
        """BURST TLS-RPT reports about REPORT_DOMAIN with failures, posted to its address
        SLACK_S after `target`'s incident opened (BURST_WAIT_S at the most for the opening);
        the joint outage lasts until SLACK_S after the last post (`after_burst`)."""
        assert self.api is not None
        opened = await self._incident_open(target, BURST_WAIT_S)
        await asyncio.sleep(max(0.0, opened + SLACK_S + 1 - time.time()))
        r = await self.api.call(self.ours, "GET", "/api/report-domains")
        r.raise_for_status()
        (shown,) = [d for d in r.json() if d["domain"] == REPORT_DOMAIN]
        path = "/" + shown["tlsRptHttps"].split("/", 3)[3]
        at, accepted = time.time(), 0
        for n in range(BURST):
            failures = [
                {
                    "result-type": "certificate-expired" if n % 2 else "starttls-not-supported",
                    "sending-mta-ip": "198.51.100.62",
                    "receiving-mx-hostname": f"mx1.{REPORT_DOMAIN}",
                    "receiving-ip": "203.0.113.56",
                    "failed-session-count": 100 + n,
                }
            ]
            report = made.tls_json(
                REPORT_DOMAIN, report_id=f"burst-{at:.0f}-{n}", failures=failures
            )
            sent = await self.api.client.post(
                path,
                content=made.tls_gzip(report),
                headers={"Content-Type": "application/tlsrpt+gzip"},
            )
            accepted += sent.status_code == 200
        self.bursts.append(Burst(at, time.time(), BURST, accepted))

    # -- the steps --------------------------------------------------------------------------

    async def start_server(self, kind: str) -> None:
        ports = self.ports[kind]
        argv = [
            sys.executable,
            "-m",
            "testkit.campaigns.verdict_server",
            kind,
            self.host,
            str(ports[0]),
        ]
        argv += [str(self.tmp / "cert.pem"), str(self.tmp / "key.pem"), *map(str, ports[1:])]
        argv += [str(self.upstream)] if kind in FORWARDED else []
        self._spawn(kind, argv)
        for port in ports:
            await _until(kind, lambda p=port: _listening(self.host, p))  # type: ignore[misc]

    def start_nats(self) -> None:
        proc, self.nats_url = embedded.start_nats(self.tmp / "nats", self.nats_port, host=self.host)
        self.procs["nats"] = proc

    async def start_controller(self, n: int) -> None:
        """Replica `n` (`controller`, `controller-1`, ...), every role in each."""
        assert self.keys is not None
        port = self.api_ports[n]
        self._spawn(
            f"controller-{n}" if n else "controller",
            [sys.executable, "-m", "controller", "serve"],
            child_env(
                DATABASE_URL=self.database_url,
                NATS_URL=self.nats_url,
                SECRETS_KEY=SECRETS_KEY,
                SEAL_PUBLIC_KEYS_DIR=str(self.keys.directory),
                CONTROLLER_ROLES="api,scheduler,ingester,alerter",
                API_HOST="127.0.0.1",
                API_PORT=str(port),
                OAUTH2_TOKEN_HOSTS="127.0.0.1",
                OAUTH2_ALLOW_PRIVATE_ENDPOINTS="true",
                OAUTH2_CA_FILE=str(self.tmp / "ca.pem"),
                INCIDENT_GROUP_WAIT_SECONDS=str(GROUP_WAIT_S),
                LOGIN_SPACING_SECONDS=str(self.campaign.login_spacing_s),
                INCIDENT_GROUP_INTERVAL_SECONDS=str(GROUP_INTERVAL_S),
                PUBLIC_URL=f"http://127.0.0.1:{self.api_ports[0]}",  # the reports' address
            ),
        )
        url = f"http://127.0.0.1:{port}/ready"
        await _until("controller", lambda: http_ok(url))

    async def start_agent(self, cc: str) -> None:
        assert self.keys is not None
        env = child_env(
            NATS_URL=self.nats_url,
            AGENT_ID=f"{cc}-1",
            AGENT_ALLOW_PRIVATE_TARGETS="true",
            AGENT_SEAL_KEYS_FILE=private_key_file(self.tmp / f"{cc}.keys", self.keys.private[cc]),
            SSL_CERT_FILE=str(self.tmp / "ca.pem"),
        )
        if self.saturating and cc == SATURATED:
            env["AGENT_CONCURRENCY"] = str(SATURATED_SLOTS)
        argv = self.ns[cc].command(sys.executable, "-m", "agent", "--country", cc)
        self._spawn(f"agent-{cc}", argv, env)
        await _heard(self.nats_url, cc)

    def _signal(self, key: str, sig: signal.Signals) -> None:
        proc = self.procs[key]
        os.kill(proc.pid, sig)
        if sig == signal.SIGKILL:
            proc.wait(30)

    async def _leg(self, target: str, leg: str, up: bool) -> None:
        """A round trip's SMTP side (`send`) or mailbox (`receive`) away or back on its port."""
        self._signal(target, signal.SIGUSR1 if leg == "send" else signal.SIGUSR2)
        port = self.ports[target][0 if leg == "send" else 1]
        await _until(f"{target} {leg}", lambda: _listening(self.host, port) == up)

    async def apply(self, step: Step) -> None:
        t, cc = step.target, step.country
        match step.action:
            case "kill":
                self._signal(t, signal.SIGKILL)
                self.fact("server", t, None, True)
            case "start":
                if t in self.campaign.joint:
                    await self.after_burst()
                await self.start_server(t)
                self.fact("server", t, None, False)
            case "freeze":
                self._signal(t, signal.SIGSTOP)
                self.fact("server", t, None, True)
            case "thaw":
                self._signal(t, signal.SIGCONT)
                self.fact("server", t, None, False)
            case "leg_down" | "leg_up":
                if step.action == "leg_up" and t in self.campaign.joint:
                    await self.after_burst()
                await self._leg(t, step.leg, step.action == "leg_up")
                self.fact("server", t, None, step.action == "leg_down")
            case "drop" | "undrop":
                ports = self.dropped[cc]
                for port in self.ports[t]:
                    (ports.add if step.action == "drop" else ports.discard)(port)
                await asyncio.to_thread(self.ns[cc].filter_egress, sorted(ports))
                self.fact("path", t, cc, step.action == "drop")
            case "agent_kill":
                self._signal(f"agent-{cc}", signal.SIGKILL)
                self.fact("agent", "", cc, True)
            case "agent_start":
                await self.start_agent(cc)
                self.fact("agent", "", cc, False)
            case "controller_kill":
                for n in range(self.campaign.replicas):
                    self._signal(f"controller-{n}" if n else "controller", signal.SIGKILL)
                self.fact("away", "", None, True)
            case "controller_start":
                for n in range(self.campaign.replicas):
                    await self.start_controller(n)
                self.fact("away", "", None, False)
            case "replica_kill":
                # the second replica: the harness's API calls go to the first
                self._signal("controller-1", signal.SIGKILL)
                self.fact("away", "", None, True)
            case "replica_start":
                await self.start_controller(1)
                self.fact("away", "", None, False)
            case "nats_stop":
                self._signal("nats", signal.SIGTERM)
                await asyncio.to_thread(self.procs["nats"].wait, 30)
                self.fact("away", "", None, True)
            case "nats_start":
                await asyncio.to_thread(self.start_nats)
                self.fact("away", "", None, False)
            case _:
                await self.event(step)

    async def event(self, step: Step) -> None:
        """The steps an owner takes through the API."""
        assert self.api is not None
        match step.action:
            case "create":
                at = time.time()
                await self.create(step.target)
                self.created[step.target] = (at, await self.api.trigger(self.ours, step.target))
            case "apply_same" | "apply_changed":
                await self.apply_file(step.target)
            case "saturate":
                for n in range(TARPITS):
                    monitor = body(
                        f"tarpit-{n}",
                        "tarpit",
                        self.noisy.customer,
                        self.host,
                        self.ports["tarpit"],
                        (SATURATED,),
                        TARPIT_TIMEOUT,
                    )
                    await self.api.create(self.noisy, "smtp", monitor)
                self.fact("busy", "", SATURATED, True)
            case "unsaturate":
                for name in self.noisy.monitors:
                    await self.api.disable(self.noisy, name)
                self.fact("busy", "", SATURATED, False)
            case "report_burst":
                self.bursting = asyncio.create_task(self.report_burst(step.target))

    async def apply_file(self, target: str) -> None:
        """An exported file applied as it is, or with `target`'s timeout changed; which
        monitors' rows it wrote (beyond recording the secrets' variable names, which `apply` of
        an export made elsewhere does without counting it a change: docs/api.md) and which
        delivery confirmations it lost."""
        assert self.api is not None
        text = await self.api.export(self.ours)
        if target:
            text, _ = with_timeout(text, target)
        before, confirmed = await self._rows(), await self.api.confirmed(self.ours)
        at = time.time()
        code, summary = await self.api.apply(self.ours, text, self.tmp / "monitors.yaml")
        after, still = await self._rows(), await self.api.confirmed(self.ours)
        changed = tuple(
            sorted(
                name
                for name, row in after.items()
                if {k for k in row if row[k] != before.get(name, {}).get(k)} - NAMES_RECORDED
            )
        )
        lost = tuple(sorted(confirmed - still))
        self.applied.append(Applied(at, target, code, summary, changed, lost))

    async def after_burst(self) -> None:
        """Until the report burst has posted, and SLACK_S (and a second) more: the joint
        outage's end waits for it."""
        if self.bursting is not None:
            await self.bursting
        if self.bursts:
            await asyncio.sleep(max(0.0, self.bursts[-1].end + SLACK_S + 1 - time.time()))

    async def _incident_open(self, target: str, within: float) -> float:
        """Until `target` has an open incident (`within` seconds at the most); when it opened
        (now, when none did)."""
        deadline = time.monotonic() + within
        conn = await asyncpg.connect(self.database_url)
        try:
            while time.monotonic() < deadline:
                opened = await conn.fetchval(
                    "SELECT min(i.opened_at) FROM incidents i JOIN monitors m"
                    " ON m.id = i.monitor_id WHERE m.name = $1 AND i.ended_at IS NULL",
                    target,
                )
                if opened is not None:
                    return float(opened.timestamp())
                await asyncio.sleep(0.5)
        finally:
            await conn.close()
        return time.time()

    async def _rows(self) -> dict[str, dict[str, object]]:
        """Our monitors' rows as the owner's writes leave them (the scheduler's columns out)."""
        conn = await asyncpg.connect(self.database_url)
        try:
            rows = await conn.fetch(
                "SELECT m.name, to_jsonb(m) - 'next_due_at' - 'round_countries' - 'mail_dns_at'"
                " - 'trigger_tat' AS row FROM monitors m JOIN organizations o"
                " ON o.id = m.organization_id WHERE o.name = 'verdicts'"
            )
        finally:
            await conn.close()
        return {r["name"]: json.loads(r["row"]) for r in rows}

    async def close_api(self) -> None:
        if self.api is not None:
            await self.api.close()

    async def close_oauth2(self) -> None:
        """Dovecot and the token endpoint, once every process using them is gone."""
        await self.stack.aclose()

    def close(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
        stop_together([proc for key, proc in self.procs.items() if key != "nats"])
        if "nats" in self.procs:
            embedded.stop(self.procs["nats"])
        for ns in self.ns.values():
            netns._remove(ns.name, ns.link)
        if self.pg is not None:
            self.pg.cleanup()  # type: ignore[attr-defined]


async def _heard(url: str, country: str, within: float = START_TIMEOUT_S) -> None:
    """Until an agent of `country` heartbeats."""
    nc = await nats.connect(url)
    heard = asyncio.Event()

    async def on_beat(msg: Msg) -> None:
        if msg.subject.split(".")[2] == country:
            heard.set()

    try:
        await nc.subscribe(HEARTBEATS_SUBJECTS, cb=on_beat)
        await asyncio.wait_for(heard.wait(), within)
    finally:
        await nc.close()


# -- what the product said ------------------------------------------------------------------


async def _sample(
    url: str, states: dict[str, list[tuple[float, str]]], stop: asyncio.Event
) -> None:
    conn = await asyncpg.connect(url)
    try:
        while not stop.is_set():
            rows = await conn.fetch(
                "SELECT m.name, s.state FROM monitors m JOIN monitor_alert_state s"
                " ON s.monitor_id = m.id"
            )
            at = time.time()
            for r in rows:
                states.setdefault(r["name"], []).append((at, r["state"]))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
    finally:
        await conn.close()


async def _observed(url: str, states: dict[str, list[tuple[float, str]]]) -> Observed:
    conn = await asyncpg.connect(url)
    try:
        incidents = [
            Incident(
                r["id"],
                r["name"],
                r["started_at"].timestamp(),
                r["opened_at"].timestamp(),
                r["ended_at"].timestamp() if r["ended_at"] else None,
                r["flow_incident_id"],
                r["flow_ended_at"].timestamp() if r["flow_ended_at"] else None,
            )
            for r in await conn.fetch(
                "SELECT i.id, m.name, i.started_at, i.opened_at, i.ended_at,"
                " i.flow_incident_id, f.ended_at AS flow_ended_at FROM incidents i"
                " JOIN monitors m ON m.id = i.monitor_id"
                " LEFT JOIN flow_incidents f ON f.id = i.flow_incident_id"
            )
        ]
        notices = [
            Notice(
                r["name"],
                r["incident_id"],
                r["kind"],
                r["created_at"].timestamp(),
                r["flow_incident_id"],
                r["dedupe_key"],
                r["channel"],
                r["source"],
            )
            for r in await conn.fetch(
                "SELECT m.name, o.incident_id, o.kind, o.created_at, o.dedupe_key, o.channel,"
                " o.source, i.flow_incident_id FROM notification_outbox o"
                " JOIN monitors m ON m.id = o.monitor_id"
                " LEFT JOIN incidents i ON i.id = o.incident_id"
            )
        ]
        evidence = [
            Evidence(r["at"].timestamp(), r["flow_incident_id"], r["source"])
            for r in await conn.fetch(
                "SELECT at, flow_incident_id, source FROM flow_incident_evidence"
            )
        ]
        final = {
            r["name"]: r["state"] or "absent"
            for r in await conn.fetch(
                "SELECT m.name, s.state FROM monitors m LEFT JOIN monitor_alert_state s"
                " ON s.monitor_id = m.id"
            )
        }
    finally:
        await conn.close()
    return Observed(states, incidents, notices, final, evidence=evidence)


# -- the campaign ---------------------------------------------------------------------------


async def _api_said(rig: Rig, observed: Observed) -> None:
    """What the API says of the created targets' first rounds and of the saturation."""
    assert rig.api is not None
    for target, (at, status) in rig.created.items():
        results = await rig.api.results(rig.ours, target)
        first = first_results(results, at, _epoch)
        observed.created.append(Created(target, at, status, first))
    observed.applied = list(rig.applied)
    if rig.noisy.monitors:
        noisy: Counter[tuple[str, str]] = Counter()
        for name in rig.noisy.monitors:
            noisy += outcome_counts(await rig.api.results(rig.noisy, name))
        ours = 0
        for name in rig.ours.monitors:
            ours += outcome_counts(await rig.api.results(rig.ours, name))[("missed", "saturated")]
        observed.saturation = Saturation(dict(noisy), ours)


async def _keep(rig: Rig, observed: Observed, path: Path) -> None:
    """The truth log and what the product said, with every round's results, to trace a
    failing verdict to the product or the judge."""
    assert rig.api is not None
    results = {name: await rig.api.results(rig.ours, name) for name in rig.ours.monitors}
    said = {
        "facts": [asdict(f) for f in rig.facts],
        "incidents": [asdict(i) for i in observed.incidents],
        "notices": [asdict(n) for n in observed.notices],
        "evidence": [asdict(e) for e in observed.evidence],
        "bursts": [asdict(b) for b in observed.bursts],
        "joints": [asdict(j) for j in observed.joints],
        "final_states": observed.final_states,
        "states": observed.states,
        "results": results,
    }
    await asyncio.to_thread(path.write_text, json.dumps(said, default=str))


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


async def _run(c: Campaign, seed: int, tmp: Path, say: Callable[[str], None]) -> Figures:
    history = history_of(c, seed)
    rig = Rig(tmp, c)
    states: dict[str, list[tuple[float, str]]] = {}
    stop = asyncio.Event()
    try:
        await rig.up()
        await _all_up(rig.database_url, len(c.kinds) + len(c.shared))
        say(f"  rig up ({tmp}), every monitor up; warming up {c.warmup_s:.0f} s")
        await asyncio.sleep(c.warmup_s)
        sampler = asyncio.create_task(_sample(rig.database_url, states, stop))
        t0 = time.time()
        for step in history:
            await asyncio.sleep(max(0.0, t0 + step.at - time.time()))
            await rig.apply(step)
        own = per_target(c, history)
        settle = max(r.recover_bound for r in own.values()) + 2 * INTERVAL
        if c.quiet_end:
            say(f"  history done; {settle:.0f} s of quiet for the last recoveries")
            await asyncio.sleep(settle)
        else:
            say(f"  history done; until every verdict owed is in (at most {settle:.0f} s)")
            await _verdicts_in(rig, c, states, own, time.time() + settle)
        stop.set()
        await sampler
        end = time.time()
        observed = await _observed(rig.database_url, states)
        observed.joints = _joints(rig.facts, c.joint)
        observed.bursts = list(rig.bursts)
        await _api_said(rig, observed)
        if os.environ.get("VERDICTS_KEEP"):
            await _keep(rig, observed, tmp / "said.json")
        return judge(rig.facts, observed, c.targets, rules(), end, own, c.related())
    finally:
        stop.set()
        if rig.bursting is not None:
            rig.bursting.cancel()
        await rig.close_api()
        await asyncio.to_thread(rig.close)
        await rig.close_oauth2()


async def _all_up(url: str, monitors: int, within: float = 60.0) -> None:
    """Until our organization's `monitors` monitors are all `up`: their first rounds passed."""
    deadline = time.monotonic() + within
    conn = await asyncpg.connect(url)
    try:
        while True:
            up = await conn.fetchval(
                "SELECT count(*) FROM monitors m JOIN monitor_alert_state s"
                " ON s.monitor_id = m.id JOIN organizations o ON o.id = m.organization_id"
                " WHERE o.name = 'verdicts' AND s.state = 'up'"
            )
            if up >= monitors:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{up} of {monitors} monitors up within {within:.0f} s")
            await asyncio.sleep(0.5)
    finally:
        await conn.close()


async def _verdicts_in(
    rig: Rig,
    c: Campaign,
    states: dict[str, list[tuple[float, str]]],
    own: dict[str, Rules],
    deadline: float,
) -> None:
    """Until nothing the judge owes is still to come: no monitor stuck (every one up, no
    incident open) and no notice missing; `deadline` at the latest (what is judged then is the
    answer)."""
    while time.time() < deadline:
        observed = await _observed(rig.database_url, states)
        fig = judge(rig.facts, observed, c.targets, rules(), time.time(), own, c.related())
        if not fig.stuck and not fig.missing_notices:
            return
        await asyncio.sleep(1)


def _joints(facts: list[Fact], joint: tuple[str, ...]) -> list[Joint]:
    """The joint outage as the harness made it: from its targets' first server fault to the
    last of them back (it is each one's first fault)."""
    mine = [f for f in facts if f.kind == "server" and f.target in joint]
    down = [f.at for f in mine if f.failing]
    if not joint or not down:
        return []
    at = min(down)
    back = [min(f.at for f in mine if f.target == t and not f.failing and f.at > at) for t in joint]
    return [Joint(at, max(back), joint)]


def describe(history: list[Step]) -> str:
    counts = Counter(s.action for s in history)
    parts = [
        f"{counts['kill']} kills (outages and blips)" if counts["kill"] else "",
        f"{counts['freeze']} freezes" if counts["freeze"] else "",
        f"{counts['drop']} one-country drops" if counts["drop"] else "",
        f"{counts['leg_down']} round-trip sides down" if counts["leg_down"] else "",
        f"{counts['agent_kill']} agent restarts" if counts["agent_kill"] else "",
        f"{counts['controller_kill']} controller kills" if counts["controller_kill"] else "",
        f"{counts['nats_stop']} NATS restarts" if counts["nats_stop"] else "",
        f"{counts['replica_kill']} replica restarts" if counts["replica_kill"] else "",
        f"{counts['create']} creates with check-now" if counts["create"] else "",
        f"{counts['apply_same']} unchanged applies" if counts["apply_same"] else "",
        f"{counts['apply_changed']} changed applies" if counts["apply_changed"] else "",
        f"{counts['saturate']} saturations of {SATURATED}" if counts["saturate"] else "",
        f"{counts['report_burst']} report bursts" if counts["report_burst"] else "",
    ]
    return ", ".join(p for p in parts if p) or "no step"


def report(fig: Figures, seed: int, say: Callable[[str], None] = print) -> bool:
    missed = fig.misses()
    near = ", ".join(f"{s:.1f}" for s in fig.detection_near_restart_s) or "none"
    say(
        f"  seed {seed}: outages {fig.outages} (owed an incident), blips {fig.blips}\n"
        f"    false down {len(fig.false_down)}, missed recoveries {len(fig.missed_recoveries)}"
        f" (late: {len(fig.late_recoveries)}),"
        f" stuck {len(fig.stuck)}, duplicate notices {len(fig.duplicate_notices)},"
        f" missing notices {len(fig.missing_notices)}\n"
        f"    detection p99 {fig.detection_p99_s:.1f} s over {len(fig.detection_s)} outages"
        f" (bound: interval + confirmation + group wait = {fig.detect_bound_s:.1f} s);"
        f" next to a restart (out of the p99, bound {fig.near_restart_bound_s:.1f} s): {near}\n"
        f"    monitors' incidents {fig.monitor_incidents} in {fig.flow_incidents} flow"
        f" incidents; opening notices per channel {dict(sorted(fig.pages.items())) or '{}'}\n"
        f"{_events_line(fig)}"
        f"    {verdict(not missed)}" + (f": {', '.join(missed)}" if missed else "")
    )
    for name, items in fig.findings():
        for line in items:
            say(f"    {name.replace('_', ' ')}: {line}")
    return not missed


def _events_line(fig: Figures) -> str:
    parts = []
    if fig.check_now_s:
        parts.append(
            f"check-now after create: slowest first round {max(fig.check_now_s):.1f} s"
            f" over {len(fig.check_now_s)} countries (bound {fig.check_now_bound_s:.1f} s)"
        )
    if fig.applies:
        parts.append(f"applies {fig.applies}, wrong {len(fig.apply_wrong)}")
    if fig.joins or fig.joint_flows or fig.split_flows:
        parts.append(
            f"joined another target's flow incident {fig.joins}; joint outages told as"
            f" {fig.joint_flows} flow incidents; split {len(fig.split_flows)}"
        )
    if fig.report_bursts or fig.report_pages:
        parts.append(
            f"report bursts in an open incident {fig.report_bursts}: evidence attached"
            f" {fig.reports_attached}, report notices instead {len(fig.report_pages)}"
        )
    if fig.saturated_rounds or fig.preempted_rounds or fig.saturation_wrong:
        parts.append(
            f"tarpit rounds saturated {fig.saturated_rounds}, preempted {fig.preempted_rounds},"
            f" ours saturated {fig.ours_saturated}"
        )
    return "".join(f"    {p}\n" for p in parts)


def run_campaign(c: Campaign, seed: int, say: Callable[[str], None] = print) -> Figures:
    reason = netns.missing()
    if reason is not None:
        raise SystemExit(f"verdicts: {reason}")
    tmp = Path(tempfile.mkdtemp(prefix="mailprobe-verdicts-"))
    try:
        return asyncio.run(_run(c, seed, tmp, say))
    finally:
        if os.environ.get("VERDICTS_KEEP"):
            say(f"  logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def run(argv: list[str]) -> bool:
    parser = argparse.ArgumentParser(prog="python -m bench verdicts", description=__doc__)
    parser.add_argument("--seed", type=int, default=None, help="drawn and printed when absent")
    parser.add_argument("--minutes", type=float, default=6.0, help="the history's length")
    parser.add_argument("--short", action="store_true", help="make test's version")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    c = (
        SHORT
        if args.short
        else Campaign(
            minutes=args.minutes,
            kinds=FULL_KINDS,
            restarts=FULL_RESTARTS,
            created=FULL_CREATED,
            replicas=2,
            events=(*EVENTS, "reports"),
            depends=SHORT.depends,
            joint=SHORT.joint,
        )
    )
    discard_logs()
    history = history_of(c, seed)
    print(
        f"verdicts ({machine()}; seed {seed}; {len(c.targets)} monitors ({', '.join(c.kinds)};"
        f" created during the history: {', '.join(c.created) or 'none'})"
        f" every {INTERVAL} s, timeout {TIMEOUT} s, from {' and '.join(COUNTRIES)};"
        f" {c.replicas} controller replica{'s' if c.replicas > 1 else ''};"
        f" {max((s.at for s in history), default=0) / 60:.1f} min of history:"
        f" {describe(history)})",
        flush=True,
    )
    ok = report(run_campaign(c, seed, lambda s: print(s, flush=True)), seed)
    again = "--short" if args.short else f"--minutes {c.minutes:g}"
    print(f"  rerun: python -m bench verdicts --seed {seed} {again}")
    return ok


if __name__ == "__main__":
    sys.exit(0 if run(sys.argv[1:]) else 1)
