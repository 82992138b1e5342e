"""deploy/ as far as this machine can check it without Docker or Kubernetes.

Every environment variable the container, compose, Kubernetes and systemd files set for a
mailprobe process is a real setting of that process; the NATS configurations pass
`nats-server -t`; `python -m deploy.mint_country` writes an agents.conf the server accepts.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path
from string import Template
from typing import Any

import msgspec
import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML, no stubs installed

from deploy import mint_country
from deploy.nats_conf import parse_users_conf, render_users_conf
from shared import embedded
from shared.settings import AgentSettings, ControllerSettings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
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


@pytest.mark.parametrize(
    ("unit", "process", "exec_start"),
    [
        ("mailprobe-controller.service", "controller", "-m controller serve"),
        ("mailprobe-agent@.service", "agent", "-m agent --country %i"),
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

    assert mint_country.main(["DE", "--conf", str(conf)]) == 2  # exists: needs --rotate
    assert "pass --rotate" in capsys.readouterr().err
    before = users["agent-DE"].password_hash
    assert mint_country.main(["DE", "--conf", str(conf), "--rotate"]) == 0
    assert parse_users_conf(conf.read_text())["agent-DE"].password_hash != before
    assert mint_country.main(["Germany", "--conf", str(conf)]) == 2
    assert mint_country.main(["--refresh", "--conf", str(conf)]) == 0

    checked = nats_test(tmp_path / "hub.conf")
    assert checked.returncode == 0, checked.stderr
