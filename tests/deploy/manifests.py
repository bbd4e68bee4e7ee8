"""Reading the deployment files: YAML documents, kustomize renders, the pod's gateway container."""

from __future__ import annotations

import copy
import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.policy.loader import load_policy
from gateway.policy.model import Policy

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
KUSTOMIZATIONS = {
    "base": K8S / "base",
    "example": K8S / "overlays" / "example",
    "native-sidecar": K8S / "native-sidecar",
}
Manifest = dict[str, Any]


def documents(path: Path) -> list[Manifest]:
    """Every non-empty YAML document of a file."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def manifest_files() -> Iterator[Path]:
    """Every YAML file under k8s/ and deploy/prometheus/ except kustomizations."""
    for directory in (K8S, ROOT / "deploy" / "prometheus"):
        for path in sorted(directory.rglob("*.yaml")):
            if path.name != "kustomization.yaml":
                yield path


def kustomize(directory: Path) -> list[Manifest]:
    """The kustomization rendered by kustomize itself (kubectl's built-in, or the binary)."""
    return copy.deepcopy(_rendered(directory))


@functools.cache
def _rendered(directory: Path) -> list[Manifest]:
    if kubectl := shutil.which("kubectl"):
        command = [kubectl, "kustomize", str(directory)]
    elif binary := shutil.which("kustomize"):
        command = [binary, "build", str(directory)]
    else:
        pytest.skip("neither kubectl nor kustomize is installed: cannot render overlays")
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def one(manifests: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    found = [
        m
        for m in manifests
        if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_spec(deployment: Manifest) -> Manifest:
    spec: Manifest = deployment["spec"]["template"]["spec"]
    return spec


def gateway_container(deployment: Manifest) -> Manifest:
    """The container (or native sidecar initContainer) running the gateway image."""
    spec = pod_spec(deployment)
    found = [
        c
        for c in [*spec.get("containers", []), *spec.get("initContainers", [])]
        if c.get("args", [])[:1] == ["run"]
    ]
    assert len(found) == 1, "expected exactly one container running `gateway run`"
    container: Manifest = found[0]
    return container


def policy_path(container: Manifest) -> str:
    args: list[str] = container["args"]
    return args[args.index("--policy") + 1]


def load_embedded_policy(configmap: Manifest, key: str) -> Policy:
    """The ConfigMap's policy, written to a file and loaded as the gateway loads it."""
    return _load_text(configmap["data"][key], os.environ.get("GATEWAY_CRS_RULES"))


@functools.cache
def _load_text(text: str, crs_rules: str | None) -> Policy:
    # Cached: the tests load the same few policies many times.
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "policy.yaml"
        path.write_text(text)
        return load_policy(str(path)).policy


def port_of(address: str) -> int:
    return int(address.rpartition(":")[2])


def host_of(address: str) -> str:
    return address.rpartition(":")[0]
