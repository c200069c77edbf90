"""Which failures a restart can fix: a unit that cannot start because of how it is configured
exits 78 (EX_CONFIG) and its supervisor stops; one whose database is merely not up yet is
restarted. Checked against a real PostgreSQL, as `cleave run` meets the errors."""

from __future__ import annotations

import socket
import uuid

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from cleave.data.database import Database
from cleave.errors import ConfigError, DatabaseUnavailable, Unrecoverable
from cleave.serving.server import PortInUse, check_port_free, unrecoverable
from tests.conftest import require_server
from tests.services import POSTGRES


async def database_failure(url: str) -> DatabaseUnavailable:
    database = Database("catalog", url)
    try:
        with pytest.raises(DatabaseUnavailable) as raised:
            await database.ping()
    finally:
        await database.dispose()
    return raised.value


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresql+asyncpg://{nobody}@127.0.0.1:5432/postgres", "does not exist"),
        ("postgresql+asyncpg://postgres@127.0.0.1:5432/{nobody}", "does not exist"),
        ("postgresql+asyncpg://postgres@no-such-host.invalid:5432/postgres", "no-such-host"),
    ],
)
async def test_a_database_that_is_configured_wrong_cannot_be_fixed_by_a_restart(
    url: str, says: str
) -> None:
    require_server("PostgreSQL", POSTGRES)
    failure = await database_failure(url.format(nobody=f"cleave_n{uuid.uuid4().hex[:8]}"))
    permanent = unrecoverable(failure)
    assert permanent is not None
    assert says in str(permanent)
    assert "admin_url" in str(permanent)  # what to do about it


async def test_a_database_that_is_not_up_yet_is_worth_a_restart() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    failure = await database_failure(f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres")
    assert unrecoverable(failure) is None


def test_a_bad_url_a_port_in_use_and_a_broken_import_cannot_be_fixed_by_a_restart() -> None:
    with pytest.raises(ArgumentError) as bad_url:
        make_url("not a url at all")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(PortInUse) as in_use:
            check_port_free("127.0.0.1", taken.getsockname()[1])
    errors: tuple[BaseException, ...] = (
        bad_url.value,
        in_use.value,
        ImportError("no module named shop.nothing"),
        ConfigError("service 'x': cannot import 'shop.nothing'"),
    )
    for error in errors:
        assert isinstance(unrecoverable(error), Unrecoverable), error
    assert unrecoverable(RuntimeError("a bug that may not happen twice")) is None
