"""Contracts between services, and the checks that prove each service can ship alone.

`CHECKS` names every check `cleave contracts verify` runs, as "module:function"; each function is
`verify(config, service) -> list[str]`: one line per problem, naming the consumer and the field
it would lose (an empty list: nothing breaks). `service` None means every service.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from cleave.config import SystemConfig

Check = Callable[["SystemConfig", "str | None"], list[str]]

# Each check by name, as "module:function", so a command can run one or all without importing all.
CHECKS: dict[str, str] = {
    "pacts": "cleave.contracts.pacts:verify",
    "events": "cleave.contracts.events:verify",
    "asyncapi": "cleave.contracts.asyncapi:verify",
    "openapi": "cleave.contracts.openapi:verify",
    "proto": "cleave.contracts.proto:verify",
}


def load_check(name: str) -> Check:
    module_name, _, function = CHECKS[name].partition(":")
    return cast(Check, getattr(importlib.import_module(module_name), function))
