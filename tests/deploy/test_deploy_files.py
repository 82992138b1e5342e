"""deploy/ as far as this machine can check it without Docker or Kubernetes.

Every environment variable the container, compose, Kubernetes and systemd files set for a
mailprobe process is a real setting of that process, every file a setting names is mounted
there, and their probes ask the ports and paths the processes serve; what the Dockerfile copies
builds a wheel with every package and migration; the NATS configurations, with certificates
from `python -m deploy.make_certs`, pass `nats-server -t`; `python -m deploy.mint_country`
writes agents.conf files the servers accept and a country's sealing keys.
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

import pytest
import yaml

from agent.settings import AgentSettings
from controller.settings import ApiSettings, ControllerSettings
from deploy import make_certs, mint_country
from deploy.nats_conf import parse_users_conf, render_users_conf
from shared import embedded
from shared.sealing import OpeningKeys, SealingKey
from shared.settings import SettingsError, load, variables

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SETTINGS = {
    "controller": set(variables(ControllerSettings)),
    "agent": set(variables(AgentSettings)),
}
IMAGE = "mailprobe:0.1.0"
# Settings that name a file or folder the process reads: it must be mounted there.
FILE_SETTINGS = ("NATS_TLS_CA_FILE", "AGENT_SEAL_KEYS_FILE", "SEAL_PUBLIC_KEYS_DIR")


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
    wheel, holds the three packages, every SQL migration (which `controller migrate` reads
    from the installed package) and the Apache License text (pyproject's `license-files`)."""
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
    # The console's templates, stylesheet and script: served from the wheel, never a CDN.
    assets = {
        p.relative_to(ROOT).as_posix()
        for folder in ("templates", "static")
        for p in (ROOT / "controller/web/console" / folder).iterdir()
    }
    assert assets and assets <= names, sorted(assets - names)
    [license_file] = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
    assert zipfile.ZipFile(wheel).read(license_file) == (ROOT / "LICENSE").read_bytes()


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


def _under(path: str, mounts: list[str]) -> bool:
    return any(path == m or path.startswith(m.rstrip("/") + "/") for m in mounts)


def test_compose_mounts_the_files_its_settings_name() -> None:
    """TLS to NATS for every process (the hub wants it); each agent its country's sealing
    keys, the controller the public keys; all read-only, from what deploy's commands write."""
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    for name, service in services.items():
        if service.get("image") != IMAGE or name == "migrate":
            continue
        env = service["environment"]
        assert env["NATS_TLS_CA_FILE"] and env["NATS_URL"], name
        volumes = [v.split(":") for v in service["volumes"]]
        assert all(v[2:] == ["ro"] for v in volumes), name
        for setting in FILE_SETTINGS:
            if setting in env:
                assert _under(env[setting], [v[1] for v in volumes]), (name, setting)
        if service["command"][0] == "agent":
            cc = env["AGENT_COUNTRY"]
            assert [f"./seal/agent-{cc}.keys", env["AGENT_SEAL_KEYS_FILE"]] in [
                v[:2] for v in volumes
            ]
        else:
            assert ["./seal/public", env["SEAL_PUBLIC_KEYS_DIR"]] in [v[:2] for v in volumes]


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
    agent_port = load(AgentSettings, {}, agent_country="DE").metrics.agent_metrics_port
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
    for path in sorted((DEPLOY / "k8s").rglob("*.yaml")):
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


def test_the_kubernetes_ingress_bounds_each_client_and_reaches_the_api() -> None:
    """deploy/k8s/ingress.yaml: ingress-nginx's per-address connection cap, the reports' body
    limit, the body taken whole before the controller sees it; routed to the API's Service."""
    docs = k8s_documents()
    [ingress] = [d for d in docs if d["kind"] == "Ingress"]
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    bounds = ingress["metadata"]["annotations"]
    api = ApiSettings()
    assert bounds["nginx.ingress.kubernetes.io/limit-connections"] == str(
        api.api_max_connections_per_address
    )
    rps = int(bounds["nginx.ingress.kubernetes.io/limit-rps"])
    assert rps == api.api_requests_per_second_per_address
    burst = rps * int(bounds["nginx.ingress.kubernetes.io/limit-burst-multiplier"])
    assert burst == api.api_request_burst_per_address
    assert bounds["nginx.ingress.kubernetes.io/proxy-body-size"] == "10m"
    assert bounds["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "on"
    assert bounds["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "60"
    assert bounds["nginx.ingress.kubernetes.io/proxy-send-timeout"] == "60"
    [rule] = ingress["spec"]["rules"]
    [path] = rule["http"]["paths"]
    backend = path["backend"]["service"]
    ports = [p["name"] for p in services[backend["name"]]["spec"]["ports"]]
    assert backend["port"]["name"] in ports


def test_operating_md_names_each_bound_the_ingress_carries() -> None:
    """docs/operating.md's table of the ingress's settings lists every annotation the shipped
    Ingress carries, with its value, and the ConfigMap settings its comments ask for."""
    [ingress] = [d for d in k8s_documents() if d["kind"] == "Ingress"]
    text = (DEPLOY.parent / "docs" / "operating.md").read_text()
    section = text[text.index("### The Kubernetes ingress") :]
    rows = {
        cells[0].strip("` "): cells[2].strip()
        for line in section.splitlines()
        if line.startswith("| `") and len(cells := line.strip("|").split("|")) >= 4
    }
    for name, value in ingress["metadata"]["annotations"].items():
        assert rows.get(name) == value, f"{name}: {value} in the manifest, {rows.get(name)} in docs"
    manifest = (DEPLOY / "k8s" / "ingress.yaml").read_text()
    for name in ("client-header-timeout", "client-body-timeout", "limit-req-status-code"):
        assert re.search(rf'^#\s+{name}: "{rows[name]}"', manifest, re.M), name


def test_kubernetes_mounts_the_files_its_settings_name() -> None:
    docs = k8s_documents()
    configmaps = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}
    for deployment in (d for d in docs if d["kind"] == "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        volumes = {v["name"] for v in pod.get("volumes", [])}
        scratch = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
        for container in pod["containers"]:
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            for source in container.get("envFrom", []):
                env.update(configmaps[source["configMapRef"]["name"]])
            mounts = container.get("volumeMounts", [])
            assert {m["name"] for m in mounts} <= volumes
            # Read-only, but for in-memory scratch (the report parsers' fork server's /tmp).
            assert all(m.get("readOnly") or m["name"] in scratch for m in mounts)
            paths = [m["mountPath"] for m in mounts]
            for setting in FILE_SETTINGS:
                if setting in env:
                    assert _under(env[setting], paths), (deployment["metadata"]["name"], setting)
            assert "NATS_TLS_CA_FILE" in env


def test_kubernetes_probes_ask_the_ports_the_processes_serve() -> None:
    """Agents: /health and /ready on AGENT_METRICS_PORT's default (9464); the controller:
    on API_PORT as its ConfigMap sets it."""
    docs = k8s_documents()
    configmaps = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    agent_port = load(AgentSettings, {}, agent_country="DE").metrics.agent_metrics_port
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


def systemd_env(unit: str, instance: str, env_file: str, etc: Path) -> dict[str, str]:
    """The environment systemd gives an instance: Environment= lines, then the file's values,
    which win; /etc/mailprobe/ is `etc`."""
    text = (DEPLOY / "systemd" / unit).read_text().replace("%i", instance)
    env = dict(re.findall(r"^Environment=(\w+)=(.*)$", text, re.M))
    env.update(re.findall(r"^(\w+)=(.*)$", env_file, re.M))
    return {k: v.replace("/etc/mailprobe/", f"{etc}/") for k, v in env.items()}


def etc_mailprobe(folder: Path) -> Path:
    """What the units' comments say goes to /etc/mailprobe/: the CA, DE's keys, public keys."""
    certs = ["--hosts", "nats", "--ca-dir", str(folder / "pki"), "--out", str(folder / "tls")]
    assert make_certs.main(certs) == 0
    mint = ["DE", "--conf", str(folder / "agents.conf"), "--seal-dir", str(folder / "seal")]
    mint += ["--env", str(folder / ".env")]
    assert mint_country.main(mint) == 0
    return folder


def test_systemd_runs_several_agents_of_one_country_on_one_host(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`@DE` takes its country from the instance name; `@DE-1` from its env file, with a
    metrics port of its own (the example file's) and DE's sealing keys."""
    etc = etc_mailprobe(tmp_path)
    unit = "mailprobe-agent@.service"
    plain = systemd_env(unit, "DE", "NATS_URL=tls://agent-DE:x@nats:4222\n", etc)
    first = load(AgentSettings, plain)
    example = (DEPLOY / "systemd" / "agent-DE-1.env.example").read_text()
    # As shipped, the example's placeholder password is refused; minted, it runs.
    with pytest.raises(SettingsError, match="NATS_URL holds a template's placeholder"):
        load(AgentSettings, systemd_env(unit, "DE-1", example, etc))
    example = example.replace("CHANGE-ME", "a-minted-password")
    second = load(AgentSettings, systemd_env(unit, "DE-1", example, etc))
    assert (first.identity.agent_country, second.identity.agent_country) == ("DE", "DE")
    assert first.metrics.agent_metrics_port != second.metrics.agent_metrics_port
    for env in (plain, systemd_env(unit, "DE-1", example, etc)):
        assert env["AGENT_SEAL_KEYS_FILE"] == f"{etc}/seal/agent-DE.keys"
        assert Path(env["NATS_TLS_CA_FILE"]).is_file()
    controller = systemd_env(
        "mailprobe-controller.service", "", "DATABASE_URL=postgresql://u@h/d\n", etc
    )
    assert Path(controller["SEAL_PUBLIC_KEYS_DIR"], "DE.pub").is_file()
    load(ControllerSettings, controller)


def nats_test(conf: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [embedded.nats_server_binary(), "-t", "-c", str(conf)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **env},
    )


def shipped(folder: Path, name: str) -> Path:
    """deploy/nats/`name` in `folder`, reading its certificates from `folder`/tls/ (made there
    by make_certs, as an operator would)."""
    text = (DEPLOY / "nats" / name).read_text()
    assert "/etc/nats/tls/" in text
    (folder / name).write_text(text.replace("/etc/nats/tls/", f"{folder}/tls/"))
    if not (folder / "tls" / "server.pem").exists():
        args = [
            "--hosts",
            "localhost",
            "--ca-dir",
            str(folder / "pki"),
            "--out",
            str(folder / "tls"),
        ]
        assert make_certs.main(args) == 0
    return folder / name


def test_nats_configs_are_valid_with_tls_on_and_monitoring_on_loopback(tmp_path: Path) -> None:
    for name in ("hub.conf", "leaf.conf"):
        text = (DEPLOY / "nats" / name).read_text()
        assert "\nhttp: 127.0.0.1:8222\n" in text and "http_port" not in text, name
        assert re.search(r"^tls \{\n  cert_file: .+\n  key_file: .+\n", text, re.M), name
        assert 'include "agents.conf"' in text
    hub_text = (DEPLOY / "nats" / "hub.conf").read_text()
    assert re.search(r"^leafnodes \{\n  listen: .+\n  tls \{\n", hub_text, re.M)
    # agents.conf is mint_country's (never committed): as `--refresh` writes it with no user.
    assert mint_country.main(["--refresh", "--conf", str(tmp_path / "agents.conf")]) == 0
    hub = nats_test(shipped(tmp_path, "hub.conf"))
    assert hub.returncode == 0, hub.stderr
    text = (tmp_path / "agents.conf").read_text()
    assert render_users_conf(parse_users_conf(text).values()) == text


def test_make_certs_makes_a_ca_once_and_server_certificates_a_client_verifies(
    tmp_path: Path,
) -> None:
    """The CA is made on the first run and reused; keys are the owner's only; the server
    certificate names the hosts given and chains to the CA clients get as ca.pem."""
    import ssl

    from cryptography import x509

    pki, out = tmp_path / "pki", tmp_path / "tls"
    args = ["--ca-dir", str(pki), "--out", str(out)]
    assert make_certs.main(["--hosts", "nats,127.0.0.1", *args]) == 0
    ca = (pki / "ca.pem").read_bytes()
    assert (
        make_certs.main(["--hosts", "leaf-eu.example.net", *args, "--out", str(tmp_path / "l")])
        == 0
    )
    assert (pki / "ca.pem").read_bytes() == ca == (tmp_path / "l" / "ca.pem").read_bytes()
    for key in (pki / "ca.key", out / "server.key"):
        assert key.stat().st_mode & 0o777 == 0o600, key
    cert = x509.load_pem_x509_certificate((out / "server.pem").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["nats"]
    assert [str(a) for a in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    context = ssl.create_default_context(cafile=str(out / "ca.pem"))
    context.load_cert_chain(out / "server.pem", out / "server.key")  # key and cert belong together
    assert make_certs.main(["--hosts", " ", *args]) == 2


def test_mint_country_writes_a_config_the_server_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = tmp_path / "agents.conf"
    conf.write_text(render_users_conf([]))
    seal = tmp_path / "seal"
    url = "tls://nats-a:4222,tls://nats-b:4222"
    env_file = tmp_path / ".env"
    common = ["--conf", str(conf), "--seal-dir", str(seal), "--env", str(env_file)]
    for name in ("DE", "controller", "us", "subscriber"):
        assert mint_country.main([name, *common, "--nats-url", url]) == 0
    out = capsys.readouterr().out
    users = parse_users_conf(conf.read_text())
    assert list(users) == ["controller", "agent-DE", "agent-US", "subscriber"]  # by account
    assert all(u.password_hash.startswith("$2") and u.minted for u in users.values())
    urls = dict(re.findall(r"^(\w+_NATS_URL)=(.+)$", env_file.read_text(), re.M))
    assert set(urls) == {
        "AGENT_DE_NATS_URL", "CONTROLLER_NATS_URL", "AGENT_US_NATS_URL", "SUBSCRIBER_NATS_URL"
    }  # fmt: skip
    assert re.fullmatch(
        r"tls://agent-DE:[\w-]{40,}@nats-a:4222,tls://agent-DE:[\w-]+@nats-b:4222",
        urls["AGENT_DE_NATS_URL"],
    )
    assert not any(u.split(":")[2].split("@")[0] in out for u in urls.values())  # not printed
    assert "AGENT_COUNTRY=DE" in out
    assert "AGENT_SEAL_KEYS_FILE=/etc/mailprobe/seal/agent-DE.keys" in out
    # The subscriber may create no consumer: it is told what it may do instead.
    assert "consumer" not in out.split("# subscriber:")[1].replace("no consumers", "")
    assert "core subscription" in out and "message get" in out
    # Each country in an account of its own, the others' accounts importing nothing of it.
    text = conf.read_text()
    for account in ("MAILPROBE", "AGENT_DE", "AGENT_US", "SUBSCRIBER"):
        assert f"\n  {account} {{\n" in text
    assert text.count('{ service: "mon.results.DE.>", accounts: [AGENT_DE] }') == 1

    assert mint_country.main(["DE", *common]) == 2  # exists: needs --rotate
    assert "pass --rotate" in capsys.readouterr().err
    before = users["agent-DE"].password_hash
    assert mint_country.main(["DE", *common, "--rotate"]) == 0
    assert parse_users_conf(conf.read_text())["agent-DE"].password_hash != before
    assert mint_country.main(["Germany", *common]) == 2
    assert mint_country.main(["--refresh", *common]) == 0

    checked = nats_test(shipped(tmp_path, "hub.conf"))
    assert checked.returncode == 0, checked.stderr


def test_mint_country_makes_and_rotates_a_countrys_sealing_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The agents' file (mode 0600) opens what the controllers' CC.pub seals; a rotation puts a
    new key first and keeps the previous one (jobs sealed before it still open), at most two."""
    seal = tmp_path / "seal"
    common = ["--conf", str(tmp_path / "agents.conf"), "--seal-dir", str(seal)]
    common += ["--env", str(tmp_path / ".env")]
    assert mint_country.main(["FR", *common]) == 0
    private, public = seal / "agent-FR.keys", seal / "public" / "FR.pub"
    assert private.stat().st_mode & 0o777 == 0o600
    assert (seal.stat().st_mode & 0o777, public.stat().st_mode & 0o077) == (0o700, 0o044)
    keys = private.read_text().splitlines()
    first = SealingKey.parse(public.read_text())
    assert len(keys) == 1 and OpeningKeys(keys).open(first.seal(b"pw"), first.id) == b"pw"
    assert keys[0] not in capsys.readouterr().out  # the private key is never printed

    hash_before = parse_users_conf((tmp_path / "agents.conf").read_text())["agent-FR"]
    for _ in range(2):
        assert mint_country.main(["FR", *common, "--rotate-seal-key"]) == 0
    after = private.read_text().splitlines()
    current = SealingKey.parse(public.read_text())
    assert len(after) == 2 and keys[0] not in after  # the first one is gone after two rotations
    assert OpeningKeys(after[:1]).ids == {current.id} and len(OpeningKeys(after).ids) == 2
    assert current.id != first.id
    assert parse_users_conf((tmp_path / "agents.conf").read_text())["agent-FR"] == hash_before
    assert "NATS_URL" not in capsys.readouterr().out  # the password stayed: nothing to say

    # A country minted before sealing existed gets its key pair, keeping its password.
    private.unlink()
    public.unlink()
    assert mint_country.main(["FR", *common]) == 0
    assert len(private.read_text().splitlines()) == 1 and public.exists()
    assert mint_country.main(["controller", *common, "--rotate-seal-key"]) == 2


def test_mint_country_mints_leaf_logins_and_the_leafs_own_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = tmp_path / "agents.conf"
    conf.write_text(render_users_conf([]))
    common = ["--conf", str(conf), "--seal-dir", str(tmp_path / "seal")]
    common += ["--env", str(tmp_path / ".env")]
    assert mint_country.main(["leaf-eu", *common]) == 2
    assert "--countries DE,FR" in capsys.readouterr().err
    assert mint_country.main(["DE", "--countries", "DE", *common]) == 2
    assert "leaf-REGION servers only" in capsys.readouterr().err
    assert mint_country.main(["DE", *common]) == 0
    capsys.readouterr()

    url = "nats-leaf://hub.example.net:7422"
    args = [*common, "--hub-leaf-url", url]
    assert mint_country.main(["leaf-eu", "--countries", "fr,de", *args]) == 0
    leaf_env = tmp_path / "leaf-eu" / "leaf.env"
    assert leaf_env.stat().st_mode & 0o777 == 0o600
    out, written = capsys.readouterr().out, leaf_env.read_text()
    for cc in ("DE", "FR"):
        login = re.search(
            rf"^NATS_HUB_LEAF_URL_{cc}=nats-leaf://leaf-eu-{cc}:([\w-]{{40,}})@hub.example.net:7422$",
            written,
            re.M,
        )
        assert login is not None and login[1] not in out
    assert "NATS_SERVER_NAME=leaf-eu-1" in written
    users = parse_users_conf(conf.read_text())
    assert {"leaf-eu-DE", "leaf-eu-FR"} <= set(users)
    leaf_text = (tmp_path / "leaf-eu" / "agents.conf").read_text()
    accounts = re.findall(r"^  (\w+) \{$", leaf_text, re.M)
    assert accounts == ["AGENT_DE", "AGENT_FR"]  # no JetStream, no imports: only the agents
    assert "imports" not in leaf_text
    assert users["agent-DE"].password_hash in leaf_text  # the agents log in there alike

    assert mint_country.main(["leaf-eu", "--countries", "DE,NL", *args]) == 0
    out, again = capsys.readouterr().out, leaf_env.read_text()
    assert "wrote NATS_HUB_LEAF_URL_NL;" in out  # DE's login is kept, and its line; FR's goes
    de = re.search(r"^NATS_HUB_LEAF_URL_DE=.+$", written, re.M)
    assert de is not None and de[0] in again.splitlines()
    assert "NATS_HUB_LEAF_URL_FR" not in again and "NATS_HUB_LEAF_URL_NL=" in again
    changed = parse_users_conf(conf.read_text())
    leaf_text = (tmp_path / "leaf-eu" / "agents.conf").read_text()
    assert "leaf-eu-FR" not in changed and "AGENT_FR" not in leaf_text
    assert changed["leaf-eu-DE"].password_hash == users["leaf-eu-DE"].password_hash

    (tmp_path / "leaf").mkdir()
    tls = f"{tmp_path}/leaf/tls/"
    (tmp_path / "leaf" / "agents.conf").write_text(leaf_text.replace("/etc/nats/tls/", tls))
    leaf_urls = {f"NATS_HUB_LEAF_URL_{cc}": "nats-leaf://u:p@hub:7422" for cc in ("DE", "NL")}
    checked = nats_test(
        shipped(tmp_path / "leaf", "leaf.conf"), NATS_SERVER_NAME="leaf-eu-1", **leaf_urls
    )
    assert checked.returncode == 0, checked.stderr
    checked = nats_test(shipped(tmp_path, "hub.conf"))
    assert checked.returncode == 0, checked.stderr


# The single-account agents.conf earlier versions wrote (permissions cut short).
LEGACY_AGENTS_CONF = """\
users: [
# BEGIN controller
{
  # minted 2026-01-01T00:00:00Z
  user: "controller"
  password: "$2b$04$aaaaaaaaaaaaaaaaaaaaauXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
  permissions: { publish: { allow: [ "$KV.agents.>" ] } }
}
# END controller
# BEGIN agent-DE
{
  user: "agent-DE"
  password: "$2b$04$bbbbbbbbbbbbbbbbbbbbbuXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
}
# END agent-DE
# BEGIN leaf-eu
{
  # countries DE
  user: "leaf-eu"
  password: "$2b$04$cccccccccccccccccccccuXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
}
# END leaf-eu
]
"""


def test_refresh_turns_an_earlier_single_account_file_into_accounts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Users keep their passwords, each lands in its account with today's permissions; the
    old one-login-for-several-countries leaf user is dropped, saying how to mint its logins."""
    conf = tmp_path / "agents.conf"
    conf.write_text(LEGACY_AGENTS_CONF)
    assert mint_country.main(["--refresh", "--conf", str(conf)]) == 0
    assert "dropped the leaf user leaf-eu" in capsys.readouterr().err
    users = parse_users_conf(conf.read_text())
    assert [(u.user, u.password_hash[7:12]) for u in users.values()] == [
        ("controller", "aaaaa"),
        ("agent-DE", "bbbbb"),
    ]
    assert users["controller"].minted == "2026-01-01T00:00:00Z"
    assert "$KV.agents" not in conf.read_text() and "\n  AGENT_DE {\n" in conf.read_text()
    checked = nats_test(shipped(tmp_path, "hub.conf"))
    assert checked.returncode == 0, checked.stderr
