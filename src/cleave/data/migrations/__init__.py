"""Migrations: the chassis's own branch (outbox, inbox, dead letters, sagas) and the runner."""
