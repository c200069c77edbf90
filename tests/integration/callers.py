"""Units as a gRPC server sees its callers: a development issuer whose tokens the server's
verifier trusts, and the token caches a calling unit would hold."""

from __future__ import annotations

import uuid
from typing import Any

from joserfc.jwk import RSAKey

from cleave.auth.tokens import DevIssuer, TokenVerifier
from cleave.auth.units import UNIT_SCOPE, UnitTokens, unit_client_id
from cleave.rpc.client import remote_port as chassis_remote_port

ISSUER = DevIssuer(
    RSAKey.generate_key(2048, parameters={"kid": uuid.uuid4().hex, "alg": "RS256", "use": "sig"}),
    "urn:cleave:rpc-test",
    "cleave",
)
VERIFIER = TokenVerifier(ISSUER.issuer, ISSUER.audience, ISSUER)
CALLER = unit_client_id("caller")  # the unit every test port lets in


def unit_token(unit: str = "caller", *, ttl_seconds: int = 600) -> str:
    client_id = unit_client_id(unit)
    return ISSUER.issue(client_id, [UNIT_SCOPE], ttl_seconds=ttl_seconds, client_id=client_id)


def tokens_of(unit: str = "caller") -> UnitTokens:
    async def sign() -> tuple[str, float]:
        return unit_token(unit), 600.0

    return UnitTokens(unit_client_id(unit), sign)


def remote_port(protocol: type, target: str, rpc: Any, **options: Any) -> Any:
    """A remote port as the allowed calling unit holds it: with that unit's tokens."""
    options.setdefault("tokens", tokens_of())
    return chassis_remote_port(protocol, target, rpc, **options)
