"""deploy/ as far as this machine can check it without Docker or Kubernetes.

Every environment variable the container, compose, Kubernetes and systemd files set for a
mailprobe process is a real setting of that process, and their probes ask the ports and paths
the processes serve; what the Dockerfile copies builds a wheel with every package and
migration; the NATS configurations pass `nats-server -t`; `python -m deploy.mint_country`
writes an agents.conf the server accepts.
"""

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from string import Template
from typing import Any

import msgspec
import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML, no stubs installed

from deploy import mint_country
from deploy.nats_conf import JS_DOMAIN, parse_users_conf, render_users_conf
from shared import embedded
from shared.settings import AgentSettings, ControllerSettings, load

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SETTINGS = {
    "controller": {f.encode_name for f in msgspec.structs.fields(ControllerSettings)},
    "agent": {f.encode_name for f in msgspec.structs.fields(AgentSettings)},
}
IMAGE = "mailprobe:0.1.0"


def check_env(process: str, names: object, where: str) -> None:
    assert process in SETTINGS, f"{where}: runs {process!r}, not controller or agent"
    assert isinstance(names, dict | list | set)
    unknown = set(names) - SETTINGS[process]
    assert not unknown, f"{where}: {sorted(unknown)} are not {process} settings"


def test_dockerfile() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", text, re.M)
    assert '\nENTRYPOINT ["python", "-m"]\n' in text
    assert '\nCMD ["controller", "serve"]\n' in text
    joined = text.replace("\\\n", " ")
    env = {
        name
        for line in re.findall(r"^ENV (.+)$", joined, re.M)
        for name in re.findall(r"(\w+)=", line)
    }
    check_env(
        "controller", env - {n for n in env if n.startswith(("PYTHON", "PIP_"))}, "Dockerfile"
    )


def test_what_the_dockerfile_copies_builds_every_package_and_migration(tmp_path: Path) -> None:
    """The image runs `pip install .` on what its COPY lines bring in: that tree, built into a
    wheel, holds the three packages and every SQL migration (which `controller migrate` reads
    from the installed package)."""
    context = tmp_path / "app"
    context.mkdir()
    for line in re.findall(r"^COPY (.+)$", (DEPLOY / "Dockerfile").read_text(), re.M):
        *sources, dest = line.split()
        for source in sources:
            target = context / dest / source if dest.endswith("/") else context / dest
            if (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(ROOT / source, target)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(context), "--no-deps", "-q", "-w", "dist"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = (tmp_path / "dist").glob("mailprobe-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in ("controller", "agent", "shared"):
        modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / package).rglob("*.py")}
        assert modules <= names, sorted(modules - names)
    migrations = {
        p.relative_to(ROOT).as_posix() for p in (ROOT / "controller/db/migrations").glob("*.sql")
    }
    assert migrations and migrations <= names, sorted(migrations - names)


def test_compose() -> None:
    compose: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "nats", "controller", "agent-de", "agent-us"} <= set(services)
    ours = {name: s for name, s in services.items() if s.get("image") == IMAGE}
    assert {"controller", "agent-de", "agent-us", "migrate"} <= set(ours)
    for name, service in ours.items():
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        process = service["command"][0]
        check_env(process, service["environment"], f"compose service {name}")
        if process == "agent":
            cc = service["command"][service["command"].index("--country") + 1]
            assert service["environment"]["AGENT_COUNTRY"] == cc
    nats = services["nats"]
    assert nats["command"] == ["-c", "/etc/nats/hub.conf"]
    assert "./nats:/etc/nats:ro" in nats["volumes"]


def nats_server_version() -> str:
    out = subprocess.run(
        [embedded.nats_server_binary(), "--version"], capture_output=True, text=True, check=True
    ).stdout
    found = re.search(r"v(\d+\.\d+\.\d+)", out)
    assert found, out
    return found.group(1)


def test_compose_pins_the_tested_nats_and_checks_every_service() -> None:
    """The nats image is the nats-server version the tests run; every long-running service has
    a healthcheck asking the port and path its process serves, and waits for NATS healthy."""
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    assert services["nats"]["image"] == f"nats:{nats_server_version()}-alpine"
    assert "http://127.0.0.1:8222/healthz" in services["nats"]["healthcheck"]["test"]
    agent_port = load(AgentSettings, {}, agent_country="DE").agent_metrics_port
    for name, service in services.items():
        if service.get("image") != IMAGE or name == "migrate":
            continue
        probe = " ".join(service["healthcheck"]["test"])
        assert service["depends_on"]["nats"] == {"condition": "service_healthy"}, name
        if service["command"][0] == "agent":
            port = service["environment"].get("AGENT_METRICS_PORT", agent_port)
        else:
            port = service["environment"]["API_PORT"]
        assert f"http://127.0.0.1:{port}/ready" in probe, name


def k8s_documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        text = Template(path.read_text()).substitute(CC="DE", cc="de")
        docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def test_kubernetes_manifests() -> None:
    docs = k8s_documents()
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert {
        ("Deployment", "mailprobe-controller"),
        ("Service", "mailprobe-controller"),
        ("Deployment", "mailprobe-agent-de"),
        ("ConfigMap", "mailprobe-config"),
        ("Secret", "mailprobe-controller"),
        ("Secret", "mailprobe-agent-de"),
    } <= kinds
    configmaps = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}
    secrets = {d["metadata"]["name"]: d["stringData"] for d in docs if d["kind"] == "Secret"}
    for deployment in (d for d in docs if d["kind"] == "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= (
            deployment["spec"]["template"]["metadata"]["labels"].items()
        )
        for container in pod.get("initContainers", []) + pod["containers"]:
            where = f"{deployment['metadata']['name']}/{container['name']}"
            assert container["image"] == IMAGE
            process = container["args"][0]
            names = [e["name"] for e in container.get("env", [])]
            for source in container.get("envFrom", []):
                names += configmaps[source["configMapRef"]["name"]]
            for env in container.get("env", []):
                if ref := env.get("valueFrom", {}).get("secretKeyRef"):
                    assert ref["key"] == env["name"]
                    assert ref["key"] in secrets[ref["name"]], f"{where}: {ref} not in secrets"
            check_env(process, names, where)


def test_kubernetes_probes_ask_the_ports_the_processes_serve() -> None:
    """Agents: /health and /ready on AGENT_METRICS_PORT's default (9464); the controller:
    on API_PORT as its ConfigMap sets it."""
    docs = k8s_documents()
    configmaps = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    agent_port = load(AgentSettings, {}, agent_country="DE").agent_metrics_port
    api_port = int(configmaps["mailprobe-controller-config"]["API_PORT"])
    for name, port in (("mailprobe-agent-de", agent_port), ("mailprobe-controller", api_port)):
        [container] = deployments[name]["spec"]["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe, path in (("livenessProbe", "/health"), ("readinessProbe", "/ready")):
            check = container[probe]["httpGet"]
            assert check["path"] == path, (name, probe)
            assert ports[check["port"]] == port, (name, probe)


@pytest.mark.parametrize(
    ("unit", "process", "exec_start"),
    [
        ("mailprobe-controller.service", "controller", "-m controller serve"),
        ("mailprobe-agent@.service", "agent", "-m agent"),
    ],
)
def test_systemd_units(unit: str, process: str, exec_start: str) -> None:
    text = (DEPLOY / "systemd" / unit).read_text()
    sections = re.findall(r"^\[(\w+)\]$", text, re.M)
    assert sections == ["Unit", "Service", "Install"]
    env = re.findall(r"^Environment=(\w+)=", text, re.M)
    check_env(process, env, unit)
    [start] = re.findall(r"^ExecStart=(.+)$", text, re.M)
    assert start.endswith(exec_start)
    if process == "agent":
        assert "Environment=AGENT_COUNTRY=%i" in text
        assert "EnvironmentFile=/etc/mailprobe/agent-%i.env" in text
    if analyze := shutil.which("systemd-analyze"):
        result = subprocess.run(
            [analyze, "verify", "--man=no", str(DEPLOY / "systemd" / unit)],
            capture_output=True,
            text=True,
            check=False,
        )
        problems = [
            line
            for line in result.stderr.splitlines()
            if line.strip() and "is not executable" not in line  # /opt/mailprobe is not here
        ]
        assert not problems, problems


def systemd_env(unit: str, instance: str, env_file: str) -> dict[str, str]:
    """The environment systemd gives an instance: Environment= lines, then the file's values,
    which win."""
    text = (DEPLOY / "systemd" / unit).read_text().replace("%i", instance)
    env = dict(re.findall(r"^Environment=(\w+)=(.*)$", text, re.M))
    env.update(re.findall(r"^(\w+)=(.*)$", env_file, re.M))
    return env


def test_systemd_runs_several_agents_of_one_country_on_one_host() -> None:
    """`@DE` takes its country from the instance name; `@DE-1` from its env file, with a
    metrics port of its own (the example file's)."""
    unit = "mailprobe-agent@.service"
    plain = systemd_env(unit, "DE", "NATS_URL=nats://agent-DE:x@nats:4222\n")
    first = load(AgentSettings, plain)
    second = load(
        AgentSettings,
        systemd_env(unit, "DE-1", (DEPLOY / "systemd" / "agent-DE-1.env.example").read_text()),
    )
    assert (first.agent_country, second.agent_country) == ("DE", "DE")
    assert first.agent_metrics_port != second.agent_metrics_port


def nats_test(conf: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [embedded.nats_server_binary(), "-t", "-c", str(conf)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **env},
    )


def test_nats_configs_are_valid() -> None:
    hub = nats_test(DEPLOY / "nats" / "hub.conf")
    assert hub.returncode == 0, hub.stderr
    leaf = nats_test(
        DEPLOY / "nats" / "leaf.conf",
        NATS_SERVER_NAME="leaf-test",
        NATS_HUB_LEAF_URL="nats-leaf://leaf:secret@hub.example.net:7422",
    )
    assert leaf.returncode == 0, leaf.stderr
    # The leaf's mappings and the agents' permissions name the hub's JetStream domain.
    assert f"domain: {JS_DOMAIN}\n" in (DEPLOY / "nats" / "hub.conf").read_text()
    assert f'"$JS.API.>": "$JS.{JS_DOMAIN}.API.>"' in (DEPLOY / "nats" / "leaf.conf").read_text()
    # The checked-in agents.conf is exactly what the generator writes for its users.
    text = (DEPLOY / "nats" / "agents.conf").read_text()
    assert render_users_conf(parse_users_conf(text).values()) == text


def test_mint_country_writes_a_config_the_server_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(DEPLOY / "nats" / "hub.conf", tmp_path / "hub.conf")
    conf = tmp_path / "agents.conf"
    conf.write_text(render_users_conf([]))
    url = "nats://nats-a:4222,nats://nats-b:4222"
    for name in ("DE", "controller", "us", "subscriber"):
        assert mint_country.main([name, "--conf", str(conf), "--nats-url", url]) == 0
    out = capsys.readouterr().out
    users = parse_users_conf(conf.read_text())
    assert list(users) == ["controller", "subscriber", "agent-DE", "agent-US"]
    assert all(u.password_hash.startswith("$2") and u.minted for u in users.values())
    urls = re.findall(r"^NATS_URL=(.+)$", out, re.M)
    assert len(urls) == 4
    assert re.fullmatch(
        r"nats://agent-DE:[\w-]{40,}@nats-a:4222,nats://agent-DE:[\w-]+@nats-b:4222", urls[0]
    )
    assert "AGENT_COUNTRY=DE" in out
    # The subscriber may create no consumer: it is told what it may do instead.
    assert "consumer" not in out.split("# subscriber:")[1].replace("no consumers", "")
    assert "core subscription" in out and "message get" in out

    assert mint_country.main(["DE", "--conf", str(conf)]) == 2  # exists: needs --rotate
    assert "pass --rotate" in capsys.readouterr().err
    before = users["agent-DE"].password_hash
    assert mint_country.main(["DE", "--conf", str(conf), "--rotate"]) == 0
    assert parse_users_conf(conf.read_text())["agent-DE"].password_hash != before
    assert mint_country.main(["Germany", "--conf", str(conf)]) == 2
    assert mint_country.main(["--refresh", "--conf", str(conf)]) == 0

    checked = nats_test(tmp_path / "hub.conf")
    assert checked.returncode == 0, checked.stderr


def test_mint_country_mints_a_leaf_user_and_changes_its_countries(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(DEPLOY / "nats" / "hub.conf", tmp_path / "hub.conf")
    conf = tmp_path / "agents.conf"
    conf.write_text(render_users_conf([]))
    assert mint_country.main(["leaf-eu", "--conf", str(conf)]) == 2
    assert "--countries DE,FR" in capsys.readouterr().err
    assert mint_country.main(["DE", "--countries", "DE", "--conf", str(conf)]) == 2
    assert "leaf-REGION users only" in capsys.readouterr().err

    url = "nats-leaf://hub.example.net:7422"
    args = ["--conf", str(conf), "--hub-leaf-url", url]
    assert mint_country.main(["leaf-eu", "--countries", "fr,de", *args]) == 0
    out = capsys.readouterr().out
    assert re.search(
        r"^NATS_HUB_LEAF_URL=nats-leaf://leaf-eu:[\w-]{40,}@hub.example.net:7422$", out, re.M
    )
    leaf = parse_users_conf(conf.read_text())["leaf-eu"]
    assert leaf.countries == ("DE", "FR")
    assert '"_INBOX_agent_FR.>"' in conf.read_text()

    assert mint_country.main(["leaf-eu", "--countries", "DE,FR,NL", *args]) == 0
    assert "NATS_HUB_LEAF_URL" not in capsys.readouterr().out  # same password, none shown
    changed = parse_users_conf(conf.read_text())["leaf-eu"]
    assert (changed.countries, changed.password_hash) == (("DE", "FR", "NL"), leaf.password_hash)
    checked = nats_test(tmp_path / "hub.conf")
    assert checked.returncode == 0, checked.stderr

    without = conf.read_text().replace("  # countries DE,FR,NL\n", "")
    with pytest.raises(ValueError, match=r"leaf-eu.*at least one country"):
        parse_users_conf(without)
