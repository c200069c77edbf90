"""The `cleave` command as a person uses it: a real server process, real tokens, curl-like calls,
and one clear line with a non-zero exit for every kind of bad input."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import ROOT, cleave


def test_a_new_user_gets_a_token_and_places_an_order_with_curl(
    server: str, env: dict[str, str]
) -> None:
    token = cleave("token", "--customer", "alice", env=env)
    assert token.returncode == 0, token.stderr
    headers = {"Authorization": f"Bearer {token.stdout.strip()}"}
    assert httpx.get(f"{server}/docs").status_code == 200
    products = httpx.get(f"{server}/api/catalog/v1/products", params={"limit": 100}).json()["items"]
    assert len(products) >= 20

    body: dict[str, Any] = {
        "lines": [{"sku": "MUG-CLASSIC", "quantity": 2}],
        "card_token": "tok_approve",
        "shipping_address": {
            "name": "Alice Example",
            "line1": "1 Main St",
            "city": "Utrecht",
            "postal_code": "3511",
            "country": "NL",
        },
    }
    placed = httpx.post(f"{server}/api/ordering/v1/orders", json=body, headers=headers)
    assert placed.status_code == 202, placed.text
    order_url = f"{server}/api/ordering/v1/orders/{placed.json()['id']}"
    deadline = time.monotonic() + 10
    while (status := httpx.get(order_url, headers=headers).json()["status"]) == "pending":
        assert time.monotonic() < deadline, "the order never left pending"
        time.sleep(0.02)
    assert status == "confirmed"
    metrics = httpx.get(f"{server}/metrics").text
    assert 'cleave_http_requests_total{method="POST"' in metrics


def test_the_server_refuses_a_port_in_use_in_one_line(server: str, env: dict[str, str]) -> None:
    port = server.rsplit(":", 1)[1]
    result = cleave("up", "--port", port, env=env)
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == f"error: port {port} on 127.0.0.1 is in use (choose another with --port)"
    )


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("--bad",), 2, "error: No such option: --bad"),
        (
            ("migrate", "nope"),
            2,
            "error: unknown service 'nope' (known: identity, catalog, customer, ordering, payment, storefront)",
        ),
        (
            ("up", "--topology", "nope"),
            2,
            "error: unknown topology 'nope' (known: monolith, payments-out, split)",
        ),
        (("up", "--port", "99999"), 2, "error: Invalid value for '--port'"),
        (("token",), 1, "error: name a --customer, or the --scope to grant"),
        (("dlq", "replay", "customer"), 1, "error: 'customer' is not SERVICE:ID"),
    ],
)
def test_bad_input_gets_one_line_and_an_exit_code(
    env: dict[str, str], args: tuple[str, ...], code: int, message: str
) -> None:
    result = cleave(*args, env=env)
    assert result.returncode == code
    assert result.stderr.startswith(message)
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_an_unreachable_database_is_one_line(env: dict[str, str]) -> None:
    env["CLEAVE_DATABASE"] = "postgresql+asyncpg://nobody@127.0.0.1:1/{service}"
    result = cleave("migrate", env=env)
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot reach the database of identity")
    assert len(result.stderr.strip().splitlines()) == 1


def test_migrate_seed_and_inspect(env: dict[str, str]) -> None:
    first = cleave("migrate", env=env)
    assert first.returncode == 0, first.stderr
    assert "catalog_0001" in first.stdout
    again = cleave("migrate", "catalog", env=env)
    assert again.stdout.split()[-3:] == ["up", "to", "date"]
    seeded = cleave("seed", env=env)
    assert "catalog    24 added" in seeded.stdout
    assert "catalog    0 added" in cleave("seed", env=env).stdout

    services = cleave("services", env=env).stdout
    assert "POST   /api/ordering/v1/orders" in services
    assert "shop.ordering.order_confirmed.v1 → on_order_confirmed" in services
    assert "CatalogPort, CustomerPort, PaymentPort" in services
    assert cleave("dlq", "list", env=env).stdout.strip() == "no dead letters"


def test_an_operator_administers_clients_users_and_keys(server: str, env: dict[str, str]) -> None:
    created = cleave("clients", "create", "reporting", "--scope", "orders:read", env=env)
    assert created.returncode == 0, created.stderr
    secret = created.stdout.split("secret: ")[1].strip()
    assert secret not in cleave("clients", "list", env=env).stdout
    token = subprocess.run(
        [sys.executable, "-m", "cleave", "token", "--client", "reporting", "--secret-stdin"],
        cwd=ROOT,
        env=env,
        input=secret + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert token.returncode == 0, token.stderr
    headers = {"Authorization": f"Bearer {token.stdout.strip()}"}
    assert httpx.get(f"{server}/api/ordering/v1/orders", headers=headers).status_code == 200
    assert httpx.get(f"{server}/api/customer/v1/customers", headers=headers).status_code == 403

    admin = cleave("token", "--scope", "admin", env=env)
    assert admin.returncode == 0, admin.stderr
    admin_headers = {"Authorization": f"Bearer {admin.stdout.strip()}"}
    assert (
        httpx.get(f"{server}/api/customer/v1/customers", headers=admin_headers).status_code == 200
    )

    assert (
        "user dan created"
        in cleave(
            "users", "create", "dan@example.com", "--name", "Dan", "--id", "dan", env=env
        ).stdout
    )
    assert "dan@example.com" in cleave("users", "list", env=env).stdout
    assert cleave("users", "disable", "dan", env=env).returncode == 0
    assert "disabled" in cleave("users", "list", env=env).stdout
    # The new key is published now and signs only after the lead time, by when every service has it.
    rotated = cleave("keys", "rotate", env=env)
    assert rotated.returncode == 0, rotated.stderr
    kid = rotated.stdout.split()[1]
    jwks = httpx.get(f"{server}/api/identity/v1/jwks").json()["keys"]
    assert kid in {key["kid"] for key in jwks}
    assert len(jwks) == 2
    again = cleave("token", "--customer", "alice", env=env)
    assert again.returncode == 0, again.stderr
    me = httpx.get(
        f"{server}/api/customer/v1/customers/me",
        headers={"Authorization": f"Bearer {again.stdout.strip()}"},
    )
    assert me.status_code == 200
    header = json.loads(base64.urlsafe_b64decode(again.stdout.split(".")[0] + "=="))
    assert header["kid"] != kid
    missing = cleave("clients", "delete", "nope", env=env)
    assert missing.returncode == 1
    assert missing.stderr.strip() == "error: no client 'nope'"
