"""Customer rules: what a valid profile and address are. No I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass

from cleave.errors import Unprocessable

ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
COUNTRY_PATTERN = re.compile(r"^[A-Z]{2}$")
# `/customers/me` is the caller's own profile, so no customer may be called "me".
RESERVED_IDS = frozenset({"me"})


@dataclass(frozen=True)
class Profile:
    id: str
    email: str
    name: str


@dataclass(frozen=True)
class Address:
    label: str
    line1: str
    line2: str | None
    city: str
    postal_code: str
    country: str


def validate_profile(profile: Profile) -> Profile:
    """The profile as stored: email lower-cased, surrounding blanks trimmed."""
    # fullmatch, since `$` would let a trailing newline through.
    if not ID_PATTERN.fullmatch(profile.id):
        raise Unprocessable("a customer id is 1-64 letters, digits, '_' or '-'", code="invalid-id")
    if profile.id in RESERVED_IDS:
        raise Unprocessable(f"{profile.id!r} names a route, not a customer", code="invalid-id")
    email = profile.email.strip().lower()
    if not EMAIL_PATTERN.fullmatch(email):
        raise Unprocessable(f"{profile.email!r} is not an email address", code="invalid-email")
    if not profile.name.strip():
        raise Unprocessable("a customer needs a name", code="invalid-name")
    return Profile(profile.id, email, profile.name.strip())


def validate_address(address: Address) -> Address:
    if not COUNTRY_PATTERN.fullmatch(address.country):
        raise Unprocessable("country is an ISO 3166 alpha-2 code, like NL", code="invalid-country")
    for name in ("label", "line1", "city", "postal_code"):
        if not getattr(address, name).strip():
            raise Unprocessable(f"an address needs a {name}", code="invalid-address")
    return address
