"""`deploy/k8s/`: a kustomize base with the configuration, and an overlay per topology with a
Deployment, Service, PodDisruptionBudget and, for units that may run several replicas, a
HorizontalPodAutoscaler per unit."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Any

from cleave.auth.units import secret_variable
from cleave.config import Topology, UnitAddress, service_database_variable
from cleave.deploy.system import (
    ADMIN_SECRET,
    BROKER_SECRET,
    CONFIG_PATH,
    DATABASE_SECRET,
    GRPC_TLS_PATH,
    IMAGE,
    OTLP_ENDPOINT,
    UID,
    UNIT_CLIENTS_SECRET,
    VAR_PATH,
    System,
    address_value,
    address_variable,
    grpc_tls_secret,
)


def kustomize_base(system: System) -> dict[str, Any]:
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "labels": [
            {"pairs": {"app.kubernetes.io/part-of": system.config.name}, "includeSelectors": False}
        ],
        "configMapGenerator": [
            {"name": "cleave-config", "files": ["cleave.toml"]},
            {
                "name": "cleave-env",
                "literals": [
                    f"CLEAVE_CONFIG={CONFIG_PATH}",
                    f"CLEAVE_VAR={VAR_PATH}",
                    f"OTEL_EXPORTER_OTLP_ENDPOINT={OTLP_ENDPOINT}",
                ],
            },
        ],
    }


def kustomize_overlay(system: System, topology: Topology) -> dict[str, Any]:
    addresses = [
        f"{address_variable(unit)}={address_value(unit, _cluster_address(topology, unit))}"
        for unit in topology.units
    ]
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["../../base", "resources.yaml"],
        "configMapGenerator": [
            {
                "name": "cleave-env",
                "behavior": "merge",
                "literals": [f"CLEAVE_TOPOLOGY={topology.name}", *addresses],
            }
        ],
        "images": [{"name": IMAGE, "newTag": system.version}],
    }


def manifests(system: System, topology: Topology) -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = []
    for unit in topology.units:
        documents.append(_deployment(system, topology, unit))
        documents.append(_service(topology, unit))
        documents.append(_disruption_budget(system, topology, unit))
        if system.scalable(topology, unit):
            documents.append(_autoscaler(unit))
    documents.append(_ingress(system, topology))
    documents.append(_migrate_job(system))
    return documents


def _labels(unit: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": unit, "app.kubernetes.io/component": "unit"}


def _selector(unit: str) -> dict[str, Any]:
    return {"matchLabels": {"app.kubernetes.io/name": unit}}


def _cluster_address(topology: Topology, unit: str) -> UnitAddress:
    address = topology.address_of(unit)
    return UnitAddress(unit, address.http_port, address.grpc_port)


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _database_env(services: tuple[str, ...]) -> list[dict[str, Any]]:
    return [
        _secret_env(service_database_variable(service), DATABASE_SECRET, service)
        for service in services
    ]


def _broker_env(topology: Topology) -> list[dict[str, Any]]:
    if topology.broker == "memory":
        return []
    return [_secret_env("CLEAVE_BROKER", BROKER_SECRET, "url")]


def _pod_spec(
    containers: list[dict[str, Any]], *, volumes: Sequence[dict[str, Any]] = (), **extra: Any
) -> dict[str, Any]:
    return {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": UID,
            "fsGroup": UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": containers,
        "volumes": [
            {"name": "config", "configMap": {"name": "cleave-config"}},
            {"name": "var", "emptyDir": {}},
            {"name": "tmp", "emptyDir": {}},
            *volumes,
        ],
        **extra,
    }


def _container(
    name: str, env: list[dict[str, Any]], *, mounts: Sequence[dict[str, Any]] = (), **fields: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "image": IMAGE,
        **fields,
        "envFrom": [{"configMapRef": {"name": "cleave-env"}}],
        "env": env,
        "volumeMounts": [
            {
                "name": "config",
                "mountPath": str(PurePosixPath(CONFIG_PATH).parent),
                "readOnly": True,
            },
            {"name": "var", "mountPath": VAR_PATH},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108
            *mounts,
        ],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }


def _deployment(system: System, topology: Topology, unit: str) -> dict[str, Any]:
    address = topology.address_of(unit)
    members = topology.units[unit]
    env = [
        *_database_env(members),
        *_broker_env(topology),
        *(
            _secret_env(secret_variable(client), UNIT_CLIENTS_SECRET, client)
            for client in system.unit_clients_of(topology, unit)
        ),
        {"name": "OTEL_SERVICE_NAME", "value": unit},
    ]
    # gRPC over mutual TLS: the unit's own certificate and key and the CA, from its own Secret.
    tls = topology.grpc_tls is not None
    if tls:
        env.append({"name": "CLEAVE_GRPC_TLS", "value": GRPC_TLS_PATH})
    ports = [
        {"name": "http", "containerPort": address.http_port},
        {"name": "grpc", "containerPort": address.grpc_port},
    ]
    if address.metrics_port:  # /metrics on a port of its own, never the API's
        ports.append({"name": "metrics", "containerPort": address.metrics_port})
    container = _container(
        "unit",
        env,
        mounts=[{"name": "grpc-tls", "mountPath": GRPC_TLS_PATH, "readOnly": True}] if tls else [],
        args=[unit, "--host", "0.0.0.0", "--no-migrate", "--no-seed"],  # noqa: S104
        ports=ports,
        livenessProbe={
            "httpGet": {"path": "/livez", "port": "http"},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        readinessProbe={
            "httpGet": {"path": "/readyz", "port": "http"},
            "periodSeconds": 5,
            "failureThreshold": 2,
        },
        startupProbe={
            "httpGet": {"path": "/livez", "port": "http"},
            "periodSeconds": 2,
            "failureThreshold": 30,
        },
        resources={
            "requests": {"cpu": "100m", "memory": f"{128 + 32 * len(members)}Mi"},
            "limits": {"memory": f"{384 + 64 * len(members)}Mi"},
        },
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": unit, "labels": _labels(unit)},
        "spec": {
            "replicas": 2 if system.scalable(topology, unit) else 1,
            "selector": _selector(unit),
            # A unit that must stay single is replaced, not overlapped.
            "strategy": {"type": "RollingUpdate"}
            if system.scalable(topology, unit)
            else {"type": "Recreate"},
            "template": {
                "metadata": {"labels": _labels(unit), **_scrape_annotations(address)},
                "spec": _pod_spec([container], volumes=_tls_volumes(unit) if tls else []),
            },
        },
    }


def _scrape_annotations(address: UnitAddress) -> dict[str, Any]:
    """Where Prometheus finds the unit's metrics (the annotations its usual scrape config reads)."""
    if not address.metrics_port:
        return {}
    return {
        "annotations": {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(address.metrics_port),
            "prometheus.io/path": "/metrics",
        }
    }


def _tls_volumes(unit: str) -> list[dict[str, Any]]:
    files = ("ca.pem", f"{unit}.pem", f"{unit}.key")
    return [
        {
            "name": "grpc-tls",
            "secret": {
                "secretName": grpc_tls_secret(unit),
                "defaultMode": 0o440,  # the key readable by the unit's group only (fsGroup)
                "items": [{"key": name, "path": name} for name in files],
            },
        }
    ]


def _service(topology: Topology, unit: str) -> dict[str, Any]:
    address = topology.address_of(unit)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": unit, "labels": _labels(unit)},
        "spec": {
            "selector": {"app.kubernetes.io/name": unit},
            "ports": [
                {"name": "http", "port": address.http_port, "targetPort": "http"},
                {
                    "name": "grpc",
                    "port": address.grpc_port,
                    "targetPort": "grpc",
                    "appProtocol": "grpc",
                },
            ],
        },
    }


def _disruption_budget(system: System, topology: Topology, unit: str) -> dict[str, Any]:
    budget = {"minAvailable": 1} if system.scalable(topology, unit) else {"maxUnavailable": 1}
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": unit, "labels": _labels(unit)},
        "spec": {**budget, "selector": _selector(unit)},
    }


def _autoscaler(unit: str) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": unit, "labels": _labels(unit)},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": unit},
            "minReplicas": 2,
            "maxReplicas": 6,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 70},
                    },
                }
            ],
        },
    }


def _ingress(system: System, topology: Topology) -> dict[str, Any]:
    """What the gateway does for `cleave up`: `/api/<service>` goes to the unit that runs it, and
    every other path to the unit of the site's pages (the longest matching prefix wins)."""
    prefixes = {f"/api/{service}": service for service in system.config.services}
    if system.site_service is not None:
        prefixes["/"] = system.site_service
    paths = [
        {
            "path": prefix,
            "pathType": "Prefix",
            "backend": {"service": {"name": topology.unit_of(service), "port": {"name": "http"}}},
        }
        for prefix, service in prefixes.items()
    ]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": system.config.name},
        "spec": {"rules": [{"http": {"paths": paths}}]},
    }


def _migrate_job(system: System) -> dict[str, Any]:
    """Creates each service's role and database, then migrates each as its own role."""
    env = [
        _secret_env("CLEAVE_ADMIN_URL", ADMIN_SECRET, "url"),
        *_database_env(tuple(system.config.services)),
    ]
    container = _container(
        "migrate",
        env,
        command=["cleave", "migrate"],
        resources={"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
    )
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "migrate", "labels": {"app.kubernetes.io/component": "migrate"}},
        "spec": {
            "backoffLimit": 6,
            # Gone after ten minutes, so that the next `kubectl apply` runs it again.
            "ttlSecondsAfterFinished": 600,
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/component": "migrate"}},
                "spec": _pod_spec([container], restartPolicy="OnFailure"),
            },
        },
    }
