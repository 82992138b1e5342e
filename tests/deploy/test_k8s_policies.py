"""deploy/k8s against the Kubernetes API's own schemas (kubernetes-validate, which ships them:
nothing is downloaded), and what its NetworkPolicies allow, read as Kubernetes reads them: an
agent reaches NATS, DNS and public addresses, never PostgreSQL nor the controller; the
database takes connections from the controllers and itself only. Every container runs with
no capability, no privilege escalation and the RuntimeDefault seccomp profile."""

import ipaddress
from dataclasses import dataclass, field
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]  # ships no type hints
import pytest

from tests.deploy.test_deploy_files import k8s_documents

# The oldest Kubernetes the manifests promise to work on, and the newest the validator knows.
VERSIONS = ("1.29", kubernetes_validate.latest_version())
# Custom resources, whose schemas come with their operator, not with Kubernetes.
CUSTOM = {("postgresql.cnpg.io/v1", "Cluster")}
NAMESPACE = "mailprobe"


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_is_valid_against_the_kubernetes_schemas(version: str) -> None:
    checked = 0
    for doc in k8s_documents():
        if (doc["apiVersion"], doc["kind"]) in CUSTOM:
            continue
        kubernetes_validate.validate(doc, version, strict=True)
        checked += 1
    assert checked >= 15


def test_the_validator_refuses_a_misspelt_field() -> None:
    """The check can fail: strict mode refuses a field the schema does not have."""
    [policy, *_] = [d for d in k8s_documents() if d["kind"] == "NetworkPolicy"]
    broken = {**policy, "spec": {**policy["spec"], "egres": policy["spec"]["egress"]}}
    with pytest.raises(kubernetes_validate.ValidationError, match="egres"):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)


@dataclass(frozen=True)
class Peer:
    """A pod (labels, namespace's labels) or an address outside the cluster."""

    labels: dict[str, str] = field(default_factory=dict)
    namespace: dict[str, str] = field(
        default_factory=lambda: {"kubernetes.io/metadata.name": NAMESPACE}
    )
    address: str | None = None


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, selector  # matchExpressions: not used here
    match_labels: dict[str, str] = selector.get("matchLabels", {})
    return match_labels.items() <= labels.items()


def _peer_allowed(rule_peer: dict[str, Any], peer: Peer) -> bool:
    if "ipBlock" in rule_peer:
        if peer.address is None:
            return False  # pods are addressed by selectors here, never by ipBlock
        block = rule_peer["ipBlock"]
        ip = ipaddress.ip_address(peer.address)
        net = ipaddress.ip_network(block["cidr"])
        if ip.version != net.version or ip not in net:
            return False
        return not any(ip in ipaddress.ip_network(e) for e in block.get("except", []))
    if peer.address is not None:
        return False
    if "namespaceSelector" in rule_peer:
        if not _matches(rule_peer["namespaceSelector"], peer.namespace):
            return False
    elif peer.namespace.get("kubernetes.io/metadata.name") != NAMESPACE:
        return False  # a podSelector alone: the policy's own namespace
    return _matches(rule_peer.get("podSelector", {}), peer.labels)


def _port_allowed(ports: list[dict[str, Any]] | None, port: int, protocol: str) -> bool:
    if not ports:
        return True
    return any(p.get("protocol", "TCP") == protocol and p["port"] == port for p in ports)


def allowed(direction: str, pod: dict[str, str], peer: Peer, port: int, proto: str = "TCP") -> bool:
    """Whether the NetworkPolicies let `pod` (of this namespace) send to (`Egress`) or take
    from (`Ingress`) `peer` on `port`: allowed when no policy of that type selects the pod,
    else when a rule of one that does allows it."""
    key, peers = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    policies = [
        d["spec"]
        for d in k8s_documents()
        if d["kind"] == "NetworkPolicy"
        and _matches(d["spec"]["podSelector"], pod)
        and direction in d["spec"].get("policyTypes", ["Ingress"])
    ]
    if not policies:
        return True
    return any(
        _port_allowed(rule.get("ports"), port, proto)
        and (not rule.get(peers) or any(_peer_allowed(p, peer) for p in rule[peers]))
        for spec in policies
        for rule in spec.get(key, [])
    )


def pod_labels(name: str) -> dict[str, str]:
    for d in k8s_documents():
        if d["kind"] in ("Deployment", "StatefulSet") and d["metadata"]["name"] == name:
            return d["spec"]["template"]["metadata"]["labels"]  # type: ignore[no-any-return]
    raise KeyError(name)


AGENT = "mailprobe-agent-de"
DB = {"cnpg.io/cluster": "mailprobe-db", "cnpg.io/instanceRole": "primary"}
DNS = Peer({"k8s-app": "kube-dns"}, {"kubernetes.io/metadata.name": "kube-system"})


def test_an_agent_reaches_nats_dns_and_the_internet_only() -> None:
    agent = pod_labels(AGENT)
    nats = Peer(pod_labels("mailprobe-nats"))
    assert allowed("Egress", agent, nats, 4222)
    assert not allowed("Egress", agent, nats, 8222)  # monitoring: loopback only anyway
    assert allowed("Egress", agent, DNS, 53, "UDP")
    for host, port in (("93.184.216.34", 25), ("2001:db8::25", 587), ("8.8.8.8", 993)):
        assert allowed("Egress", agent, Peer(address=host), port), host
    # The attacker's view: a tenant's monitor pointed inside, or an agent taken over.
    assert not allowed("Egress", agent, Peer(DB), 5432)
    assert not allowed("Egress", agent, Peer(pod_labels("mailprobe-controller")), 8080)
    for inside in ("10.96.0.10", "172.20.1.5", "192.168.1.1", "169.254.169.254", "fd00::1"):
        assert not allowed("Egress", agent, Peer(address=inside), 5432), inside
    assert not allowed("Egress", agent, Peer(address="169.254.169.254"), 80)  # cloud metadata
    assert not allowed("Egress", agent, Peer({"k8s-app": "kube-dns"}), 53, "UDP")  # not kube-system


def test_the_database_takes_connections_from_the_controllers_and_itself_only() -> None:
    assert allowed("Ingress", DB, Peer(pod_labels("mailprobe-controller")), 5432)
    assert allowed("Ingress", DB, Peer({"cnpg.io/cluster": "mailprobe-db"}), 5432)
    operator = Peer(
        {"app.kubernetes.io/name": "cloudnative-pg"}, {"kubernetes.io/metadata.name": "cnpg-system"}
    )
    assert allowed("Ingress", DB, operator, 8000)
    assert not allowed("Ingress", DB, Peer(pod_labels(AGENT)), 5432)
    assert not allowed("Ingress", DB, Peer(pod_labels("mailprobe-nats")), 5432)
    assert not allowed("Ingress", DB, Peer({"app": "anything"}), 5432)
    assert not allowed("Ingress", DB, Peer(address="93.184.216.34"), 5432)


def test_nats_routes_only_between_its_nodes_and_clients_reach_it() -> None:
    nats = pod_labels("mailprobe-nats")
    assert allowed("Ingress", nats, Peer(address="93.184.216.34"), 4222)
    assert allowed("Ingress", nats, Peer(nats), 6222)
    assert not allowed("Ingress", nats, Peer(pod_labels(AGENT)), 6222)
    assert not allowed("Ingress", pod_labels("mailprobe-controller"), Peer(pod_labels(AGENT)), 9465)


def test_every_container_runs_without_capabilities_and_with_runtime_default_seccomp() -> None:
    workloads = [d for d in k8s_documents() if d["kind"] in ("Deployment", "StatefulSet")]
    assert len(workloads) >= 3
    for w in workloads:
        pod = w["spec"]["template"]["spec"]
        name = w["metadata"]["name"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in pod.get("initContainers", []) + pod["containers"]:
            sc = container["securityContext"]
            assert sc["capabilities"] == {"drop": ["ALL"]}, (name, container["name"])
            assert sc["allowPrivilegeEscalation"] is False, (name, container["name"])
            assert sc["readOnlyRootFilesystem"] is True, (name, container["name"])
