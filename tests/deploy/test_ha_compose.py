"""deploy/compose.ha.yaml, the override without a single point of failure, read as compose
merges it onto compose.yaml: three NATS nodes from hub-cluster.conf routed to each other, the
streams on three (a real setting), PostgreSQL with a synchronous standby whose name the
primary waits for, and the controller on both hosts' URL, asking for the writable one. (The
configurations themselves run for real in tests/ha/.)"""

import re
from typing import Any

import yaml  # type: ignore[import-untyped]  # PyYAML, no stubs installed

from controller.db.pool import Hosts
from shared.settings import ControllerSettings, load
from tests.deploy.test_deploy_files import DEPLOY, check_env


def merged() -> dict[str, dict[str, Any]]:
    """compose.yaml's services with compose.ha.yaml's over them (maps merged, lists and
    strings replaced, as compose does for the keys used here)."""
    base = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    for name, over in yaml.safe_load((DEPLOY / "compose.ha.yaml").read_text())["services"].items():
        service = base.setdefault(name, {})
        for key, value in over.items():
            if isinstance(value, dict) and isinstance(service.get(key), dict):
                service[key] = {**service[key], **value}
            else:
                service[key] = value
    return base  # type: ignore[no-any-return]


def test_three_nats_nodes_route_to_each_other_under_their_own_names() -> None:
    services = merged()
    nodes = {
        n: s
        for n, s in services.items()
        if s.get("command") == ["-c", "/etc/nats/hub-cluster.conf"]
    }
    assert set(nodes) == {"nats", "nats-2", "nats-3"}
    assert len({s["environment"]["NATS_SERVER_NAME"] for s in nodes.values()}) == 3
    for service in nodes.values():
        routes = {v for k, v in service["environment"].items() if k.startswith("NATS_ROUTE_")}
        assert routes == {f"nats-route://{name}:6222" for name in nodes}
        assert "./nats:/etc/nats:ro" in service["volumes"]
        assert service["image"] == services["nats"]["image"]
        assert len({v.split(":")[0] for v in service["volumes"]}) == 2  # its own data volume
    data = [next(v for v in s["volumes"] if v.endswith(":/data")) for s in nodes.values()]
    assert len(set(data)) == 3


def test_the_controller_follows_the_primary_and_keeps_streams_on_three() -> None:
    services = merged()
    controller = services["controller"]["environment"]
    check_env("controller", controller, "compose.ha controller")
    replicas = {"STREAM_REPLICAS": controller["STREAM_REPLICAS"], "DATABASE_URL": "postgresql://x"}
    assert load(ControllerSettings, replicas).stream_replicas == 3
    for name in ("controller", "migrate"):
        url = services[name]["environment"]["DATABASE_URL"]
        assert url.endswith("?target_session_attrs=read-write"), name
        hosts = [re.search(r"@([^/]+)/", u).group(1) for u in Hosts(url).urls]  # type: ignore[union-attr]
        assert hosts == ["postgres:5432", "postgres-standby:5432"], name


def test_the_primary_waits_for_the_standby_by_the_name_it_connects_with() -> None:
    services = merged()
    command = " ".join(services["postgres"]["command"])
    waited = re.search(r"synchronous_standby_names=ANY 1 \((\w+)\)", command)
    assert waited, command
    standby = (DEPLOY / "postgres" / "standby.sh").read_text()
    assert f"application_name={waited.group(1)}" in standby
    assert "pg_basebackup" in standby and " -R " in standby
    for service in ("postgres", "postgres-standby"):
        for volume in services[service]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), volume
    init = (DEPLOY / "postgres" / "replication.sh").read_text()
    assert "host replication replicator" in init and "REPLICATION" in init
