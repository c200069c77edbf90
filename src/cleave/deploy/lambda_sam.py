"""`deploy/lambda/<topology>/template.yaml`: the units a topology lists in `functions`, as AWS SAM
functions running `cleave.serverless.handler`, one per unit.

Each function gets the HTTP API routes of its services (`/api/<service>/...`, and every other
path when it serves the site's pages), an SQS queue per consumer group it holds (with a redrive
policy to a dead-letter queue) as its event source with partial batch responses, and a schedule
that runs its tick (the sagas due, the outbox relay). Credentials are CloudFormation dynamic
references to Secrets Manager secrets named as the Kubernetes Secrets are; none is generated.

What a function cannot be is refused with the reason: a unit whose port another unit calls (a
function has no gRPC listener), a SQLite database (it would not outlive the instance), or events
from another unit over a broker other than SQS (a function receives them only as SQS events).
"""

from __future__ import annotations

from typing import Any

from cleave.auth.revocation import revocation_queue
from cleave.auth.units import secret_variable
from cleave.config import SELF_ISSUER, Topology, service_database_variable
from cleave.deploy.system import (
    BROKER_SECRET,
    DATABASE_SECRET,
    UNIT_CLIENTS_SECRET,
    System,
    address_variable,
)
from cleave.errors import ConfigError
from cleave.messaging.sqs import RETENTION_SECONDS, SQSBroker

HANDLER = "cleave.serverless.handler"
RUNTIME = "python3.11"
TIMEOUT_SECONDS = 30
TICK = "rate(1 minute)"
# Where the package is built, relative to the folder holding cleave.toml (see the README).
BUILD_FOLDER = "build/lambda"


def sam_template(system: System, topology: Topology, depth: int) -> dict[str, Any]:
    """The SAM template of `topology`'s function units; `depth` is how many folders below the
    project the template is written, for its CodeUri."""
    services = system.declarations
    parameters: dict[str, Any] = {}
    resources: dict[str, Any] = {"Api": {"Type": "AWS::Serverless::HttpApi"}}
    if system.config.auth.issuer == SELF_ISSUER:
        parameters["PublicUrl"] = {
            "Type": "String",
            "Description": "The system's public address (its OpenID issuer), e.g. its API's "
            "custom domain",
        }
    for unit in topology.functions:
        _check_function(system, topology, unit)
        groups = _consumer_groups(system, topology, unit)
        events: dict[str, Any] = {}
        for service in topology.units[unit]:
            if services[service].router is not None:
                events[f"Api{_camel(service)}"] = _route(f"/api/{service}/{{proxy+}}")
        if system.site_service in topology.units[unit]:
            events["Site"] = {"Type": "HttpApi", "Properties": {"ApiId": {"Ref": "Api"}}}
        for group in groups:
            queue, dead = f"{_camel(group)}Queue", f"{_camel(group)}DeadLetters"
            events[queue] = {
                "Type": "SQS",
                "Properties": {
                    "Queue": {"Fn::GetAtt": [queue, "Arn"]},
                    "BatchSize": 10,
                    "FunctionResponseTypes": ["ReportBatchItemFailures"],
                },
            }
            resources[queue], resources[dead] = _queues(topology, group, dead)
        events["Tick"] = {"Type": "Schedule", "Properties": {"Schedule": TICK}}
        for other in topology.units:
            if other not in topology.functions:
                parameters[f"AddressOf{_camel(other)}"] = {
                    "Type": "String",
                    "Description": f"host:http_port:grpc_port of unit {other}, run in processes",
                }
        resources[f"{_camel(unit)}Function"] = {
            "Type": "AWS::Serverless::Function",
            "Properties": {
                "Description": f"Unit {unit} of topology {topology.name}: "
                f"{', '.join(topology.units[unit])}",
                "Handler": HANDLER,
                "Runtime": RUNTIME,
                "CodeUri": "/".join([".."] * depth + [BUILD_FOLDER]),
                "MemorySize": 1024,
                "Timeout": TIMEOUT_SECONDS,
                "Environment": {"Variables": _environment(system, topology, unit)},
                "Events": events,
            },
        }
    template: dict[str, Any] = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Transform": "AWS::Serverless-2016-10-31",
        "Description": f"System {system.config.name}, topology {topology.name}: "
        f"units {', '.join(topology.functions)} as AWS Lambda functions ({HANDLER})",
    }
    if parameters:
        template["Parameters"] = parameters
    template["Resources"] = resources
    template["Outputs"] = {
        "ApiUrl": {
            "Description": "The HTTP API in front of the functions",
            "Value": {"Fn::Sub": "https://${Api}.execute-api.${AWS::Region}.${AWS::URLSuffix}"},
        }
    }
    return template


def _check_function(system: System, topology: Topology, unit: str) -> None:
    services = system.declarations
    where = f"topology {topology.name!r}: unit {unit!r} cannot run as a function"
    config = system.config.with_topology(topology.name)
    for name in topology.units[unit]:
        if config.database_url(name).startswith("sqlite"):
            raise ConfigError(
                f"{where}: {name}'s database is SQLite, whose file would not outlive the "
                "function's instance (use PostgreSQL)"
            )
        port = services[name].port
        callers = sorted(
            other
            for other, members in topology.units.items()
            if port is not None
            and other != unit
            and any(services[member].may_call(port.protocol) for member in members)
        )
        if callers:
            raise ConfigError(
                f"{where}: unit {', '.join(callers)} calls {name} over gRPC, and a function "
                "has no listener (keep it in a process, or move the callers into it)"
            )
    if _consumer_groups(system, topology, unit) and not topology.broker.startswith("sqs://"):
        raise ConfigError(
            f"{where}: it consumes events, which a function receives only as SQS events, and "
            f"the broker is {topology.broker.split('://', 1)[0]!r} (use an sqs:// broker)"
        )
    if topology.broker.startswith("sqs://"):
        visibility = SQSBroker(topology.broker).sqs_address.visibility
        if visibility < TIMEOUT_SECONDS:
            raise ConfigError(
                f"{where}: the broker's visibility={visibility} is shorter than the function's "
                f"{TIMEOUT_SECONDS} s timeout, which Lambda refuses for an SQS event source "
                f"(use visibility={TIMEOUT_SECONDS} or more)"
            )


def _consumer_groups(system: System, topology: Topology, unit: str) -> list[str]:
    """The queues a unit consumes from a broker: one per consuming service, and its revocation
    list's. A one-unit topology on the in-process bus consumes nothing from a broker."""
    if topology.broker == "memory" and len(topology.units) == 1:
        return []
    groups = [s for s in topology.units[unit] if system.declarations[s].subscriptions]
    if system.config.auth.provider:
        groups.append(revocation_queue(unit))
    return groups


def _queues(topology: Topology, group: str, dead: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A consumer group's queue and dead-letter queue, named and set as the SQS adapter makes
    them: the function's cold start declares them again (with their subscription to the topic),
    so a template that said otherwise would be overwritten by it."""
    broker = SQSBroker(topology.broker)
    address = broker.sqs_address
    fifo = {"FifoQueue": True} if address.fifo else {}
    queue = {
        "Type": "AWS::SQS::Queue",
        "Properties": {
            "QueueName": broker.queue_name(group),
            **fifo,
            "VisibilityTimeout": address.visibility,
            "MessageRetentionPeriod": RETENTION_SECONDS,
            "RedrivePolicy": {
                "deadLetterTargetArn": {"Fn::GetAtt": [dead, "Arn"]},
                "maxReceiveCount": address.max_receives,
            },
        },
    }
    parked = {
        "Type": "AWS::SQS::Queue",
        "Properties": {
            "QueueName": broker.parked_queue_name(group),
            **fifo,
            "MessageRetentionPeriod": RETENTION_SECONDS,
        },
    }
    return queue, parked


def _environment(system: System, topology: Topology, unit: str) -> dict[str, Any]:
    variables: dict[str, Any] = {
        "CLEAVE_CONFIG": "/var/task/cleave.toml",
        "CLEAVE_TOPOLOGY": topology.name,
        "CLEAVE_UNIT": unit,
        "CLEAVE_VAR": "/tmp/cleave",  # noqa: S108 (the only writable folder of a function)
    }
    if system.config.auth.issuer == SELF_ISSUER:
        variables["CLEAVE_PUBLIC_URL"] = {"Ref": "PublicUrl"}
    for service in topology.units[unit]:
        variables[service_database_variable(service)] = _secret(DATABASE_SECRET, service)
    if topology.broker != "memory":
        variables["CLEAVE_BROKER"] = _secret(BROKER_SECRET, "url")
    for client in system.unit_clients_of(topology, unit):
        variables[secret_variable(client)] = _secret(UNIT_CLIENTS_SECRET, client)
    for other in topology.units:
        if other not in topology.functions:
            variables[address_variable(other)] = {"Ref": f"AddressOf{_camel(other)}"}
    return variables


def _secret(name: str, key: str) -> str:
    """A CloudFormation dynamic reference: the value stays in Secrets Manager."""
    return f"{{{{resolve:secretsmanager:{name}:SecretString:{key}}}}}"


def _route(path: str) -> dict[str, Any]:
    return {
        "Type": "HttpApi",
        "Properties": {"ApiId": {"Ref": "Api"}, "Path": path, "Method": "ANY"},
    }


def _camel(name: str) -> str:
    """A CloudFormation logical id part: letters and digits only."""
    return "".join(part.capitalize() for part in _words(name))


def _words(name: str) -> list[str]:
    return ["".join(c for c in word if c.isalnum()) for word in name.replace("_", "-").split("-")]
