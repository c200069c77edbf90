"""Calls between units over gRPC: a service's port, served by its unit and called from others.

A port is a Protocol in the service's `contract/`; its `.proto` there has one rpc per method
(`price_lines` is `PriceLines`), request fields named like the parameters, and the return value
as the response's `result`. From these two the chassis builds both sides, so a service declares
only `PortBinding(Protocol, factory, rpc=<its _pb2 module>)`:

- the server (`RpcServer`) serves every port of a unit, plus the standard `grpc.health.v1`
  health service; reflection only when `CLEAVE_GRPC_REFLECTION=1`. It answers only a unit whose
  services declare the port (`calls=`), proven by that unit's access token;
- the client (`remote_port`) is an object implementing the Protocol. Each call carries the
  unit's token and the end user it acts for, and has a deadline;
  methods the `.proto` marks `idempotency_level = IDEMPOTENT` or `NO_SIDE_EFFECTS` are retried
  with backoff and jitter on UNAVAILABLE or DEADLINE_EXCEEDED, others never; a circuit breaker
  fails fast while the far side is down. A `Problem` raised on the far side is raised again here,
  as the same class with the same attributes; a transport failure is `ServiceUnavailable`;
- with a topology's `grpc_tls` folder, both sides talk mutual TLS (`cleave.rpc.tls`).
"""
