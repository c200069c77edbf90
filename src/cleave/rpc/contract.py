"""A port's contract: its Protocol and its .proto service, checked against each other, and
how each method's arguments and result cross the wire."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass
from pydantic import TypeAdapter, ValidationError

from cleave.errors import (
    ConfigError,
    Unprocessable,
)
from cleave.service.context import port_methods

_SAFE_TO_RETRY = frozenset(
    {descriptor_pb2.MethodOptions.IDEMPOTENT, descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS}
)


@dataclass(frozen=True)
class RpcMethod:
    """One port method and its rpc: how its arguments and result cross the wire."""

    name: str
    path: str
    signature: inspect.Signature
    request: type[Message]
    response: type[Message]
    parameters: Mapping[str, TypeAdapter[Any]]
    result: TypeAdapter[Any] | None
    idempotent: bool

    def encode_call(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bytes:
        bound = self.signature.bind(*args, **kwargs)
        fields = {
            name: self.parameters[name].dump_python(value, mode="json")
            for name, value in bound.arguments.items()
        }
        return self.request(**fields).SerializeToString()

    def decode_call(self, payload: bytes, service: str) -> dict[str, Any]:
        """The call's arguments, checked against the Protocol's types; else Unprocessable."""
        where = f"{service}.{self.name}"
        try:
            fields = to_dict(self.request.FromString(payload))
        except DecodeError as error:
            raise Unprocessable(f"{where}: {error}", code="invalid-arguments") from None
        arguments, errors = {}, []
        for name, adapter in self.parameters.items():
            try:
                arguments[name] = adapter.validate_python(fields.get(name))
            except ValidationError as error:
                errors.append(explain(error, name))
        if errors:
            raise Unprocessable(f"{where}: {'; '.join(errors)}", code="invalid-arguments")
        return arguments

    def encode_result(self, value: Any) -> bytes:
        if self.result is None or value is None:
            return self.response().SerializeToString()
        return self.response(result=self.result.dump_python(value, mode="json")).SerializeToString()

    def decode_result(self, payload: bytes) -> Any:
        if self.result is None:
            return None
        return self.result.validate_python(to_dict(self.response.FromString(payload)).get("result"))


@dataclass(frozen=True)
class RpcContract:
    """A port Protocol bound to the gRPC service of its `.proto`, method by method."""

    protocol: type
    service_name: str
    methods: Mapping[str, RpcMethod]

    @classmethod
    def of(cls, protocol: type, rpc: ModuleType) -> RpcContract:
        """Check that the generated module's one service mirrors the Protocol, and bind them."""
        services = list(rpc.DESCRIPTOR.services_by_name.values())
        if len(services) != 1:
            raise ConfigError(f"{rpc.__name__} must declare exactly one gRPC service")
        service: ServiceDescriptor = services[0]
        names = port_methods(protocol)
        rpcs = {_rpc_name(name): name for name in names}
        if extra := sorted(set(service.methods_by_name) - set(rpcs)):
            raise ConfigError(
                f"{service.full_name} has rpcs {extra} that {protocol.__name__} lacks"
            )
        methods = {}
        for rpc_name, name in rpcs.items():
            if rpc_name not in service.methods_by_name:
                raise ConfigError(
                    f"{protocol.__name__}.{name} has no rpc {rpc_name} in {rpc.__name__}"
                )
            methods[name] = _method(
                protocol, name, service.full_name, service.methods_by_name[rpc_name]
            )
        return cls(protocol, service.full_name, methods)


def _rpc_name(method: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in method.split("_"))


def _method(protocol: type, name: str, service: str, descriptor: Any) -> RpcMethod:
    function = getattr(protocol, name)
    hints = typing.get_type_hints(function)
    signature = inspect.signature(function)
    parameters = list(signature.parameters.values())[1:]  # without self
    request = GetMessageClass(descriptor.input_type)
    response = GetMessageClass(descriptor.output_type)
    where = f"{protocol.__name__}.{name}"
    wanted = [parameter.name for parameter in parameters]
    if sorted(wanted) != sorted(request.DESCRIPTOR.fields_by_name):
        got = sorted(request.DESCRIPTOR.fields_by_name)
        raise ConfigError(f"{where} takes {wanted}, but {request.DESCRIPTOR.full_name} has {got}")
    returns: Any = hints.get("return", type(None))
    has_result = returns is not type(None)
    if sorted(response.DESCRIPTOR.fields_by_name) != (["result"] if has_result else []):
        shape = "one field `result`" if has_result else "no field"
        raise ConfigError(f"{where}: {response.DESCRIPTOR.full_name} must have {shape}")
    return RpcMethod(
        name=name,
        path=f"/{service}/{descriptor.name}",
        signature=signature.replace(parameters=parameters),
        request=request,
        response=response,
        parameters={parameter: TypeAdapter(hints[parameter]) for parameter in wanted},
        result=TypeAdapter(returns) if has_result else None,
        idempotent=descriptor.GetOptions().idempotency_level in _SAFE_TO_RETRY,
    )


def explain(error: ValidationError | DecodeError, name: str = "result") -> str:
    """A validation error on one line: `lines.0.quantity: Input should be greater than 0`."""
    if isinstance(error, DecodeError):
        return str(error)
    return "; ".join(
        f"{'.'.join(map(str, (name, *detail['loc'])))}: {detail['msg']}"
        for detail in error.errors()
    )


def to_dict(message: Message) -> dict[str, Any]:
    """A message as plain Python values, an unset optional field or message as None. (Faster
    than json_format, and it keeps int64 as int.) Messages are built straight from such dicts."""
    values: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            values[field.name] = {
                key: to_dict(item) if isinstance(item, Message) else item
                for key, item in value.items()
            }
        elif field.is_repeated:
            values[field.name] = [
                to_dict(item) if isinstance(item, Message) else item for item in value
            ]
        elif field.has_presence and not message.HasField(field.name):
            values[field.name] = None
        else:
            values[field.name] = to_dict(value) if isinstance(value, Message) else value
    return values
