"""The Kubernetes manifests: valid against the API schemas, and consistent with their policy."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import kubernetes_validate  # type: ignore[import-untyped]  # ships no type hints
import pytest

from tests.deploy.manifests import (
    K8S,
    KUSTOMIZATIONS,
    ROOT,
    Manifest,
    documents,
    gateway_container,
    host_of,
    kustomize,
    load_embedded_policy,
    manifest_files,
    one,
    pod_spec,
    policy_path,
    port_of,
)

# The oldest version the native-sidecar variant supports, and the newest the package knows.
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
# Custom resources of prometheus-operator: kubernetes-validate ships only the core API's schemas,
# so these are checked for the structure prometheus-operator reads (tests below), not by schema.
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule"}


def validate(manifest: Manifest, version: str) -> None:
    try:
        kubernetes_validate.validate(manifest, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        name = f"{manifest['kind']}/{manifest['metadata'].get('name')}"
        pytest.fail(f"{name} invalid for Kubernetes {version}: {exc.message} at {exc.path}")


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", list(manifest_files()), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_manifest_file_validates(path: Path, version: str) -> None:
    """Every manifest file (overlay patches included) passes the API schema in strict mode."""
    manifests = documents(path)
    assert manifests, f"{path} has no documents"
    for manifest in manifests:
        if manifest["kind"] not in CUSTOM_KINDS:
            validate(manifest, version)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name", list(KUSTOMIZATIONS))
def test_every_rendered_kustomization_validates(name: str, version: str) -> None:
    """What `kubectl apply -k` would send (patches applied) passes the API schema."""
    for manifest in kustomize(KUSTOMIZATIONS[name]):
        if manifest["kind"] not in CUSTOM_KINDS:
            validate(manifest, version)


@pytest.mark.parametrize(
    "path",
    [K8S / "base" / "configmap.yaml", K8S / "overlays" / "example" / "policy.yaml"],
    ids=["base", "example"],
)
def test_configmap_policy_passes_gateway_check(path: Path, tmp_path: Path, crs_rules: Path) -> None:
    """The policy embedded in each ConfigMap passes `gateway check` (exit 0)."""
    configmap = one(documents(path), "ConfigMap")
    target = tmp_path / "policy.yaml"
    target.write_text(configmap["data"]["policy.yaml"])
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "check", str(target)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", list(KUSTOMIZATIONS))
def test_ports_and_probes_match_the_policy(name: str, crs_rules: Path) -> None:
    """Container ports, probes, Service, scrape annotation and mount agree with the policy."""
    manifests = kustomize(KUSTOMIZATIONS[name])
    deployment = one(manifests, "Deployment", "shop")
    container = gateway_container(deployment)
    configmap = one(manifests, "ConfigMap")
    policy = load_embedded_policy(configmap, "policy.yaml")
    listen = policy.listen

    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {
        "http": port_of(listen.proxy),
        "health": port_of(listen.health),
        "metrics": port_of(listen.metrics),
    }
    # The admin port stays on the pod's loopback and is never a container port.
    assert host_of(listen.admin) == "127.0.0.1"
    assert port_of(listen.admin) not in ports.values()

    probes = {
        kind: container[f"{kind}Probe"]["httpGet"] for kind in ("startup", "liveness", "readiness")
    }
    assert {kind: (p["path"], p["port"]) for kind, p in probes.items()} == {
        "startup": ("/livez", "health"),
        "liveness": ("/livez", "health"),
        "readiness": ("/readyz", "health"),
    }

    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port_of(listen.metrics))
    assert annotations["prometheus.io/path"] == "/metrics"

    service = one(manifests, "Service", "shop")
    targets = {p["name"]: p["targetPort"] for p in service["spec"]["ports"]}
    assert targets["http"] == "http", "the Service must target the gateway, never the app"
    assert set(targets.values()) <= {"http", "metrics"}

    # Mounted as a directory (no subPath), so the kubelet's symlink swap reaches the gateway.
    mount = one_mount(container, configmap["metadata"]["name"], deployment)
    assert "subPath" not in mount
    assert str(Path(policy_path(container)).parent) == mount["mountPath"]
    assert Path(policy_path(container)).name in configmap["data"]

    # The app the policy points at listens where the policy says, on the pod's loopback.
    assert policy.upstream.url == "http://127.0.0.1:3000"
    app = one_container(deployment, "app")
    assert 'host="127.0.0.1", port=3000' in " ".join(app["command"])

    shutdown = policy.shutdown.drain + policy.shutdown.grace
    assert pod_spec(deployment)["terminationGracePeriodSeconds"] > shutdown


def one_container(deployment: Manifest, name: str) -> Manifest:
    spec = pod_spec(deployment)
    return one(
        [{**c, "kind": "container", "metadata": {"name": c["name"]}} for c in spec["containers"]],
        "container",
        name,
    )


def one_mount(container: Manifest, configmap: str, deployment: Manifest) -> Manifest:
    volumes = [
        v["name"]
        for v in pod_spec(deployment)["volumes"]
        if v.get("configMap", {}).get("name") == configmap
    ]
    assert len(volumes) == 1
    mounts = [m for m in container["volumeMounts"] if m["name"] == volumes[0]]
    assert len(mounts) == 1
    mount: Manifest = mounts[0]
    return mount


@pytest.mark.parametrize("name", list(KUSTOMIZATIONS))
def test_every_container_is_locked_down(name: str) -> None:
    """Each container runs non-root, read-only, without capabilities, with requests and limits."""
    for deployment in [m for m in kustomize(KUSTOMIZATIONS[name]) if m["kind"] == "Deployment"]:
        spec = pod_spec(deployment)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["automountServiceAccountToken"] is False
        for container in [*spec["containers"], *spec.get("initContainers", [])]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, container["name"]
            assert context["allowPrivilegeEscalation"] is False, container["name"]
            assert context["capabilities"]["drop"] == ["ALL"], container["name"]
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])
            assert "memory" in container["resources"]["limits"]


def test_native_sidecar_variant_runs_the_gateway_as_an_init_container() -> None:
    """In the native variant the gateway is an initContainer with restartPolicy Always."""
    deployment = one(kustomize(KUSTOMIZATIONS["native-sidecar"]), "Deployment", "shop")
    spec = pod_spec(deployment)
    sidecar = gateway_container(deployment)
    assert sidecar in spec["initContainers"]
    assert sidecar["restartPolicy"] == "Always"
    assert [c["name"] for c in spec["containers"]] == ["app"]
    # It stops after the app, so the app's preStop sleep of the classic variant is gone.
    assert "lifecycle" not in spec["containers"][0]


def test_example_overlay_shares_counters_in_its_redis(crs_rules: Path) -> None:
    """The example's policy stores counters in the overlay's Redis Service, on its port."""
    manifests = kustomize(KUSTOMIZATIONS["example"])
    policy = load_embedded_policy(one(manifests, "ConfigMap"), "policy.yaml")
    redis = one(manifests, "Service", "redis")
    match = re.fullmatch(r"redis://([^:/]+):(\d+)/\d+", policy.store.url)
    assert match, policy.store.url
    assert match[1] == redis["metadata"]["name"]
    assert int(match[2]) == redis["spec"]["ports"][0]["port"]
    assert one(manifests, "Deployment", "shop")["spec"]["replicas"] == policy.store.replicas
    assert all(
        m["metadata"].get("namespace") == "shop" for m in manifests if m["kind"] != "Namespace"
    )


@pytest.mark.parametrize("name", list(KUSTOMIZATIONS))
def test_selectors_reach_the_pods(name: str) -> None:
    """Service, PDB, HPA, NetworkPolicy and ServiceMonitor all select the gateway's pods."""
    manifests = kustomize(KUSTOMIZATIONS[name])
    deployment = one(manifests, "Deployment", "shop")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = one(manifests, "Service", "shop")

    def selects(selector: dict[str, str], target: dict[str, str]) -> bool:
        return all(target.get(k) == v for k, v in selector.items())

    assert selects(service["spec"]["selector"], labels)
    assert selects(one(manifests, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"], labels)
    hpa = one(manifests, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (hpa["kind"], hpa["name"]) == ("Deployment", "shop")
    network = one(manifests, "NetworkPolicy", "shop-gateway")["spec"]
    assert selects(network["podSelector"]["matchLabels"], labels)
    monitor = one(manifests, "ServiceMonitor")["spec"]
    assert selects(monitor["selector"]["matchLabels"], service["metadata"]["labels"])
    service_ports = {p["name"] for p in service["spec"]["ports"]}
    assert {e["port"] for e in monitor["endpoints"]} <= service_ports


@pytest.mark.parametrize("name", list(KUSTOMIZATIONS))
def test_network_policy_keeps_admin_and_app_ports_private(name: str, crs_rules: Path) -> None:
    """Ingress is allowed to the proxy, health and metrics ports only; never admin or the app."""
    manifests = kustomize(KUSTOMIZATIONS[name])
    container = gateway_container(one(manifests, "Deployment", "shop"))
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    policy = load_embedded_policy(one(manifests, "ConfigMap"), "policy.yaml")
    network = one(manifests, "NetworkPolicy", "shop-gateway")["spec"]
    assert network["policyTypes"] == ["Ingress"]
    allowed = {
        named.get(p["port"], p["port"]) for rule in network["ingress"] for p in rule["ports"]
    }
    assert allowed == {
        port_of(policy.listen.proxy),
        port_of(policy.listen.health),
        port_of(policy.listen.metrics),
    }
    metrics_rules = [
        r for r in network["ingress"] if any(p["port"] == "metrics" for p in r["ports"])
    ]
    assert all("from" in rule for rule in metrics_rules), "metrics must not be open to all"


def test_prometheus_rule_is_well_formed() -> None:
    """Each rule records or alerts, and each alert has a severity, a summary and a valid `for`."""
    rule = one(documents(ROOT / "deploy" / "prometheus" / "gateway-rules.yaml"), "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    rules = [r for group in rule["spec"]["groups"] for r in group["rules"]]
    alerts = [r for r in rules if "alert" in r]
    assert {a["alert"] for a in alerts} >= {
        "GatewayHighErrorRatio",
        "GatewayHighLatencyP95",
        "GatewayCircuitBreakerOpen",
        "GatewayRateLimitStoreFallback",
        "GatewayPolicyReloadFailed",
    }
    for r in rules:
        assert ("alert" in r) != ("record" in r), r
        assert r["expr"].count("(") == r["expr"].count(")"), r.get("alert") or r["record"]
        assert set(r) <= {"alert", "record", "expr", "for", "labels", "annotations"}
    for alert in alerts:
        assert alert["labels"]["severity"] in {"critical", "warning", "info"}
        assert alert["annotations"]["summary"]
        assert re.fullmatch(r"\d+[smh]", alert.get("for", "0s")), alert["alert"]
