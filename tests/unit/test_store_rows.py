"""The typed rows the stores return match their tables (catalog, customer, identity, ordering
and payment: every table has one; the storefront's sessions and the saga log's too): a row type's
fields are the table's columns in order (rows are built from the selected tuple by position),
each typed as the column holds it, `| None` where it is nullable. With these held, mypy's check
of `row.price_amount` is a check of the SQL."""

from __future__ import annotations

import types
import typing
from typing import Any, Literal

import pytest
from sqlalchemy import Column, Table
from sqlalchemy.types import TypeDecorator

from cleave.data.tables import sagas
from cleave.saga import SagaRow
from shop.catalog import store as catalog
from shop.customer import store as customer
from shop.identity import store as identity
from shop.ordering import store as ordering
from shop.payment import store as payment
from shop.storefront import store as storefront

ROW_TYPES: dict[Table, type[tuple[Any, ...]]] = {
    catalog.products: catalog.ProductRow,
    catalog.reservations: catalog.ReservationRow,
    customer.customers: customer.CustomerRow,
    customer.addresses: customer.AddressRow,
    identity.users: identity.UserRow,
    identity.clients: identity.ClientRow,
    identity.authorization_codes: identity.AuthorizationCodeRow,
    identity.grants: identity.GrantRow,
    identity.refresh_tokens: identity.RefreshTokenRow,
    identity.revoked_access_tokens: identity.RevokedAccessTokenRow,
    identity.revocations: identity.RevocationRow,
    identity.signing_keys: identity.SigningKeyRow,
    identity.sign_in_attempts: identity.SignInAttemptsRow,
    identity.sessions: identity.SessionRow,
    ordering.orders: ordering.OrderRow,
    ordering.order_lines: ordering.OrderLineRow,
    payment.payments: payment.Payment,
    storefront.sessions: storefront.SessionRow,  # its carts and checkouts are read as values
    sagas: SagaRow,
}


def test_every_table_of_the_typed_stores_has_a_row_type() -> None:
    declared = [
        *catalog.metadata.tables.values(),
        *customer.metadata.tables.values(),
        *identity.metadata.tables.values(),
        *ordering.metadata.tables.values(),
        *payment.metadata.tables.values(),
    ]
    assert {table.name for table in declared} <= {t.name for t in ROW_TYPES}


def _python_type(hint: Any) -> tuple[type, bool]:
    """The type a field holds and whether it may be None: `str | None` is (str, True)."""
    arguments = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        held = [argument for argument in arguments if argument is not type(None)]
        return _python_type(held[0])[0], len(held) < len(arguments)
    if typing.get_origin(hint) is Literal:
        return type(arguments[0]), False
    return hint, False


def _column_type(column: Column[Any]) -> type:
    stored = column.type
    # A decorated type (UtcDateTime) says `object`; what it reads back is its base type's.
    return (stored.impl_instance if isinstance(stored, TypeDecorator) else stored).python_type


@pytest.mark.parametrize("table", list(ROW_TYPES), ids=lambda table: table.name)
def test_a_row_type_has_its_tables_columns_in_order_with_their_types(table: Table) -> None:
    row_type = ROW_TYPES[table]
    assert row_type._fields == tuple(table.c.keys())  # type: ignore[attr-defined]
    hints = typing.get_type_hints(row_type)
    for column in table.columns:
        held, optional = _python_type(hints[column.key])
        assert (held, optional) == (_column_type(column), column.nullable), column.key
