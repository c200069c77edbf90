"""Problems across the wire: a `Problem` raised on the far side travels in trailing metadata
and is raised again in the caller as the same class with the same attributes."""

from __future__ import annotations

import json

import grpc

from cleave.errors import (
    Problem,
)

# Trailing metadata that carries a Problem across: binary, so any detail text survives.
PROBLEM_KEY = "cleave-problem-bin"
STATUS_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.ABORTED,
    422: grpc.StatusCode.FAILED_PRECONDITION,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def problem_metadata(problem: Problem) -> tuple[tuple[str, bytes]]:
    body = {
        "type": problem.problem_type(),
        "code": problem.code,
        "detail": problem.detail,
        "status": problem.status,
        "extensions": problem.extensions,
    }
    return ((PROBLEM_KEY, json.dumps(body, default=str).encode()),)


def problem_from(error: grpc.aio.AioRpcError) -> Problem | None:
    metadata = error.trailing_metadata()
    raw = metadata.get(PROBLEM_KEY) if metadata is not None else None
    if not isinstance(raw, bytes):
        return None
    body = json.loads(raw)
    return Problem.restore(
        body["type"], body["detail"], body["code"], body["status"], body["extensions"]
    )
