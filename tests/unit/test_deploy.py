"""Deployment files: generated from cleave.toml, committed, and valid for the tools that read them.

Offline: the kustomize overlays are built by the real kustomize inside kubectl (`kubectl
kustomize`, no cluster needed) and checked by kubernetes-validate --strict; compose.yaml is
checked against the Compose Specification's JSON schema (vendored, see tests/schemas/README.md).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from cleave.config import load_config
from cleave.deploy.render import render
from cleave.deploy.system import System
from cleave.runtime import load_services
from tests.conftest import clean_environment, require, run_cleave

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
TOPOLOGIES = ("monolith", "split", "payments-out", "kafka", "aws")
KUBERNETES_VERSION = "1.32.0"


def cleave(*args: str, cwd: Path = ROOT, **extra: str) -> subprocess.CompletedProcess[str]:
    return run_cleave(*args, cwd=cwd, env={**clean_environment(), **extra})


def kustomize(overlay: str, deploy: Path = DEPLOY) -> list[dict[str, Any]]:
    require(
        shutil.which("kubectl") is not None,
        "kubectl (whose built-in kustomize builds the overlays) is not installed",
    )
    built = subprocess.run(
        ["kubectl", "kustomize", str(deploy / "k8s" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [document for document in yaml.safe_load_all(built.stdout) if document]


def by_kind(documents: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in documents if doc["kind"] == kind}


def test_the_committed_files_are_what_cleave_toml_generates() -> None:
    result = cleave("deploy", "check", CLEAVE_DATABASE="postgresql://elsewhere/{service}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "15 deployment files match cleave.toml"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the project's configuration and deployment files, to change freely."""
    for name in ("cleave.toml", "Dockerfile", ".dockerignore"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(DEPLOY, tmp_path / "deploy")
    return tmp_path


def test_a_change_to_cleave_toml_is_drift_until_rendered(project: Path) -> None:
    toml = project / "cleave.toml"
    toml.write_text(
        toml.read_text().replace(
            'core = ["identity", "catalog", "customer", "ordering", "storefront"], '
            'payments = ["payment"]',
            'core = ["identity", "catalog", "customer", "storefront"], '
            'orders = ["ordering", "payment"]',
        )
    )
    (project / "deploy" / "k8s" / "overlays" / "gone").mkdir()
    (project / "deploy" / "k8s" / "overlays" / "gone" / "kustomization.yaml").write_text("{}")

    drifted = cleave("deploy", "check", cwd=project)
    assert drifted.returncode == 1
    assert drifted.stdout == ""
    assert drifted.stderr.strip() == (
        "error: 4 deployment file(s) drifted from cleave.toml: "
        "deploy/k8s/base/cleave.toml (differs), "
        "deploy/k8s/overlays/payments-out/kustomization.yaml (differs), "
        "deploy/k8s/overlays/payments-out/resources.yaml (differs), "
        "deploy/k8s/overlays/gone/kustomization.yaml (not generated); run `cleave deploy render`"
    )

    rendered = cleave("deploy", "render", cwd=project)
    assert rendered.returncode == 0, rendered.stderr
    assert "removed deploy/k8s/overlays/gone/kustomization.yaml" in rendered.stdout
    assert cleave("deploy", "check", cwd=project).returncode == 0
    resources = list(
        yaml.safe_load_all(
            (project / "deploy/k8s/overlays/payments-out/resources.yaml").read_text()
        )
    )
    assert {"core", "orders"} <= set(by_kind(resources, "Deployment"))


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_each_overlay_builds_and_passes_strict_kubernetes_validation(topology: str) -> None:
    documents = kustomize(topology)
    for document in documents:
        try:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{document['kind']}/{document['metadata']['name']}: {error.message}")
    config = load_config(ROOT / "cleave.toml", topology=topology)
    units = set(config.topology.units)
    assert set(by_kind(documents, "Deployment")) == units
    assert set(by_kind(documents, "Service")) == units
    assert set(by_kind(documents, "PodDisruptionBudget")) == units
    # A unit with a background worker (ordering's saga runner, payment's settling of captures
    # in doubt) stays single; every other unit may scale.
    workers = {name for name, service in load_services(config).items() if service.workers}
    scalable = {unit for unit in units if not workers & set(config.topology.units[unit])}
    assert set(by_kind(documents, "HorizontalPodAutoscaler")) == scalable


def test_a_unit_deployment_runs_its_unit_as_a_non_root_user_with_probes_and_secrets() -> None:
    documents = kustomize("payments-out")
    config_maps = by_kind(documents, "ConfigMap")
    toml_map = next(m for name, m in config_maps.items() if name.startswith("cleave-config-"))
    assert toml_map["data"]["cleave.toml"] == (ROOT / "cleave.toml").read_text()
    env_map = next(m for name, m in config_maps.items() if name.startswith("cleave-env-"))
    assert env_map["data"]["CLEAVE_TOPOLOGY"] == "payments-out"
    assert env_map["data"]["CLEAVE_ADDRESS_PAYMENTS"] == "payments:8002:9002"

    core = by_kind(documents, "Deployment")["core"]["spec"]["template"]["spec"]
    assert core["securityContext"]["runAsNonRoot"] is True
    (container,) = core["containers"]
    assert container["image"] == "cleave:0.1.0"
    assert container["args"][0] == "core"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    secrets = {
        item["name"]: item["valueFrom"]["secretKeyRef"]
        for item in container["env"]
        if "valueFrom" in item
    }
    assert secrets == {
        "CLEAVE_DATABASE_IDENTITY": {"name": "cleave-databases", "key": "identity"},
        "CLEAVE_DATABASE_CATALOG": {"name": "cleave-databases", "key": "catalog"},
        "CLEAVE_DATABASE_CUSTOMER": {"name": "cleave-databases", "key": "customer"},
        "CLEAVE_DATABASE_ORDERING": {"name": "cleave-databases", "key": "ordering"},
        "CLEAVE_DATABASE_STOREFRONT": {"name": "cleave-databases", "key": "storefront"},
        "CLEAVE_BROKER": {"name": "cleave-broker", "key": "url"},
        # The provider's unit registers every unit's client, so it holds every unit's secret.
        "CLEAVE_CLIENT_SECRET_UNIT_CORE": {"name": "cleave-unit-clients", "key": "unit-core"},
        "CLEAVE_CLIENT_SECRET_UNIT_PAYMENTS": {
            "name": "cleave-unit-clients",
            "key": "unit-payments",
        },
    }
    payments = by_kind(documents, "Deployment")["payments"]["spec"]["template"]["spec"]
    own = [item["name"] for item in payments["containers"][0]["env"] if "SECRET" in item["name"]]
    assert own == ["CLEAVE_CLIENT_SECRET_UNIT_PAYMENTS"]  # its own secret, no other unit's
    # The site's pages own every path the API does not: the storefront's unit serves them.
    ingress = by_kind(documents, "Ingress")["shop"]["spec"]["rules"][0]["http"]["paths"]
    routes = {p["path"]: p["backend"]["service"]["name"] for p in ingress}
    assert (routes["/"], routes["/api/payment"], routes["/api/ordering"]) == (
        "core",
        "payments",
        "core",
    )
    assert container["envFrom"] == [{"configMapRef": {"name": env_map["metadata"]["name"]}}]
    ports = {p["name"]: p["port"] for p in by_kind(documents, "Service")["core"]["spec"]["ports"]}
    assert ports == {"http": 8001, "grpc": 9001}
    # /metrics on a port of its own (unit N's: metrics_port + N), which Prometheus is told of;
    # the Service, which the Ingress and other units reach, does not carry it.
    pod = by_kind(documents, "Deployment")["core"]["spec"]["template"]
    container_ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container_ports == {"http": 8001, "grpc": 9001, "metrics": 9465}
    assert pod["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9465",
        "prometheus.io/path": "/metrics",
    }
    assert "CLEAVE_GRPC_TLS" not in {item["name"] for item in container["env"]}  # TLS is off


def test_with_grpc_tls_each_unit_mounts_only_its_own_certificate_and_key(project: Path) -> None:
    toml = project / "cleave.toml"
    toml.write_text(
        toml.read_text().replace(
            "[topology.split]\n", '[topology.split]\ngrpc_tls = "{var}/certs"\n', 1
        )
    )
    assert cleave("deploy", "render", cwd=project).returncode == 0
    documents = kustomize("split", project / "deploy")
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    for unit, deployment in by_kind(documents, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert {"name": "CLEAVE_GRPC_TLS", "value": "/etc/cleave/grpc-tls"} in container["env"]
        mount = next(m for m in container["volumeMounts"] if m["name"] == "grpc-tls")
        assert (mount["mountPath"], mount["readOnly"]) == ("/etc/cleave/grpc-tls", True)
        volume = next(v for v in pod["volumes"] if v["name"] == "grpc-tls")["secret"]
        assert volume["secretName"] == f"{unit}-grpc-tls"
        assert [item["key"] for item in volume["items"]] == ["ca.pem", f"{unit}.pem", f"{unit}.key"]

    # The Secrets those volumes name, from the folder `cleave certs` writes.
    certs = project / "certs"
    made = cleave("certs", "-t", "split", "--out", str(certs), cwd=project)
    assert made.returncode == 0, made.stderr
    printed = cleave("deploy", "secrets", "-t", "split", "--grpc-tls", str(certs), cwd=project)
    assert printed.returncode == 0, printed.stderr
    secrets = by_kind(list(yaml.safe_load_all(printed.stdout)), "Secret")
    assert set(secrets) == {"cleave-unit-clients"} | {
        f"{u}-grpc-tls" for u in by_kind(documents, "Deployment")
    }
    ordering = secrets["ordering-grpc-tls"]["stringData"]
    assert set(ordering) == {"ca.pem", "ordering.pem", "ordering.key"}
    assert ordering["ordering.key"] == (certs / "ordering.key").read_text()
    (certs / "payment.key").unlink()
    missing = cleave("deploy", "secrets", "-t", "split", "--grpc-tls", str(certs), cwd=project)
    assert missing.returncode != 0
    assert missing.stderr.strip().startswith("error: gRPC TLS: cannot read")
    assert "payment.key" in missing.stderr


def test_compose_runs_the_split_topology_and_matches_the_compose_specification() -> None:
    schema = json.loads((ROOT / "tests" / "schemas" / "compose-spec.json").read_text())
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    errors = [
        error.message for error in jsonschema.Draft201909Validator(schema).iter_errors(compose)
    ]
    assert errors == []

    split = load_config(ROOT / "cleave.toml", topology="split").topology
    services = compose["services"]
    assert set(services) == {"postgres", "rabbitmq", "jaeger", "migrate", *split.units}
    for unit in split.units:
        port = split.address_of(unit).http_port
        assert f"http://127.0.0.1:{port}/readyz" in services[unit]["healthcheck"]["test"][-1]
        assert services[unit]["command"][0] == unit
        assert services[unit]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"
        # A unit's container holds its own services' database URLs and no other.
        own = {f"CLEAVE_DATABASE_{s.upper()}" for s in split.units[unit]}
        assert {k for k in services[unit]["environment"] if k.startswith("CLEAVE_DATABASE")} == own
        secrets = {k for k in services[unit]["environment"] if k.startswith("CLEAVE_CLIENT_")}
        everyone = {f"CLEAVE_CLIENT_SECRET_UNIT_{u.upper()}" for u in split.units}
        assert secrets == (
            everyone if unit == "identity" else {f"CLEAVE_CLIENT_SECRET_UNIT_{unit.upper()}"}
        )


def test_the_files_follow_whatever_services_cleave_toml_lists(tmp_path: Path) -> None:
    toml = tmp_path / "cleave.toml"
    toml.write_text(
        """
[system]
name = "bank"
[services]
identity = "x:identity"
ledger = "x:ledger"
[topology.split]
units = "one-per-service"
broker = "nats://127.0.0.1:4222"
database = "postgresql+asyncpg://bank_{service}@127.0.0.1:5432/bank_{service}"
"""
    )
    system = System(load_config(toml), toml.read_text(), frozenset({"ledger"}), "2.0.0")
    files = render(system)
    compose = yaml.safe_load(files["deploy/compose.yaml"])
    assert set(compose["services"]) == {
        "postgres",
        "nats",
        "jaeger",
        "migrate",
        "identity",
        "ledger",
    }
    assert compose["services"]["identity"]["environment"]["CLEAVE_DATABASE_IDENTITY"].startswith(
        "postgresql+asyncpg://bank_identity:${CLEAVE_DB_PASSWORD_IDENTITY:-identity-dev}@postgres"
    )
    resources = list(yaml.safe_load_all(files["deploy/k8s/overlays/split/resources.yaml"]))
    assert set(by_kind(resources, "HorizontalPodAutoscaler")) == {"identity"}
    assert by_kind(resources, "Deployment")["ledger"]["spec"]["replicas"] == 1
    ingress = by_kind(resources, "Ingress")["bank"]["spec"]["rules"][0]["http"]["paths"]
    assert [(p["path"], p["backend"]["service"]["name"]) for p in ingress] == [
        ("/api/identity", "identity"),
        ("/api/ledger", "ledger"),
    ]


def test_the_dockerfile_builds_one_non_root_image_that_runs_a_unit() -> None:
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    assert "FROM python:3.11-slim" in lines
    assert "RUN pip install --require-hashes -r requirements.lock" in lines
    assert lines[-2:] == ["USER 10001:10001", 'ENTRYPOINT ["cleave", "run"]']
