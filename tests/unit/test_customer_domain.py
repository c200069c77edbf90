"""Customer rules, with no database: what a valid profile and address are."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cleave.errors import Unprocessable
from shop.customer.domain import Address, Profile, validate_address, validate_profile

HOME = Address("home", "1 Main St", None, "Utrecht", "3511", "NL")


def test_a_valid_profile_is_normalised() -> None:
    profile = validate_profile(Profile("dana-1_X", "  Dana@Example.COM ", "  Dana Example "))
    assert profile == Profile("dana-1_X", "dana@example.com", "Dana Example")


@pytest.mark.parametrize("customer_id", ["a", "A_b-9", "x" * 64])
def test_ids_of_letters_digits_dash_and_underscore_are_accepted(customer_id: str) -> None:
    assert validate_profile(Profile(customer_id, "a@b.co", "A")).id == customer_id


@pytest.mark.parametrize(
    "customer_id", ["", "x" * 65, "has space", "semi;colon", "é", "alice\n", "me"]
)
def test_other_ids_are_refused(customer_id: str) -> None:
    with pytest.raises(Unprocessable) as refused:
        validate_profile(Profile(customer_id, "a@b.co", "A"))
    assert refused.value.code == "invalid-id"


@pytest.mark.parametrize(
    "email", ["", "no-at-sign", "a@b", "two words@b.co", "@b.co", "a@@b.co", "a@b.co\nx@y.z"]
)
def test_an_email_must_look_like_one(email: str) -> None:
    with pytest.raises(Unprocessable) as refused:
        validate_profile(Profile("dana", email, "Dana"))
    assert refused.value.code == "invalid-email"


@pytest.mark.parametrize("name", ["", "   "])
def test_a_customer_needs_a_name(name: str) -> None:
    with pytest.raises(Unprocessable) as refused:
        validate_profile(Profile("dana", "dana@example.com", name))
    assert refused.value.code == "invalid-name"


def test_a_complete_address_is_accepted() -> None:
    assert validate_address(HOME) == HOME


@pytest.mark.parametrize("country", ["nl", "NLD", "N1", "", "NL\n", "Netherlands"])
def test_the_country_is_an_iso_alpha_2_code(country: str) -> None:
    with pytest.raises(Unprocessable) as refused:
        validate_address(Address("home", "1 Main St", None, "Utrecht", "3511", country))
    assert refused.value.code == "invalid-country"


@pytest.mark.parametrize("blank", ["label", "line1", "city", "postal_code"])
def test_an_address_needs_its_lines(blank: str) -> None:
    with pytest.raises(Unprocessable) as refused:
        validate_address(replace(HOME, **{blank: "  "}))
    assert refused.value.code == "invalid-address"
