"""deploy/k8s carries compose.ha.yaml's topology (issue 57): three NATS nodes from the shipped
hub-cluster.conf routed to each other, PostgreSQL as a primary and a synchronous standby (a
CloudNativePG Cluster), two controller replicas on every node's URL and on the multi-host
DATABASE_URL, agents on every node's URL. No Kubernetes here (and no schema validator among
the installable tools): every manifest is parsed and every cross-reference followed — Services
named in URLs exist with those ports, selectors find their pods, mounts find their volumes,
volumes the keys of the files they are made from, the configuration's own paths and ports
are the ones mounted and exposed."""

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from controller.db.pool import Hosts
from controller.settings import ControllerSettings
from shared.settings import load
from tests.deploy.test_deploy_files import DEPLOY, k8s_documents

NATS = DEPLOY / "nats"


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in k8s_documents() if d["kind"] == kind}


def pod_labels() -> list[dict[str, str]]:
    return [
        w["spec"]["template"]["metadata"]["labels"]
        for kind in ("Deployment", "StatefulSet")
        for w in by_kind(kind).values()
    ]


def nats_set() -> dict[str, Any]:
    return by_kind("StatefulSet")["mailprobe-nats"]


def nats_container() -> dict[str, Any]:
    [container] = nats_set()["spec"]["template"]["spec"]["containers"]
    return container  # type: ignore[no-any-return]


def conf_port(name: str, block: str | None = None) -> int:
    """The port a shipped NATS config listens on (in `block`, or at the top level)."""
    text = (NATS / name).read_text()
    if block is not None:
        text = text[text.index(f"{block} {{") :]
    found = re.search(r"^\s*listen: [\d.]+:(\d+)$", text, re.M)
    assert found, (name, block)
    return int(found.group(1))


def node_urls(url: str, scheme: str) -> list[tuple[str, int]]:
    """(host, port) of each URL of a comma-separated list, each of `scheme`."""
    out = []
    for part in url.split(","):
        split = urlsplit(part)
        assert split.scheme == scheme, part
        assert split.hostname is not None and split.port is not None, part
        out.append((split.hostname, split.port))
    return out


def every_node(port: int) -> list[tuple[str, int]]:
    sts = nats_set()
    service = sts["spec"]["serviceName"]
    name = sts["metadata"]["name"]
    return [(f"{name}-{i}.{service}", port) for i in range(sts["spec"]["replicas"])]


def test_every_manifest_parses_and_names_its_kind() -> None:
    for path in sorted((DEPLOY / "k8s").rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                assert {"apiVersion", "kind", "metadata"} <= doc.keys(), path.name
                assert re.fullmatch(r"[a-z0-9${}-]+", doc["metadata"]["name"]), path.name


def test_selectors_find_their_pods() -> None:
    """Each workload's selector its own pods; each Service and disruption budget some pods."""
    for kind in ("Deployment", "StatefulSet"):
        for name, w in by_kind(kind).items():
            labels = w["spec"]["template"]["metadata"]["labels"]
            assert w["spec"]["selector"]["matchLabels"].items() <= labels.items(), name
    for name, doc in {**by_kind("Service"), **by_kind("PodDisruptionBudget")}.items():
        selector = doc["spec"]["selector"]
        selector = selector.get("matchLabels", selector)
        assert any(selector.items() <= labels.items() for labels in pod_labels()), name


def test_three_nats_nodes_route_to_each_other_by_their_stable_names() -> None:
    sts = nats_set()
    spec = sts["spec"]
    assert spec["replicas"] == 3 and spec["podManagementPolicy"] == "Parallel"
    service = by_kind("Service")[spec["serviceName"]]
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"]
    container = nats_container()
    assert (
        container["image"]
        == yaml.safe_load((DEPLOY / "compose.ha.yaml").read_text())["x-nats-node"]["image"]
    )
    assert container["args"] == ["-c", "/etc/nats/hub-cluster.conf"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {
        "client": conf_port("hub.conf"),
        "cluster": conf_port("hub-cluster.conf", "cluster"),
        "leafnodes": conf_port("hub.conf", "leafnodes"),
    }
    assert {p["targetPort"]: p["port"] for p in service["spec"]["ports"]} == ports
    env = {e["name"]: e for e in container["env"]}
    assert env["NATS_SERVER_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    # hub-cluster.conf's routes are the variables NATS_ROUTE_1..N: each set, one per node.
    named = re.findall(r"\$(NATS_ROUTE_\d+)", (NATS / "hub-cluster.conf").read_text())
    assert len(named) == spec["replicas"]
    routes = sorted(node_urls(",".join(env[v]["value"] for v in named), "nats-route"))
    assert routes == every_node(ports["cluster"])
    anti = spec["template"]["spec"]["affinity"]["podAntiAffinity"]
    [term] = anti["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"


def test_the_nats_nodes_mount_every_file_their_configuration_names() -> None:
    """The files hub-cluster.conf includes (and those they include), its TLS files and its
    store: each under a mount, from a volume, from a key that a file of deploy/nats/ fills."""
    container = nats_container()
    pod = nats_set()["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    claims = {c["metadata"]["name"] for c in nats_set()["spec"]["volumeClaimTemplates"]}
    mounted: dict[str, str] = {}  # path in the container -> where it comes from
    for mount in container["volumeMounts"]:
        if mount["name"] in claims:
            mounted[mount["mountPath"]] = "claim"
            continue
        volume = volumes[mount["name"]]
        sources = volume.get("projected", {}).get("sources", [volume])
        for source in sources:
            ref = source.get("configMap") or source.get("secret")
            for item in ref["items"]:
                assert item["key"] == item["path"]
                mounted[f"{mount['mountPath']}/{item['path']}"] = item["key"]
    # what the operator's own commands write, never committed: the TLS files, and the accounts
    # `python -m deploy.mint_country` generates (deploy/README.md)
    made = ("server.pem", "server.key", "ca.pem", "agents.conf")
    for key in {v for v in mounted.values() if v != "claim"}:
        assert (NATS / key).exists() or key in made, key
    seen, todo = set(), ["hub-cluster.conf"]
    while todo:
        name = todo.pop()
        seen.add(name)
        assert f"/etc/nats/{name}" in mounted, name
        if name in made and not (NATS / name).exists():
            continue  # generated by the operator: mounted, nothing of the repository's to read
        text = (NATS / name).read_text()
        todo += [n for n in re.findall(r'^include "([^"]+)"', text, re.M) if n not in seen]
        for path in re.findall(r'_file: "([^"]+)"', text):
            assert path in mounted, (name, path)
        for store in re.findall(r"^\s*store_dir: (\S+)$", text, re.M):
            assert any(store.startswith(p + "/") and w == "claim" for p, w in mounted.items())
    assert seen == {"hub-cluster.conf", "hub.conf", "agents.conf"}


def test_controllers_and_agents_name_every_node_and_the_streams_are_on_all() -> None:
    client = every_node(conf_port("hub.conf"))
    secrets = {n: d["stringData"] for n, d in by_kind("Secret").items()}
    assert sorted(node_urls(secrets["mailprobe-controller"]["NATS_URL"], "tls")) == client
    assert sorted(node_urls(secrets["mailprobe-agent-de"]["NATS_URL"], "tls")) == client
    replicas = by_kind("ConfigMap")["mailprobe-controller-config"]["data"]["STREAM_REPLICAS"]
    settings = load(
        ControllerSettings, {"STREAM_REPLICAS": replicas, "DATABASE_URL": "postgresql://x"}
    )
    assert settings.streams.stream_replicas == nats_set()["spec"]["replicas"]
    controller = by_kind("Deployment")["mailprobe-controller"]
    assert controller["spec"]["replicas"] >= 2
    assert by_kind("PodDisruptionBudget")["mailprobe-controller"]["spec"]["maxUnavailable"] == 1


def test_the_controller_asks_the_database_services_for_the_writable_host() -> None:
    """DATABASE_URL names the CloudNativePG Cluster's own Services (`-rw` follows the primary,
    `-r` any instance), asks for the writable one; the Cluster is a primary and a standby with
    one synchronous copy, its application login the URL's user."""
    [cluster] = by_kind("Cluster").values()
    spec = cluster["spec"]
    assert spec["instances"] == 2
    assert spec["postgresql"]["synchronous"] == {
        "method": "any",
        "number": 1,
        "dataDurability": "required",
    }
    url = by_kind("Secret")["mailprobe-controller"]["stringData"]["DATABASE_URL"]
    hosts = Hosts(url)
    assert hosts.timeout_named
    name = cluster["metadata"]["name"]
    found = [urlsplit(u) for u in hosts.urls]
    assert [(u.hostname, u.port) for u in found] == [(f"{name}-rw", 5432), (f"{name}-r", 5432)]
    controller = by_kind("Deployment")["mailprobe-controller"]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in controller["volumes"]}
    for u in found:
        query = parse_qs(u.query)
        assert query["target_session_attrs"] == ["read-write"]
        # TLS verified for the Service's name, against the CA CloudNativePG made (its
        # certificate only: the CA's key is not mounted).
        assert query["sslmode"] == ["verify-full"]
        [rootcert] = query["sslrootcert"]
        for container in controller["initContainers"] + controller["containers"]:
            [mount] = [
                m for m in container["volumeMounts"] if rootcert.startswith(m["mountPath"] + "/")
            ]
            secret = volumes[mount["name"]]["secret"]
            assert secret["secretName"] == f"{name}-ca"
            assert secret["items"] == [
                {"key": "ca.crt", "path": rootcert.removeprefix(mount["mountPath"] + "/")}
            ]
        assert u.username == spec["bootstrap"]["initdb"]["owner"]
        assert u.path == "/" + spec["bootstrap"]["initdb"]["database"]
    login = by_kind("Secret")[spec["bootstrap"]["initdb"]["secret"]["name"]]
    assert login["type"] == "kubernetes.io/basic-auth"
    assert login["stringData"]["username"] == spec["bootstrap"]["initdb"]["owner"]
