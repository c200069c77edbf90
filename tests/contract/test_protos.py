"""The gRPC contracts: generated code matches its `.proto`, and each `.proto` mirrors its port."""

from __future__ import annotations

from pathlib import Path

import pytest

from cleave.config import load_config
from cleave.errors import ConfigError
from cleave.rpc.contract import RpcContract
from cleave.rpc.protogen import SOURCE_ROOT, generate, proto_files
from cleave.runtime import load_services
from shop.catalog.contract import catalog_pb2
from shop.customer.contract import CustomerPort
from tests.conftest import ROOT


def test_generated_code_is_what_protoc_makes_of_each_proto_today(tmp_path: Path) -> None:
    fresh = generate(tmp_path)
    assert fresh, "no .proto found in any contract"
    for path in fresh:
        relative = path.relative_to(tmp_path)
        checked_in = SOURCE_ROOT / relative
        assert checked_in.is_file(), f"{relative} is missing: run python -m cleave.rpc.protogen"
        assert checked_in.read_bytes() == path.read_bytes(), (
            f"{relative} drifted from its .proto: run python -m cleave.rpc.protogen"
        )


def test_no_generated_module_outlives_its_proto() -> None:
    sources = {proto.with_suffix("") for proto in proto_files()}
    for generated in SOURCE_ROOT.glob("*/*/contract/*_pb2.py*"):
        stem = generated.relative_to(SOURCE_ROOT).with_suffix("")
        assert stem.with_name(stem.name.removesuffix("_pb2")) in sources, f"{generated} is stale"


def test_every_port_offered_over_rpc_mirrors_its_proto_and_marks_its_retries() -> None:
    services = load_services(load_config(ROOT / "cleave.toml"))
    contracts = {
        name: RpcContract.of(service.port.protocol, service.port.rpc)
        for name, service in services.items()
        if service.port is not None and service.port.rpc is not None
    }
    assert set(contracts) == {"catalog", "customer", "payment"}
    assert contracts["catalog"].methods["price_lines"].path == "/shop.catalog.v1.Catalog/PriceLines"
    # Each port method here is idempotent per order, and says so in its .proto.
    assert all(m.idempotent for c in contracts.values() for m in c.methods.values())


def test_a_proto_that_does_not_mirror_the_port_is_refused_with_a_clear_error() -> None:
    with pytest.raises(
        ConfigError, match=r"Catalog has rpcs .*PriceLines.* that CustomerPort lacks"
    ):
        RpcContract.of(CustomerPort, catalog_pb2)
