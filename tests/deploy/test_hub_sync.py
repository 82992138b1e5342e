"""The shipped hub fsyncs every JetStream write before acknowledging it (`sync_interval: always`,
docs/operating.md, "Power loss and the stream"): a job or result acknowledged survives every
server losing power at once (the cluster's nodes: tests/ha/test_hub_cluster_conf.py)."""

from pathlib import Path

import httpx

from deploy.nats_conf import CONTROLLER_USER
from shared import embedded
from tests.deploy.natsdeploy import make_pki, mint, start_hub


def test_the_shipped_hub_syncs_every_write(tmp_path: Path) -> None:
    _, users = mint([CONTROLLER_USER])
    hub = start_hub(tmp_path / "hub", users, make_pki(tmp_path / "tls"))
    try:
        config = httpx.get(f"{hub.monitor}/varz", timeout=5).json()["jetstream"]["config"]
    finally:
        embedded.stop(hub.proc)
    assert config["sync_always"] is True
