"""The `cleave` command as a person uses it: a real server process, real tokens, curl-like calls,
and one clear line with a non-zero exit for every kind of bad input."""

from __future__ import annotations

import base64
import json
import platform
import select
import shutil
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import started_cleave
from tests.e2e.conftest import ROOT, RunningSystem, cleave, free_port


def test_a_new_user_gets_a_token_and_places_an_order_with_curl(
    running_system: RunningSystem,
) -> None:
    server, env = running_system.base, running_system.env
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
    assert httpx.get(f"{server}/metrics").status_code == 404  # not on the public port
    metrics = httpx.get(f"http://127.0.0.1:{env['CLEAVE_METRICS_PORT']}/metrics").text
    assert 'cleave_http_requests_total{method="POST"' in metrics


def test_the_server_refuses_a_port_in_use_in_one_line(
    running_system: RunningSystem, tmp_path: Path
) -> None:
    server, env = running_system.base, running_system.env
    port = server.rsplit(":", 1)[1]
    elsewhere = {**env, "CLEAVE_VAR": str(tmp_path / "elsewhere")}
    result = cleave("up", "--port", port, env=elsewhere)
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == f"error: port {port} on 127.0.0.1 is in use (choose another with --port)"
    )


def test_a_second_server_on_the_same_state_is_refused_naming_the_first(
    running_system: RunningSystem,
) -> None:
    server, env = running_system.base, running_system.env
    result = cleave("up", "--port", str(free_port()), env=env)
    assert result.returncode == 1
    assert result.stderr.startswith(
        f"error: topology monolith is already being served at {server} (pid "
    )
    assert len(result.stderr.strip().splitlines()) == 1


def test_deleting_the_state_folder_under_a_running_server_stops_it_saying_why(
    env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "up.log"
    with started_cleave(
        "up", "--port", str(port), base=f"http://127.0.0.1:{port}", log=log, env=env
    ) as up:
        shutil.rmtree(Path(env["CLEAVE_VAR"]) / "monolith")
        assert up.process.wait(timeout=20) == 1
    assert "was deleted while this server was running on it" in log.read_text()


def test_admin_commands_act_on_the_running_system_and_say_so(running_system: RunningSystem) -> None:
    server, env = running_system.base, running_system.env
    listed = cleave("users", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0].split() == ["id", "email", "name", "state", "role"]
    [administrator] = [line for line in listed.stdout.splitlines() if "admin@example.com" in line]
    assert administrator.split()[-1] == "admin"  # the seed's demo administrator
    assert f"on topology monolith (running at {server})" in listed.stderr
    letters = cleave("dlq", "list", env=env)
    assert f"on topology monolith (running at {server})" in letters.stderr


def test_status_and_doctor_see_the_running_system(running_system: RunningSystem) -> None:
    server, env = running_system.base, running_system.env
    status = cleave("status", env=env)
    assert status.returncode == 0, status.stderr
    assert f"topology monolith · running at {server}" in status.stdout
    assert f"console {server}/console" in status.stdout
    [shop] = [line for line in status.stdout.splitlines() if line.startswith("shop ")]
    assert server in shop
    assert env["CLEAVE_METRICS_PORT"] in shop
    assert shop.split()[-1] == "ready"
    port = server.rsplit(":", 1)[1]
    doctor = cleave("doctor", "--port", port, env=env)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert f"✔ port system: 127.0.0.1:{port} in use by this system" in doctor.stdout


def test_logs_show_a_units_lines_and_follow_new_ones(server: str, env: dict[str, str]) -> None:
    shown = cleave("logs", "shop", env=env)
    assert shown.returncode == 0, shown.stderr
    assert "unit serving" in shown.stdout
    assert not shown.stdout.lstrip().startswith("{")  # for a person, not raw JSON
    by_service = cleave("logs", "catalog", "--json", "--lines", "500", env=env)
    records = [json.loads(line) for line in by_service.stdout.splitlines()]
    assert any(record["event"] == "unit serving" for record in records)
    warnings = cleave("logs", "shop", "--level", "warning", "--json", "-n", "500", env=env)
    assert all(
        json.loads(line)["level"] in ("warning", "error", "critical")
        for line in warnings.stdout.splitlines()
    )

    marker = f"restock {time.monotonic_ns()}"
    with subprocess.Popen(
        [sys.executable, "-m", "cleave", "logs", "shop", "-f", "-n", "0", "--grep", marker],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    ) as follower:
        try:
            admin = cleave("token", "--scope", "admin", env=env).stdout.strip()
            assert follower.stdout is not None
            # A line written before the follower has read to the end is not new to it (-n 0):
            # adjust again until one comes through, instead of guessing how long its start takes.
            deadline = time.monotonic() + 30
            while not select.select([follower.stdout], [], [], 0.5)[0]:
                assert time.monotonic() < deadline, "the follower printed no new line"
                adjusted = httpx.post(
                    f"{server}/api/catalog/v1/products/MUG-CLASSIC/stock-adjustments",
                    json={"delta": 1, "reason": marker},
                    headers={"Authorization": f"Bearer {admin}"},
                )
                assert adjusted.status_code == 200, adjusted.text
            line = follower.stdout.readline()
            assert "stock adjusted" in line
            assert marker in line
        finally:
            follower.terminate()

    unknown = cleave("logs", "nowhere", env=env)
    assert unknown.returncode == 1
    assert unknown.stderr.strip().startswith("error: no unit or service 'nowhere'")
    assert "(its units: shop)" in unknown.stderr


def test_the_shell_completes_commands_and_their_options(env: dict[str, str]) -> None:
    """What `cleave --install-completion` installs: the script, and the answers it asks for."""
    script = cleave("--show-completion", env={**env, "SHELL": "/bin/bash"})
    assert script.returncode == 0, script.stderr
    assert "complete -o default -F _cleave_completion cleave" in script.stdout

    def completions(words: str) -> list[str]:
        asked = {
            **env,
            "_CLEAVE_COMPLETE": "complete_bash",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split()) - 1),
        }
        answered = cleave(env=asked)
        assert answered.returncode == 0, answered.stderr
        return answered.stdout.split()

    assert completions("cleave lo") == ["logs"]
    assert "--follow" in completions("cleave logs --f")
    assert completions("cleave sagas re") == ["retry"]


def test_version_and_status_and_doctor_with_nothing_running(env: dict[str, str]) -> None:
    version = cleave("--version", env=env)
    assert version.returncode == 0
    assert version.stdout.strip() == (
        f"cleave {metadata.version('cleave')} (Python {platform.python_version()})"
    )
    idle = cleave("status", env=env)
    assert idle.returncode == 0
    assert (
        idle.stdout.strip()
        == f"nothing is running from {env['CLEAVE_VAR']} (start it with `cleave up`)"
    )

    ready = cleave("doctor", "--port", str(free_port()), env=env)
    assert ready.returncode == 0, ready.stdout + ready.stderr
    assert "ready: cleave up -t monolith" in ready.stdout
    with socket.socket() as taken:  # another program on the metrics port, and no PostgreSQL
        taken.bind(("127.0.0.1", int(env["CLEAVE_METRICS_PORT"])))
        taken.listen()
        env["CLEAVE_DATABASE_PAYMENT"] = "postgresql+asyncpg://nobody@127.0.0.1:1/payment"
        sick = cleave("doctor", "--port", str(free_port()), env=env)
    assert sick.returncode == 1
    assert sick.stderr.strip() == "error: 2 problems for topology monolith: see the fixes above"
    lines = sick.stdout.splitlines()
    database = lines.index("✘ database payment: [Errno 111] Connection refused")
    assert lines[database + 1].strip().startswith("fix: start PostgreSQL at 127.0.0.1:1")
    metrics = next(i for i, line in enumerate(lines) if line.startswith("✘ port unit shop metrics"))
    assert "taken by another program" in lines[metrics]
    assert "CLEAVE_METRICS_PORT" in lines[metrics + 1]


def test_each_topology_keeps_its_own_state_and_a_seed_never_rotates_a_kept_secret(
    running_system: RunningSystem, tmp_path: Path
) -> None:
    env = running_system.env
    config = tmp_path / "cleave.toml"
    config.write_text(
        (ROOT / "cleave.toml").read_text()
        + '\n[topology.sandbox]\nunits = { all = ["*"] }\nbroker = "memory"\n'
    )
    with_sandbox = {**env, "CLEAVE_CONFIG": str(config)}
    var = Path(env["CLEAVE_VAR"])
    before = (var / "monolith" / "dev-credentials.json").read_text()
    assert cleave("seed", "-t", "sandbox", env=with_sandbox).returncode == 0
    assert (var / "monolith" / "dev-credentials.json").read_text() == before
    kept = json.loads((var / "sandbox" / "dev-credentials.json").read_text())
    for database in (var / "sandbox").glob("identity.db*"):
        database.unlink()  # the provider forgets its clients; the seed must not rotate the secret
    assert cleave("seed", "-t", "sandbox", env=with_sandbox).returncode == 0
    again = json.loads((var / "sandbox" / "dev-credentials.json").read_text())
    assert again["clients"]["cleave-admin"] == kept["clients"]["cleave-admin"]
    admin = cleave("token", "--scope", "admin", env=env)  # still the monolith's own secret
    assert admin.returncode == 0, admin.stderr


def test_token_errors_are_what_the_provider_said(running_system: RunningSystem) -> None:
    env = running_system.env
    refused = cleave("token", "--customer", "alice", "--scope", "admin", env=env)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        "error: the provider refused: cleave-cli may not ask for: admin (invalid_scope)"
    )
    unclear = cleave("token", "--scope", "orders:read", env=env)
    assert unclear.returncode == 1
    assert "needs a --customer or a --client ID --secret-stdin" in unclear.stderr


def test_the_bare_command_and_help_read_cleanly(env: dict[str, str]) -> None:
    bare = cleave(env=env)
    assert bare.returncode == 0
    assert "Usage: cleave" in bare.stdout
    assert not bare.stderr
    helped = cleave("up", "--help", env=env)
    assert "--no-seed" in helped.stdout
    assert "<bool>" not in helped.stdout
    plan = cleave("plan", env=env).stdout
    assert "unit shop  http http://127.0.0.1:8000" in plan
    assert "grpc" not in plan


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("--bad",), 2, "error: No such option: --bad"),
        (
            ("migrate", "nope"),
            2,
            "error: unknown service 'nope' "
            "(known: identity, catalog, customer, ordering, payment, storefront)",
        ),
        (
            ("up", "--topology", "nope"),
            2,
            "error: unknown topology 'nope' (known: aws, kafka, monolith, payments-out, split)",
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


# A dozen commands, each a Python process that imports the whole system.
@pytest.mark.timeout(300)
def test_an_operator_administers_clients_users_and_keys(running_system: RunningSystem) -> None:
    server, env = running_system.base, running_system.env
    created = cleave("clients", "create", "reporting", "--scope", "orders:read", env=env)
    assert created.returncode == 0, created.stderr
    secret = created.stdout.split("secret: ")[1].strip()
    assert secret not in cleave("clients", "list", env=env).stdout
    token = cleave("token", "--client", "reporting", "--secret-stdin", env=env, stdin=secret + "\n")
    assert token.returncode == 0, token.stderr
    headers = {"Authorization": f"Bearer {token.stdout.strip()}"}
    # A client's own token is no customer's: neither a person's orders nor the admin's list.
    as_client = httpx.get(f"{server}/api/ordering/v1/orders", headers=headers)
    assert (as_client.status_code, as_client.json()["code"]) == (403, "client-token")
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
    made = cleave("users", "create", "eve@example.com", "--name", "Eve", "--admin", env=env)
    assert made.returncode == 0, made.stderr
    listed = cleave("users", "list", env=env).stdout
    assert "dan@example.com" in listed
    [eve] = [line for line in listed.splitlines() if "eve@example.com" in line]
    assert eve.split()[-1] == "admin"  # an administrator, as asked
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
