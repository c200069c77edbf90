"""Which adapter carries a topology's `broker` URL, chosen by its scheme.

A registry of import paths rather than imports: the monolith never loads a broker client it does
not use, and the broker port (`cleave.messaging.broker`) knows no adapter.
"""

from __future__ import annotations

import importlib

from cleave.errors import ConfigError
from cleave.messaging.broker import Broker, MemoryBroker

# URL scheme -> "module:class" of the adapter; each class takes the URL.
ADAPTERS = {
    "amqp": "cleave.messaging.rabbitmq:RabbitMQBroker",
    "amqps": "cleave.messaging.rabbitmq:RabbitMQBroker",
    "nats": "cleave.messaging.jetstream:JetStreamBroker",
    "tls": "cleave.messaging.jetstream:JetStreamBroker",
    "kafka": "cleave.messaging.kafka:KafkaBroker",
    "sqs": "cleave.messaging.sqs:SQSBroker",
}


def create_broker(url: str) -> Broker:
    """The adapter for a topology's `broker` URL."""
    if url == "memory":
        return MemoryBroker()
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in ADAPTERS:
        known = ", ".join(["memory", *(f"{name}://" for name in ADAPTERS)])
        raise ConfigError(f"broker {url!r}: unknown scheme {scheme or url!r} (use {known})")
    module, _, name = ADAPTERS[scheme].partition(":")
    adapter: type[Broker] = getattr(importlib.import_module(module), name)
    return adapter(url)  # type: ignore[call-arg]
