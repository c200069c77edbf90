"""The versions matrix: which version of each service runs in which environment, the pacts each
consumer version published and which provider versions verified them. "Can I deploy?" is read
from it.

It is a file in the repository (`contracts/matrix.json`), since no Pact Broker runs here; its
three lists are the Broker's own resources (published pacts with their content and hash,
verification results, recorded deployments), named as the Broker names them, so that each
record can be published to a Broker later as it is.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cleave.config import SystemConfig
from cleave.contracts.pacts import PactFile, pact_dir, read_pacts, verify_pact
from cleave.errors import ConfigError

MATRIX_FILE = Path("contracts") / "matrix.json"

Verify = Callable[[SystemConfig, PactFile], list[str]]


def matrix_path(config: SystemConfig) -> Path:
    return config.root / MATRIX_FILE


@dataclass
class Matrix:
    pacts: list[dict[str, Any]] = field(default_factory=list)
    verifications: list[dict[str, Any]] = field(default_factory=list)
    deployments: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> Matrix:
        if not path.exists():
            return cls()
        try:
            raw = json.loads(path.read_text())
            return cls(list(raw["pacts"]), list(raw["verifications"]), list(raw["deployments"]))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ConfigError(f"{path} is not a versions matrix: {error}") from None

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        body = {
            "pacts": self.pacts,
            "verifications": self.verifications,
            "deployments": self.deployments,
        }
        path.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")

    def deployed(self, service: str, environment: str) -> str | None:
        """The version of `service` running in `environment`, if any."""
        for deployment in self.deployments:
            if (deployment["pacticipant"], deployment["environment"]) == (service, environment):
                return str(deployment["version"])
        return None

    def pacts_of(self, consumer: str, version: str) -> list[PactFile]:
        """The pacts a consumer version published."""
        return [
            PactFile(record["consumer"], record["provider"], record["contents"])
            for record in self.pacts
            if (record["consumer"], record["consumerVersion"]) == (consumer, version)
        ]

    def verification(self, provider: str, version: str, pact: PactFile) -> dict[str, Any] | None:
        for record in self.verifications:
            if (record["provider"], record["providerVersion"], record["pactSha"]) == (
                provider,
                version,
                pact.version,
            ):
                return record
        return None

    def publish(self, version: str, pact: PactFile) -> None:
        if not any(
            (r["consumer"], r["consumerVersion"], r["provider"])
            == (pact.consumer, version, pact.provider)
            for r in self.pacts
        ):
            self.pacts.append(
                {
                    "consumer": pact.consumer,
                    "consumerVersion": version,
                    "provider": pact.provider,
                    "sha": pact.version,
                    "contents": pact.content,
                }
            )

    def record_verification(
        self, provider: str, version: str, pact: PactFile, problems: list[str]
    ) -> None:
        self.verifications = [
            r
            for r in self.verifications
            if (r["provider"], r["providerVersion"], r["pactSha"])
            != (provider, version, pact.version)
        ]
        self.verifications.append(
            {
                "provider": provider,
                "providerVersion": version,
                "consumer": pact.consumer,
                "pactSha": pact.version,
                "success": not problems,
                "problems": problems,
            }
        )

    def record_deployment(self, service: str, version: str, environment: str) -> None:
        """`version` replaces whatever version of `service` ran in `environment`."""
        self.deployments = [
            d
            for d in self.deployments
            if (d["pacticipant"], d["environment"]) != (service, environment)
        ]
        self.deployments.append(
            {"pacticipant": service, "version": version, "environment": environment}
        )


def record_deployment(
    config: SystemConfig,
    service: str,
    version: str,
    environment: str,
    *,
    verify: Verify = verify_pact,
) -> list[str]:
    """Record that this tree, as `version` of `service`, now runs in `environment`: publish its
    pacts as a consumer, verify it as a provider against every published pact it is party to,
    and mark it deployed. The problems of those verifications, which are recorded too."""
    config.require_service(service)
    path = matrix_path(config)
    matrix = Matrix.load(path)
    for pact in read_pacts(pact_dir(config)):
        if pact.consumer == service:
            matrix.publish(version, pact)
    problems: list[str] = []
    for pact in _pacts_with_provider(config, matrix, service):
        found = verify(config, pact)
        matrix.record_verification(service, version, pact, found)
        problems.extend(found)
    matrix.record_deployment(service, version, environment)
    matrix.save(path)
    return problems


def _pacts_with_provider(config: SystemConfig, matrix: Matrix, provider: str) -> list[PactFile]:
    """Every distinct pact with `provider`: in the tree and published by any consumer version."""
    pacts = {p.version: p for p in read_pacts(pact_dir(config)) if p.provider == provider}
    for record in matrix.pacts:
        if record["provider"] == provider:
            pact = PactFile(record["consumer"], record["provider"], record["contents"])
            pacts.setdefault(pact.version, pact)
    return list(pacts.values())


@dataclass(frozen=True)
class Answer:
    deployable: bool
    reasons: list[str]


def can_i_deploy(
    config: SystemConfig,
    service: str,
    version: str,
    environment: str,
    *,
    verify: Verify = verify_pact,
) -> Answer:
    """Whether `version` of `service` can join what runs in `environment`: every pact it has
    with a provider there was verified by that provider's deployed version, and it satisfies the
    pact of every consumer deployed there. A version the matrix does not know is this tree."""
    config.require_service(service)
    matrix = Matrix.load(matrix_path(config))
    reasons: list[str] = []
    deployable = True
    own = matrix.pacts_of(service, version) or [
        pact for pact in read_pacts(pact_dir(config)) if pact.consumer == service
    ]
    for pact in own:
        provider_version = matrix.deployed(pact.provider, environment)
        if provider_version is None:
            reasons.append(f"{pact.provider} is not in {environment}: nothing of it to break")
            continue
        record = matrix.verification(pact.provider, provider_version, pact)
        where = f"{pact.provider} {provider_version} in {environment}"
        if record is None:
            deployable = False
            reasons.append(f"{where} has not verified {service}'s pact {pact.version}")
        elif not record["success"]:
            deployable = False
            reasons.append(f"{where} fails {service}'s pact {pact.version}:")
            reasons.extend(f"  {problem}" for problem in record["problems"])
        else:
            reasons.append(f"{where} verified {service}'s pact {pact.version}")
    consumers = sorted({r["consumer"] for r in matrix.pacts if r["provider"] == service})
    for consumer in consumers:
        consumer_version = matrix.deployed(consumer, environment)
        if consumer_version is None:
            continue
        for pact in matrix.pacts_of(consumer, consumer_version):
            if pact.provider != service:
                continue
            record = matrix.verification(service, version, pact)
            problems = list(record["problems"]) if record else verify(config, pact)
            who = f"{consumer} {consumer_version} in {environment}"
            if problems:
                deployable = False
                reasons.append(f"{service} {version} breaks the pact of {who}:")
                reasons.extend(f"  {problem}" for problem in problems)
            else:
                reasons.append(f"{service} {version} satisfies the pact of {who}")
    return Answer(deployable, reasons)
