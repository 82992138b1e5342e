"""deploy/nats/hub-cluster.conf as shipped runs a hub of three real nats-servers: routes over
TLS verified both ways, JetStream on each, the accounts of agents.conf. The controller, logged
in as its user and given every node's URL, makes its streams on all three; a node killed, the
streams go on from the other two."""

import asyncio
import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS

from controller.runtime.stream_snapshots import move_streams
from deploy.nats_conf import StoredUser, render_users_conf
from shared import embedded
from shared.streams import ensure_jobs_consumers, ensure_streams, jobs_consumer_name
from shared.subjects import EVENTS_STREAM, JOBS_STREAM, RESULTS_STREAM
from tests.deploy.natsdeploy import SHIPPED_TLS, Pki, make_pki, mint, ship, start_hub

NODES = 3


def start_node(
    folder: Path, name: str, users: list[StoredUser], pki: Pki, cluster: int, routes: dict[str, str]
) -> embedded.NatsNode:
    """A node from the shipped hub-cluster.conf (and the hub.conf it includes) in `folder`,
    its certificates from `pki`, on loopback ports."""
    folder.mkdir(parents=True)
    (folder / "agents.conf").write_text(render_users_conf(users))
    tls = {SHIPPED_TLS: f"{pki.folder}/"}
    monitor = embedded.free_port()
    ship(
        "hub.conf",
        folder,
        {
            **tls,
            "store_dir: /data/jetstream\n": "",
            "http: 127.0.0.1:8222": f"http: 127.0.0.1:{monitor}",
            "listen: 0.0.0.0:7422": f"listen: 127.0.0.1:{embedded.free_port()}",
        },
    )
    conf = ship(
        "hub-cluster.conf", folder, {**tls, "listen: 0.0.0.0:6222": f"listen: 127.0.0.1:{cluster}"}
    )
    port = embedded.free_port()
    proc, _ = embedded.start_nats(
        folder / "data", port, config=conf, env={"NATS_SERVER_NAME": name, **routes}
    )
    return embedded.NatsNode(name, folder, port, cluster, monitor, "", proc)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[tuple[list[embedded.NatsNode], Pki, dict[str, str]]]:
    """Three nodes routed to each other; the CA clients trust, the controller's password."""
    pki = make_pki(tmp_path / "tls")
    passwords, users = mint(["controller"])
    clusters = [embedded.free_port() for _ in range(NODES)]
    routes = {f"NATS_ROUTE_{i}": f"nats-route://127.0.0.1:{c}" for i, c in enumerate(clusters, 1)}
    nodes: list[embedded.NatsNode] = []
    try:
        for i, cluster in enumerate(clusters, 1):
            nodes.append(start_node(tmp_path / f"hub-{i}", f"hub-{i}", users, pki, cluster, routes))
        yield nodes, pki, passwords
    finally:
        for node in nodes:
            node.kill()


def routed(node: embedded.NatsNode) -> set[str]:
    """The names of the servers `node` has routes to (its /routez)."""
    url = f"http://127.0.0.1:{node.monitor_port}/routez"
    with urllib.request.urlopen(url, timeout=2) as resp:
        return {r.get("remote_name", "") for r in json.load(resp)["routes"]}


def test_every_node_of_the_shipped_cluster_syncs_every_write(
    hub: tuple[list[embedded.NatsNode], Pki, dict[str, str]],
) -> None:
    """hub-cluster.conf takes hub.conf's `sync_interval: always` (docs/operating.md, "Power
    loss and the stream"): no node acknowledges a write its disk does not have."""
    nodes, _, _ = hub
    for node in nodes:
        url = f"http://127.0.0.1:{node.monitor_port}/varz"
        with urllib.request.urlopen(url, timeout=2) as resp:
            assert json.load(resp)["jetstream"]["config"]["sync_always"] is True, node.name


def test_a_server_without_the_deployments_certificate_cannot_join(
    hub: tuple[list[embedded.NatsNode], Pki, dict[str, str]], tmp_path: Path
) -> None:
    """Routes verify both ways (`verify: true`): a nats-server started from the same files
    and routes but with a certificate of another CA is refused by every node, and so never
    sees the streams or the accounts' traffic."""
    nodes, _, _ = hub
    deadline = time.monotonic() + 20
    while any(routed(n) != {m.name for m in nodes} - {n.name} for n in nodes):
        assert time.monotonic() < deadline, [routed(n) for n in nodes]
        time.sleep(0.2)
    routes = {
        f"NATS_ROUTE_{i}": f"nats-route://127.0.0.1:{n.cluster_port}"
        for i, n in enumerate(nodes, 1)
    }
    _, users = mint(["controller"])
    other_ca = make_pki(tmp_path / "other-tls")
    intruder = start_node(
        tmp_path / "intruder", "intruder", users, other_ca, embedded.free_port(), routes
    )
    try:
        # Until its route to every node has failed its handshake, and every node refused it.
        log_of: Callable[[embedded.NatsNode], str] = lambda n: (  # noqa: E731
            n.store_dir / "data" / "nats.log"
        ).read_text()
        deadline = time.monotonic() + 30
        while log_of(intruder).count("TLS route handshake error") < len(nodes) or not all(
            "TLS route handshake error" in log_of(n) for n in nodes
        ):
            assert time.monotonic() < deadline, log_of(intruder)[-2000:]
            time.sleep(0.1)
        assert intruder.proc is not None and intruder.proc.poll() is None
        assert all("intruder" not in routed(n) for n in nodes)
        assert routed(intruder) == set()
        log = (intruder.store_dir / "data" / "nats.log").read_text()
        assert "TLS route handshake error" in log and "unknown authority" in log
    finally:
        intruder.kill()


async def test_shipped_cluster_config_keeps_streams_on_three_nodes_through_a_loss(
    hub: tuple[list[embedded.NatsNode], Pki, dict[str, str]],
) -> None:
    nodes, pki, passwords = hub
    nc = NATS()
    await nc.connect(
        [f"tls://127.0.0.1:{n.port}" for n in nodes],
        user="controller",
        password=passwords["controller"],
        tls=pki.client(),
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.2,  # type: ignore[arg-type]  # nats-py: seconds, a float works
    )
    try:
        js = nc.jetstream(timeout=2)
        async with asyncio.timeout(30):
            while True:  # the routes up and a JetStream meta leader elected
                try:
                    await ensure_streams(js, replicas=3)
                    break
                except Exception:
                    await asyncio.sleep(0.3)
            for i in range(20):
                await js.publish(f"mon.events.m{i}", b"r")
            info = await js.stream_info(EVENTS_STREAM)
            assert info.cluster is not None and info.config.num_replicas == 3
            assert {info.cluster.leader, *(p.name for p in info.cluster.replicas or [])} == {
                f"hub-{i}" for i in range(1, NODES + 1)
            }
            next(n for n in nodes if n.name == info.cluster.leader).kill()
            while True:  # a new leader on the two left; every message there
                try:
                    await js.publish("mon.events.after", b"r")
                    break
                except Exception:
                    await asyncio.sleep(0.3)
            assert (await js.stream_info(EVENTS_STREAM)).state.messages == 21
    finally:
        await nc.close()


async def test_controller_user_moves_a_single_hubs_streams_onto_the_cluster(
    hub: tuple[list[embedded.NatsNode], Pki, dict[str, str]], tmp_path: Path
) -> None:
    """`streams-move` under the shipped accounts: the controller user of a single hub
    (hub.conf) and of the cluster has the rights a snapshot and a restore take."""
    nodes, pki, passwords = hub
    old_passwords, old_users = mint(["controller"])
    old = start_hub(tmp_path / "old-hub", old_users, pki)
    source, target = NATS(), NATS()
    try:
        await source.connect(
            old.url, user="controller", password=old_passwords["controller"], tls=pki.client()
        )
        await target.connect(
            [f"tls://127.0.0.1:{n.port}" for n in nodes],
            user="controller",
            password=passwords["controller"],
            tls=pki.client(),
        )
        js = source.jetstream(timeout=5)
        await ensure_streams(js, replicas=1)
        await ensure_jobs_consumers(js, ["DE"])
        for i in range(30):
            await js.publish("mon.jobs.DE", b"job %d" % i)
            await js.publish(f"mon.events.m{i}", b"event %d" % i)
        async with asyncio.timeout(30):
            while True:  # the cluster's routes up and a JetStream meta leader elected
                try:
                    await target.jetstream(timeout=2).account_info()
                    break
                except Exception:
                    await asyncio.sleep(0.3)
            moved = await move_streams(source, target, 3, workdir=tmp_path / "work")
        assert [(m.stream, m.messages, m.replicas) for m in moved] == [
            (JOBS_STREAM, 30, 3),
            (RESULTS_STREAM, 0, 3),
            (EVENTS_STREAM, 30, 3),
            ("ARRIVALS", 0, 3),
            ("KV_RECEIVERS", 0, 3),
        ]
        assert moved[0].consumers == (jobs_consumer_name("DE"),)
    finally:
        await source.close()
        await target.close()
        embedded.stop(old.proc)
