"""Contracts between services, checked: each check is `verify(config, service) -> problems`, a
list of lines that each name the type, operation or field that breaks, and whom it breaks."""

from __future__ import annotations

# Each check by name, as "module:function", so a command can run one or all without importing all.
CHECKS: dict[str, str] = {
    "events": "cleave.contracts.events:verify",
    "asyncapi": "cleave.contracts.asyncapi:verify",
    "openapi": "cleave.contracts.openapi:verify",
    "proto": "cleave.contracts.proto:verify",
}
