"""The broker port, and the in-process broker the monolith runs on.

Every adapter gives the same promise to the relay: `publish` returns only once the message is safe
(a real broker's publisher confirm; here, every subscriber has applied or parked it), so the relay
marks an outbox row delivered only when nothing can lose it any more.

A subscription is either shared or a broadcast. Shared (a service's consumer): the replicas of a
unit share one durable queue, so each event reaches one of them, and waits there while none runs.
Broadcast (`broadcast=True`, for state a replica keeps in memory, such as its revocation list):
every running replica gets its own copy of each event published after it subscribed, on a queue
or consumer of its own that goes when it stops; nothing is kept for a replica that is not
running, so what it holds must also be filled from elsewhere at start.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from cleave.events import Envelope

Delivery = Callable[[Envelope], Awaitable[None]]


class Broker(Protocol):
    name: str

    def subscribe(
        self, queue: str, types: Sequence[str], deliver: Delivery, *, broadcast: bool = False
    ) -> None:
        """Route `types` to `deliver` for the consumer group `queue` (before `start`); with
        `broadcast`, to this replica's own copy of the group's events."""

    async def start(self) -> None: ...

    async def publish(self, envelope: Envelope) -> None: ...

    async def close(self) -> None: ...


class MemoryBroker:
    """In-process delivery for the monolith: the same outbox → relay → inbox path, no server."""

    name = "memory"

    def __init__(self) -> None:
        self._routes: dict[str, list[tuple[str, Delivery]]] = defaultdict(list)

    def subscribe(
        self, queue: str, types: Sequence[str], deliver: Delivery, *, broadcast: bool = False
    ) -> None:
        # One process is one replica: every subscriber here gets every event, broadcast or not.
        for event_type in types:
            self._routes[event_type].append((queue, deliver))

    async def start(self) -> None:
        return None

    async def publish(self, envelope: Envelope) -> None:
        routes = self._routes.get(envelope.type, ())
        await asyncio.gather(*(deliver(envelope) for _queue, deliver in routes))

    async def close(self) -> None:
        return None

    def routes(self) -> dict[str, list[str]]:
        return {
            event_type: [queue for queue, _ in targets]
            for event_type, targets in self._routes.items()
        }
