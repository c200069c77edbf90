"""What every adapter to a real broker shares: its address, resource names, and how a message
received from the broker is settled.

A broker URL may carry two options of Cleave's own in its query string, which are removed before
the URL reaches the client library:

- `namespace` (default `cleave`) prefixes every exchange, queue, stream and topic, so two
  systems, or two concurrent test runs, can share one server without sharing a message;
- `prefetch` (default 32) bounds the messages a consumer holds unacknowledged at once.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import structlog

from cleave.errors import ConfigError
from cleave.events import Envelope, EnvelopeError
from cleave.messaging.broker import Delivery

if TYPE_CHECKING:  # FastStream costs a second to import; a function's SQS path needs none of it
    from faststream.message import StreamMessage

log = structlog.get_logger("cleave.messaging")

DEFAULT_NAMESPACE = "cleave"
# Enough to overlap round trips; more only queues on the service database pool (5 + 5 overflow).
DEFAULT_PREFETCH = 32
# A delivery whose consumer raised (its database is down, say) goes back to the broker after this
# pause, so a broken dependency is not retried in a hot loop.
RETRY_DELAY_SECONDS = 1.0

# Enough of a host name to recognise it, short enough for SQS's 80-character queue names.
REPLICA_HOST_LENGTH = 24

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_EVENT_TYPE = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")


@dataclass(frozen=True)
class BrokerAddress:
    """A broker URL with Cleave's own options taken out of it."""

    url: str
    namespace: str = DEFAULT_NAMESPACE
    prefetch: int = DEFAULT_PREFETCH

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        parts = urlsplit(url)
        options = dict(parse_qsl(parts.query, keep_blank_values=True))
        namespace = options.pop("namespace", DEFAULT_NAMESPACE)
        if not _NAME.match(namespace):
            raise ConfigError(
                f"broker namespace {namespace!r}: use 1-64 letters, digits, '_' or '-'"
            )
        prefetch_text = options.pop("prefetch", str(DEFAULT_PREFETCH))
        try:
            prefetch = int(prefetch_text)
        except ValueError:
            prefetch = 0
        if not 1 <= prefetch <= 10_000:
            raise ConfigError(f"broker prefetch {prefetch_text!r}: use a whole number 1-10000")
        bare = urlunsplit(parts._replace(query=urlencode(options)))
        return cls(url=bare, namespace=namespace, prefetch=prefetch)


def replica_id() -> str:
    """A name for one replica's own broadcast queues: its host (a pod's name under Kubernetes),
    for the person who finds one, and a random part, since two processes of one pod, or two
    brokers of one test process, share a host and a pid."""
    host = re.sub(r"[^A-Za-z0-9-]+", "-", socket.gethostname().split(".")[0]).strip("-")
    return f"{host[:REPLICA_HOST_LENGTH] or 'host'}-{secrets.token_hex(4)}"


def claim_queue(claimed: set[str], queue: str, types: Sequence[str], *, started: bool) -> list[str]:
    """Check a subscription and record its queue; returns its event types, without repeats."""
    if started:
        raise ConfigError("subscribe before the broker starts")
    if not _NAME.match(queue):
        raise ConfigError(f"consumer queue {queue!r}: use letters, digits, '_' or '-'")
    if queue in claimed:
        raise ConfigError(f"consumer queue {queue!r} is subscribed twice")
    for event_type in types:
        check_event_type(event_type)
    claimed.add(queue)
    return list(dict.fromkeys(types))


def check_event_type(event_type: str) -> None:
    if not _EVENT_TYPE.match(event_type):
        raise ConfigError(
            f"event type {event_type!r} cannot be routed: use dot-separated words of letters, "
            "digits, '_' or '-'"
        )


class Settlement(Protocol):
    """How one received message is settled on its broker."""

    async def ack(self) -> None:
        """The consumer has applied or parked it: the broker may forget it."""

    async def retry(self) -> None:
        """The consumer failed: the broker should deliver it again later."""

    async def park(self, reason: str) -> None:
        """It can never be applied (not a CloudEvent): set it aside for a person to look at."""


async def settle(
    body: bytes,
    deliver: Delivery,
    settlement: Settlement,
    *,
    queue: str,
    retry_delay: float = RETRY_DELAY_SECONDS,
) -> None:
    """Decode, hand to the consumer, then acknowledge; park what is malformed, retry a failure
    after `retry_delay` (none where the broker itself waits before redelivering)."""
    try:
        envelope = Envelope.from_json(body)
    except EnvelopeError as error:
        log.error("malformed message parked", queue=queue, error=str(error), size=len(body))
        await settlement.park(str(error))
        return
    try:
        await deliver(envelope)
    except asyncio.CancelledError:
        raise
    except Exception as error:
        # The consumer parks failing handlers itself; reaching here means it could not even do
        # that, so the message stays with the broker.
        log.warning(
            "delivery failed; the broker will redeliver",
            queue=queue,
            message_id=envelope.id,
            error=f"{type(error).__name__}: {error}",
        )
        await asyncio.sleep(retry_delay)
        await settlement.retry()
        return
    await settlement.ack()


def keep_raw_message(message: StreamMessage[Any]) -> StreamMessage[Any]:
    """A FastStream decoder that hands the handler the message itself, body unparsed: `settle`
    parses and checks the envelope, and settles the message by hand."""
    return message
