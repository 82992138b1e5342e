"""The HA soak's rig: the soak's (testkit.campaigns.soak_rig) on the parts of a deployment without a
single point of failure. Three nats-servers as one JetStream cluster (shared.embedded, the streams
at STREAM_REPLICAS=3), a PostgreSQL primary and a synchronous streaming standby
(testkit/postgres.py, `pg_basebackup -R`) behind a multi-host DATABASE_URL with
`target_session_attrs=read-write`, and a second SMTP server the harness takes down for a real
outage. Faults are applied by PID (SIGKILL); the standby is promoted by the harness, as a
failover manager would: the controllers find the new primary themselves. The controllers send
their e-mail notices to a sink of the harness (testkit.campaigns.notice_sink), which counts them.
"""

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from nats.errors import Error as NatsError

from shared import embedded
from shared.subjects import JOBS_STREAM, RESULTS_STREAM
from testkit import postgres
from testkit.campaigns.notice_sink import NoticeSink
from testkit.campaigns.soak_rig import Rig, _listening, _wait, connect_nats, now

NODES = 3


class HaRig(Rig):
    def __init__(
        self,
        tmp: Path,
        *,
        concurrency: int,
        result_bundles: bool = False,
        group_wait_s: int | None = None,
    ) -> None:
        """`group_wait_s`: the controllers' INCIDENT_GROUP_WAIT_SECONDS (None: the default)."""
        self.group_wait_s = group_wait_s
        self.sink = NoticeSink()
        self.sink.start()
        self.made = 2  # PostgreSQL data folders
        super().__init__(
            tmp, concurrency=concurrency, result_bundles=result_bundles, stream_replicas=NODES
        )
        self.outage_port = embedded.free_port()
        self.outage: subprocess.Popen[bytes] | None = None
        self.outage_up()

    def start_servers(self) -> tuple[str, str]:
        """The NATS cluster starts while the PostgreSQL pair is made."""
        with ThreadPoolExecutor(1) as pool:
            cluster = pool.submit(embedded.start_nats_cluster, self.tmp / "nats", NODES)
            try:
                self.primary = postgres.primary(self.tmp / "pg-1", embedded.free_port())
                self.standby = postgres.standby(
                    self.primary, self.tmp / "pg-2", embedded.free_port()
                )
                self.primary.synchronous()
            except BaseException:
                for node in cluster.result()[0]:
                    node.kill()
                raise
            self.nodes, nats_url = cluster.result()
        self.whole = True
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in (self.primary, self.standby))
        url = f"postgresql://postgres@{hosts}/postgres?target_session_attrs=read-write"
        return url, nats_url

    def controller_env(self) -> dict[str, str]:
        env = {"NOTIFY_SMTP_URL": self.sink.url, "NOTIFY_FROM": "mailprobe@soak.test"}
        if self.group_wait_s is not None:
            env["INCIDENT_GROUP_WAIT_SECONDS"] = str(self.group_wait_s)
        return env

    def stop_servers(self) -> None:
        self.sink.stop()
        if self.outage is not None:
            embedded.stop(self.outage)
        for node in self.nodes:
            node.kill()
        for pg in (self.primary, self.standby):
            pg.stop()

    # -- NATS ----------------------------------------------------------------------------

    def leaders(self) -> dict[str, str]:
        """The node leading JOBS and the one leading RESULTS, by stream."""
        return asyncio.run(self._leaders())

    async def _leaders(self) -> dict[str, str]:
        nc = await connect_nats(self.nats_url)
        try:
            js = nc.jetstream(timeout=2)
            found: dict[str, str] = {}
            deadline = time.monotonic() + 30
            for stream in (JOBS_STREAM, RESULTS_STREAM):
                while stream not in found:
                    with contextlib.suppress(NatsError, TimeoutError):
                        cluster = (await js.stream_info(stream)).cluster
                        if cluster is not None and cluster.leader:
                            found[stream] = cluster.leader
                            continue
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{stream} has no leader within 30 s")
                    await asyncio.sleep(0.2)
            return found
        finally:
            await nc.close()

    def kill_node(self, name: str) -> None:
        next(n for n in self.nodes if n.name == name).kill()

    def start_node(self, name: str) -> None:
        """Start a killed node again on its store; until JetStream reports it current."""
        node = next(n for n in self.nodes if n.name == name)
        node.start()
        embedded.wait_nats_healthy(node, 60)

    # -- PostgreSQL ------------------------------------------------------------------------

    def kill_primary(self) -> None:
        """SIGKILL every process of the primary: its host lost."""
        self.primary.kill()

    def promote_standby(self) -> None:
        """What a failover manager does: the standby becomes the primary. The old one is not
        started again (it would be a stale primary); the new one runs without a standby until
        `renew_standby`."""
        self.standby.promote()
        self.primary, self.standby = self.standby, self.primary
        self.whole = False

    def renew_standby(self) -> None:
        """A new synchronous standby of the primary, made from it on the old primary's port
        (so DATABASE_URL still names both): the pair is whole again for another failover."""
        self.standby.stop()
        self.made += 1
        port = self.standby.port
        self.standby = postgres.standby(self.primary, self.tmp / f"pg-{self.made}", port)
        self.primary.synchronous()
        self.whole = True

    # -- the outage's server -----------------------------------------------------------------

    def outage_up(self) -> None:
        self.outage = self._spawn(
            ["testkit.smtp_target", str(self.outage_port)], dict(os.environ), "outage.log"
        )
        _wait("outage SMTP target", lambda: _listening(self.outage_port))

    def outage_down(self) -> float:
        """SIGKILL the outage monitor's server (connections refused from now on); the time."""
        assert self.outage is not None
        os.kill(self.outage.pid, signal.SIGKILL)
        self.outage.wait(30)
        self.outage = None
        return now()
