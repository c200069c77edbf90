"""Events between services: envelopes, the transactional outbox, its relay, inbox and brokers."""
