"""Identity's public face: the events it publishes, and where its development seed keeps the
secrets of the clients it registers. Tokens themselves are the other contract."""

from __future__ import annotations

from cleave.events import Event
from shop.identity.contract.credentials import CREDENTIALS_FILE, client_secret, read_credentials


class UserRegistered(Event):
    """A person signed up; `user_id` is their `sub` in every token, and their customer id."""

    event_type = "shop.identity.user_registered.v1"

    user_id: str
    email: str
    name: str


__all__ = ["CREDENTIALS_FILE", "UserRegistered", "client_secret", "read_credentials"]
