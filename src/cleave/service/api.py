"""What a service's routes take from the chassis: its context, pagination, problem errors."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Coroutine, Sequence
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query, Request, Response
from pydantic import BaseModel

from cleave.errors import Problem
from cleave.service import ServiceContext

T = TypeVar("T")
R = TypeVar("R")


def context_of(service: str) -> Callable[[Request], Coroutine[Any, Any, ServiceContext]]:
    """A dependency giving a route its own service's context from the running unit."""

    async def dependency(request: Request) -> ServiceContext:
        context: ServiceContext = request.app.state.unit.context(service)
        return context

    return dependency


def json_response(model: BaseModel) -> Response:
    """The model as the answer, serialised once in pydantic's core. Declare the model as the
    route's `response_model` (for the docs): FastAPI neither validates a returned Response
    against it again nor serialises it again."""
    return Response(model.__pydantic_serializer__.to_json(model), media_type="application/json")


class Page(BaseModel, Generic[T]):
    """One page of a list: pass `next_cursor` back as `cursor` for the next; null at the end."""

    items: list[T]
    next_cursor: str | None


Limit = Annotated[int, Query(ge=1, le=100, description="Items per page.")]
Cursor = Annotated[str | None, Query(max_length=512, description="From the previous page.")]


def encode_cursor(position: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(position, separators=(",", ":")).encode()).decode()


def decode_cursor(cursor: str | None) -> dict[str, Any] | None:
    if cursor is None:
        return None
    try:
        position = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise Problem("the cursor is not one this API gave out", code="invalid-cursor") from None
    if not isinstance(position, dict):
        raise Problem("the cursor is not one this API gave out", code="invalid-cursor")
    return position


def after_key(cursor: str | None) -> str | None:
    """The key a simple keyset cursor resumes after, or None for the first page."""
    position = decode_cursor(cursor)
    if position is None:
        return None
    if not isinstance(position.get("after"), str):
        raise Problem("the cursor is not one this API gave out", code="invalid-cursor")
    return str(position["after"])


def page_of(
    rows: Sequence[R],
    limit: int,
    item: Callable[[R], T],
    position: Callable[[R], dict[str, Any]],
) -> Page[T]:
    """A page from rows fetched with `limit + 1`: the extra row only says a next page exists."""
    shown = rows[:limit]
    next_cursor = encode_cursor(position(shown[-1])) if len(rows) > limit else None
    return Page[T](items=[item(row) for row in shown], next_cursor=next_cursor)
