"""Each service's REST API, guarded: its OpenAPI document is checked in as
`contracts/openapi/<service>.json`, and a change that breaks a client fails: a path, operation or
successful response removed, a response field removed or loosened, a request narrowed (a type,
an enum, a bound), a new required parameter or request field, a new scope required. Removing a
path is allowed once its API's major version has moved: `/v2/...` is served in its place.

`python -m cleave.contracts.openapi` lists the problems; `--write` refreshes the files.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cleave.config import SystemConfig
from cleave.contracts import baseline
from cleave.contracts.baseline import Document, Findings
from cleave.contracts.compat import READ, WRITE, breaking_changes
from cleave.runtime import load_services
from cleave.service import Service
from cleave.web.docs import api_docs_app

KIND = "openapi"
WRITE_COMMAND = "python -m cleave.contracts.openapi --write"
# Where the issuer is, is a deployment's fact, not the contract's: every document names this one.
CONTRACT_ISSUER = "https://issuer.example"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
_VERSION = re.compile(r"/v(\d+)(?=/|$)")


def service_document(config: SystemConfig, name: str, service: Service) -> Document | None:
    """The OpenAPI document of one service's routes, as its unit serves them; None without any."""
    if service.router is None:
        return None
    app = api_docs_app(
        f"{config.name} · {name}",
        {f"/api/{name}/v1": service.router},
        issuer=CONTRACT_ISSUER,
        client_id=config.auth.docs_client,
    )
    return app.openapi()


def documents(config: SystemConfig, services: Mapping[str, Service]) -> dict[str, Document]:
    found = {name: service_document(config, name, service) for name, service in services.items()}
    return {name: document for name, document in found.items() if document is not None}


def compare(service: str, old: Document, new: Document) -> Findings:
    """One service's checked-in document against today's."""
    found = Findings()
    old_paths: Mapping[str, Any] = old.get("paths", {})
    new_paths: Mapping[str, Any] = new.get("paths", {})
    for path, old_item in old_paths.items():
        if path not in new_paths:
            if not _moved_to_a_later_version(path, new_paths):
                found.breaking.append(f"openapi: {service}: {path} removed")
            continue
        for method in METHODS:
            if method not in old_item:
                continue
            operation = f"openapi: {service}: {method.upper()} {path}"
            if method not in new_paths[path]:
                found.breaking.append(f"{operation} removed")
                continue
            found.breaking.extend(
                f"{operation}: {change}"
                for change in _operation_changes(
                    old_item[method], new_paths[path][method], old, new
                )
            )
    if not found.breaking and old != new:
        found.outdated.append(f"openapi: {service} changed compatibly: run {WRITE_COMMAND}")
    return found


def findings(config: SystemConfig, service: str | None = None) -> Findings:
    if service is not None:
        config.require_service(service)
    current = documents(config, load_services(config))
    checked_in = baseline.read_documents(baseline.folder(config, KIND))
    found = Findings()
    for name in sorted(set(current) | set(checked_in)):
        if service not in (None, name):
            continue
        if name not in checked_in:
            found.outdated.append(f"openapi: {name} has no checked-in document yet: {_fix()}")
        elif name not in current:
            found.breaking.append(f"openapi: {name} no longer serves an API, but had one")
        else:
            each = compare(name, checked_in[name], current[name])
            found.breaking.extend(each.breaking)
            found.outdated.extend(each.outdated)
    return found


def verify(config: SystemConfig, service: str | None = None) -> list[str]:
    """The problems of the OpenAPI documents of `service` (or of every service), one line each."""
    return findings(config, service).problems


def write(config: SystemConfig) -> list[Path]:
    current = documents(config, load_services(config))
    return baseline.write_documents(baseline.folder(config, KIND), current)


def _operation_changes(
    old: Mapping[str, Any], new: Mapping[str, Any], old_root: Document, new_root: Document
) -> list[str]:
    changes: list[str] = []

    def schema_changes(old_schema: Any, new_schema: Any, compatibility: Any, where: str) -> None:
        for change in breaking_changes(
            old_schema or {}, new_schema or {}, compatibility, old_root=old_root, new_root=new_root
        ):
            changes.append(f"{where} {change}")

    old_parameters = {(p["in"], p["name"]): p for p in old.get("parameters", [])}
    for key, parameter in {(p["in"], p["name"]): p for p in new.get("parameters", [])}.items():
        where = f"{key[0]} parameter '{key[1]}'"
        before = old_parameters.get(key)
        if parameter.get("required") and not (before and before.get("required")):
            changes.append(f"{where} is now required")
        if before is not None:
            schema_changes(before.get("schema"), parameter.get("schema"), WRITE, f"{where}:")
    old_body, new_body = old.get("requestBody"), new.get("requestBody")
    if new_body and new_body.get("required") and not (old_body and old_body.get("required")):
        changes.append("a request body is now required")
    if old_body and new_body:
        for media, content in old_body.get("content", {}).items():
            if media not in new_body.get("content", {}):
                changes.append(f"request body no longer accepts {media}")
                continue
            new_schema = new_body["content"][media].get("schema")
            schema_changes(content.get("schema"), new_schema, WRITE, "request body")
    new_responses = new.get("responses", {})
    for status, response in old.get("responses", {}).items():
        if status not in new_responses:
            if status.startswith("2"):
                changes.append(f"response {status} removed")
            continue
        new_content = new_responses[status].get("content", {})
        for media, content in response.get("content", {}).items():
            if media not in new_content:
                changes.append(f"response {status} is no longer {media}")
                continue
            new_schema = new_content[media].get("schema")
            schema_changes(content.get("schema"), new_schema, READ, f"response {status}")
    if gained := _scopes(new) - _scopes(old):
        changes.append(f"now requires {', '.join(sorted(gained))}")
    return changes


def _scopes(operation: Mapping[str, Any]) -> set[str]:
    """What a caller must present: each scheme, and each scope it names."""
    return {
        f"scope {scope}" if scope else f"a token ({scheme})"
        for requirement in operation.get("security", [])
        for scheme, scopes in requirement.items()
        for scope in scopes or [""]
    }


def _moved_to_a_later_version(path: str, paths: Mapping[str, Any]) -> bool:
    found = _VERSION.search(path)
    if found is None:
        return False
    before, after = path[: found.start()], path[found.end() :]
    later = range(int(found.group(1)) + 1, 100)
    return any(f"{before}/v{version}{after}" in paths for version in later)


def _fix() -> str:
    return f"run {WRITE_COMMAND}"


if __name__ == "__main__":
    sys.exit(baseline.command(sys.argv[1:], KIND, findings, write))
