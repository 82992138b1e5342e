"""Real nats-servers running deploy/nats as shipped, for the deploy tests.

The hub runs deploy/nats/hub.conf, a regional leaf deploy/nats/leaf.conf, each with the
agents.conf deploy/nats_conf.py renders for the users given. The only changes to the shipped
files: certificates from a throwaway CA (trustme) where they expect /etc/nats/tls/, free
loopback ports, and no fixed store folder. Clients connect with TLS, trusting that CA.
Denials show up as the server's `Permissions Violation` errors (nats-py's `error_cb`) and as
request timeouts.
"""

import asyncio
import contextlib
import json
import os
import re
import ssl
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import trustme
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from deploy.nats_conf import (
    StoredUser,
    agent_inbox_prefix,
    agent_user,
    hash_password,
    leaf_regions,
    leaf_url_variable,
    new_password,
    render_leaf_conf,
    render_users_conf,
)
from shared import embedded

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "nats"
SHIPPED_TLS = "/etc/nats/tls/"
DENIED_WAIT_S = 0.5  # how long a request waits before its denial counts as proven
ALLOWED_WAIT_S = 5.0


@dataclass
class Pki:
    """A throwaway CA and a server certificate for localhost / 127.0.0.1, in `folder`."""

    folder: Path

    @property
    def ca_file(self) -> Path:
        return self.folder / "ca.pem"

    def client(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


def make_pki(folder: Path) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    server.private_key_pem.write_to_path(str(folder / "server.key"))
    server.cert_chain_pems[0].write_to_path(str(folder / "server.pem"))
    for pem in server.cert_chain_pems[1:]:
        pem.write_to_path(str(folder / "server.pem"), append=True)
    return Pki(folder)


def ship(name: str, folder: Path, changes: dict[str, str]) -> Path:
    """deploy/nats/`name` into `folder`, with `changes` (each must still be in the file)."""
    text = (DEPLOY / name).read_text()
    for old, new in changes.items():
        assert old in text, f"{name} changed: update tests/deploy/natsdeploy.py ({old!r} not found)"
        text = text.replace(old, new)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return folder / name


@dataclass
class Server:
    url: str  # tls://127.0.0.1:port
    monitor: str  # http://127.0.0.1:port
    proc: subprocess.Popen[bytes]
    leaf_port: int = 0  # the hub's leaf-node port


@dataclass
class Deployment:
    """A hub (and maybe a leaf), the CA clients trust, and every user's password."""

    pki: Pki
    hub: Server
    passwords: dict[str, str]
    users: list[StoredUser]
    leaf: Server | None = None

    def stop(self) -> None:
        for server in (self.leaf, self.hub):
            if server is not None:
                embedded.stop(server.proc)


def mint(names: Iterable[str]) -> tuple[dict[str, str], list[StoredUser]]:
    """Passwords and stored users (cheap bcrypt hashes) for `names`."""
    passwords = {name: new_password() for name in names}
    return passwords, [StoredUser(u, hash_password(p, cost=4)) for u, p in passwords.items()]


def start_hub(folder: Path, users: list[StoredUser], pki: Pki) -> Server:
    (folder / "agents.conf").parent.mkdir(parents=True, exist_ok=True)
    (folder / "agents.conf").write_text(render_users_conf(users))
    http, leaf = embedded.free_port(), embedded.free_port()
    conf = ship(
        "hub.conf",
        folder,
        {
            SHIPPED_TLS: f"{pki.folder}/",
            "store_dir: /data/jetstream\n": "",
            "http: 127.0.0.1:8222": f"http: 127.0.0.1:{http}",
            "listen: 0.0.0.0:7422": f"listen: 127.0.0.1:{leaf}",
        },
    )
    proc, url = embedded.start_nats(folder / "data", config=conf)
    return Server(url.replace("nats://", "tls://"), f"http://127.0.0.1:{http}", proc, leaf)


def start_leaf(
    folder: Path,
    region: str,
    deployment: Deployment,
) -> Server:
    """leaf.conf and the region's agents.conf as mint_country writes them, with the
    environment leaf.conf documents; returns once every country's connection is up."""
    countries = leaf_regions(deployment.users)[region]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "agents.conf").write_text(
        render_leaf_conf(region, deployment.users, ca_file=str(deployment.pki.ca_file))
    )
    port, http = embedded.free_port(), embedded.free_port()
    conf = ship(
        "leaf.conf",
        folder,
        {
            SHIPPED_TLS: f"{deployment.pki.folder}/",
            "listen: 0.0.0.0:4222": f"listen: 127.0.0.1:{port}",
            "http: 127.0.0.1:8222": f"http: 127.0.0.1:{http}",
        },
    )
    env = {**os.environ, "NATS_SERVER_NAME": f"{region}-1"}
    for cc in countries:
        login = f"{region}-{cc}"
        hub_port = deployment.hub.leaf_port
        env[leaf_url_variable(cc)] = (
            f"nats-leaf://{login}:{deployment.passwords[login]}@127.0.0.1:{hub_port}"
        )
    with open(folder / "leaf.log", "wb") as log:
        proc = subprocess.Popen(
            [embedded.nats_server_binary(), "-c", str(conf)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Server(f"tls://127.0.0.1:{port}", f"http://127.0.0.1:{http}", proc)
    try:
        _wait_for_leaf_links(deployment.hub, len(countries))
    except AssertionError:
        embedded.stop(proc)
        raise
    return server


def _wait_for_leaf_links(hub: Server, count: int) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if len(httpx.get(f"{hub.monitor}/leafz", timeout=1).json()["leafs"] or []) >= count:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"the leaf's {count} connections did not reach the hub within 15 s")


@dataclass
class Client:
    nc: NATS
    errors: list[Exception] = field(default_factory=list)

    @property
    def js(self) -> JetStreamContext:
        """For what the user may do: a wait a loaded machine does not run out of."""
        return self.nc.jetstream(timeout=ALLOWED_WAIT_S)

    @property
    def denied(self) -> JetStreamContext:
        """For what the user may not do: no answer within DENIED_WAIT_S proves the denial."""
        return self.nc.jetstream(timeout=DENIED_WAIT_S)

    async def violation(self, kind: str, subject: str) -> None:
        """Wait until the server reported `Permissions Violation for <kind> [to] "<subject>"`
        (`publish`, `subscription`, `publish with reply of`)."""
        pattern = re.compile(
            rf'permissions violation for {kind}( to)? "{re.escape(subject)}"', re.I
        )
        await self.nc.flush()
        for _ in range(200):
            if any(pattern.search(str(e)) for e in self.errors):
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"no {kind} violation for {subject}; errors: {self.errors}")

    async def close(self) -> None:
        await self.nc.close()


async def connect(
    server: Server, deployment: Deployment, user: str, inbox_prefix: str = "_INBOX"
) -> Client:
    client = Client(nc=NATS())

    async def on_error(exc: Exception) -> None:
        client.errors.append(exc)

    await client.nc.connect(
        server.url,
        user=user,
        password=deployment.passwords[user],
        inbox_prefix=inbox_prefix,
        tls=deployment.pki.client(),
        error_cb=on_error,
        allow_reconnect=False,
        connect_timeout=2,
    )
    return client


async def agent(server: Server, deployment: Deployment, cc: str) -> Client:
    return await connect(server, deployment, agent_user(cc), agent_inbox_prefix(cc))


async def registered(nc: NATS) -> None:
    """Return once the server has the client's subscriptions. nats-py (2.16) writes flush()'s
    PING straight to the socket, while a SUB may still wait in the client's buffer for its
    flusher task: one PONG does not prove the SUB arrived. The first round trip lets the
    buffer go out; the second PING follows it."""
    await nc.flush()
    await nc.flush()


async def raw_login(server: Server, tls: ssl.SSLContext | None, login: dict[str, str]) -> bytes:
    """The server's answer to CONNECT with `login` and a PING, at the protocol level (a refused
    nats-py connect leaves its socket open); with `tls`, after upgrading as the server asks."""
    host, port = server.url.removeprefix("tls://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        assert (await reader.readline()).startswith(b"INFO ")
        if tls is not None:
            await writer.start_tls(tls, server_hostname=host)
        connect = {"verbose": False, "pedantic": False, "tls_required": tls is not None, **login}
        writer.write(b"CONNECT " + json.dumps(connect).encode() + b"\r\nPING\r\n")
        await writer.drain()
        return await reader.readline()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()
