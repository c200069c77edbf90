"""`deploy/compose.yaml`: the split topology with its PostgreSQL, broker and Jaeger."""

from __future__ import annotations

import os
from typing import Any

from cleave.auth.units import secret_variable
from cleave.config import SystemConfig, Topology, service_database_variable
from cleave.deploy.system import SPLIT, System, address_value, address_variable
from cleave.errors import ConfigError


def compose(system: System, out: str) -> dict[str, Any]:
    """The split topology on one Docker host: infrastructure, a one-shot migrate, every unit."""
    config = system.config
    topology = _split_topology(config)
    to_root = os.path.relpath(".", out)
    broker_service, broker_url, broker = _compose_broker(topology.broker)
    database_urls = {
        service: _compose_database_url(config, topology, service) for service in config.services
    }
    addresses = {
        address_variable(unit): address_value(unit, topology.address_of(unit))
        for unit in topology.units
    }
    common = {"CLEAVE_TOPOLOGY": topology.name, **addresses}
    if broker_url:
        common["CLEAVE_BROKER"] = broker_url
    services: dict[str, Any] = {
        "postgres": {
            "image": "postgres:16",
            "environment": {"POSTGRES_PASSWORD": "${POSTGRES_PASSWORD:-postgres}"},
            "volumes": ["postgres-data:/var/lib/postgresql/data"],
            "healthcheck": _compose_check(["CMD", "pg_isready", "-U", "postgres"]),
        },
        **({broker_service: broker} if broker_service else {}),
        "jaeger": {
            "image": "jaegertracing/all-in-one:1.62.0",
            "environment": {"COLLECTOR_OTLP_ENABLED": "true"},
            "ports": ["127.0.0.1:16686:16686"],
        },
        "migrate": {
            "image": system.image,
            "build": {"context": to_root, "dockerfile": "Dockerfile"},
            "entrypoint": ["cleave", "migrate"],
            "environment": {
                **common,
                "CLEAVE_ADMIN_URL": "postgresql://postgres:${POSTGRES_PASSWORD:-postgres}"
                "@postgres:5432/postgres",
                **{service_database_variable(s): url for s, url in database_urls.items()},
            },
            "depends_on": {"postgres": {"condition": "service_healthy"}},
        },
    }
    for unit, members in topology.units.items():
        address = topology.address_of(unit)
        readyz = f"http://127.0.0.1:{address.http_port}/readyz"
        probe = f"import urllib.request; urllib.request.urlopen({readyz!r}, timeout=3)"
        depends = {"migrate": {"condition": "service_completed_successfully"}}
        if broker_service:
            depends[broker_service] = {"condition": "service_healthy"}
        services[unit] = {
            "image": system.image,
            "command": [unit, "--host", "0.0.0.0", "--no-migrate"],  # noqa: S104
            "environment": {
                **common,
                **{service_database_variable(s): database_urls[s] for s in members},
                # Each unit's client secret, a development default unless the shell sets one.
                **{
                    secret_variable(client): f"${{{secret_variable(client)}:-{client}-dev}}"
                    for client in system.unit_clients_of(topology, unit)
                },
                "OTEL_SERVICE_NAME": unit,
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318",
            },
            "ports": [f"127.0.0.1:{address.http_port}:{address.http_port}"],
            "healthcheck": _compose_check(["CMD", "python", "-c", probe]),
            "depends_on": depends,
            "restart": "unless-stopped",
        }
    # No top-level `name`: the schema the tests hold it to predates it; `-p` names the project.
    return {
        "services": services,
        "volumes": {"postgres-data": {}},
    }


def _split_topology(config: SystemConfig) -> Topology:
    if SPLIT in config.topologies:
        return config.topologies[SPLIT]
    return max(config.topologies.values(), key=lambda topology: len(topology.units))


def _compose_broker(url: str) -> tuple[str | None, str | None, dict[str, Any]]:
    scheme = url.split(":", 1)[0]
    if scheme == "amqp":
        return (
            "rabbitmq",
            "amqp://cleave:${RABBITMQ_PASSWORD:-cleave}@rabbitmq:5672/",
            {
                "image": "rabbitmq:3.13-management",
                "environment": {
                    "RABBITMQ_DEFAULT_USER": "cleave",
                    "RABBITMQ_DEFAULT_PASS": "${RABBITMQ_PASSWORD:-cleave}",
                },
                "ports": ["127.0.0.1:15672:15672"],
                "healthcheck": _compose_check(["CMD", "rabbitmq-diagnostics", "-q", "ping"]),
            },
        )
    if scheme == "nats":
        return (
            "nats",
            "nats://nats:4222",
            {
                "image": "nats:2.10",
                "command": ["--jetstream", "--http_port", "8222"],
                "healthcheck": _compose_check(["CMD", "nats-server", "--help"]),
            },
        )
    if scheme == "memory":
        return None, None, {}
    raise ConfigError(f"compose.yaml knows no broker for {url!r}")


def _compose_check(test: list[str]) -> dict[str, Any]:
    return {"test": test, "interval": "5s", "timeout": "5s", "retries": 12, "start_period": "10s"}


def _compose_database_url(config: SystemConfig, topology: Topology, service: str) -> str:
    """The service's URL from cleave.toml, pointed at the compose network's PostgreSQL, with a
    password per role (`CLEAVE_DB_PASSWORD_<SERVICE>`, a development default otherwise)."""
    from sqlalchemy.engine import make_url

    template = topology.databases.get(service, topology.database)
    url = make_url(template.format(service=service, var=config.var_dir))
    if url.get_backend_name() != "postgresql":
        url = make_url(f"postgresql+asyncpg://cleave_{service}@x/cleave_{service}")
    variable = "CLEAVE_DB_PASSWORD_" + service.upper().replace("-", "_")
    password = f"${{{variable}:-{service}-dev}}"
    return f"{url.drivername}://{url.username}:{password}@postgres:5432/{url.database}"
