"""The shop under test: a topology of several units under the supervisor, in this process, with a
fault proxy in front of every unit's gRPC and between every unit and the broker, on databases and
a broker namespace of its own (so shared servers stay untouched by anything but its own names)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from rich.console import Console

from bench.system import free_port
from cleave.config import SystemConfig, load_config
from cleave.faults.proxy import Proxies
from cleave.faults.wiring import address_variable, through_proxies
from cleave.serving.supervisor import Supervisor

ROOT = Path(__file__).resolve().parents[2]
# Settings the fault run needs on top of cleave.toml: tokens that last the whole run.
EXTRA_SETTINGS = "\n[settings.identity]\naccess_token_seconds = 7200\n"


@dataclass
class System:
    config: SystemConfig
    supervisor: Supervisor
    proxies: Proxies
    base: str
    admin_dsn: str  # PostgreSQL, to read each service's database directly
    database_prefix: str
    broker_url: str
    namespace: str
    var: Path
    log: Path
    toml: Path  # the run's cleave.toml, which every unit reads when it starts
    tokens: dict[str, str]
    admin_token: str

    def database(self, service: str) -> str:
        return f"{self.database_prefix}_{service}"

    @property
    def processor_file(self) -> Path:
        return self.config.var_dir / "card-processor.db"

    async def connect(self, service: str) -> asyncpg.Connection:
        dsn = self.admin_dsn.rsplit("/", 1)[0] + "/" + self.database(service)
        return await asyncpg.connect(dsn)

    async def deploy(self, service: str, import_path: str) -> None:
        """Roll `service`'s unit to the release at `import_path`: point `cleave.toml` at it,
        restart the unit cleanly, and return once it is ready again."""
        lines = self.toml.read_text().splitlines()
        at = next(i for i, line in enumerate(lines) if line.startswith(f"{service} = "))
        lines[at] = f'{service} = "{import_path}"'
        self.toml.write_text("\n".join(lines) + "\n")
        unit = self.config.topology.unit_of(service)
        old = self.supervisor.child(unit).process
        self.supervisor.restart(unit)
        deadline = time.monotonic() + 60
        while self.supervisor.child(unit).process is old:  # the old one finishes what it holds
            if time.monotonic() > deadline:
                raise RuntimeError(f"unit {unit} did not stop within 60 s")
            await asyncio.sleep(0.05)
        await unit_ready(self, unit)

    def log_tail(self, characters: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-characters:]


async def unit_ready(system: System, unit: str, within: float = 120.0) -> None:
    url = f"{system.config.topology.address_of(unit).http}/readyz"
    deadline = time.monotonic() + within
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get(url, timeout=1)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"unit {unit} did not come back within {within:.0f} s")


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Any:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


async def _create_databases(admin_dsn: str, names: list[str]) -> None:
    connection = await asyncpg.connect(admin_dsn)
    try:
        for name in names:
            await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


async def _drop_databases(admin_dsn: str, names: list[str]) -> None:
    with contextlib.suppress(Exception):
        connection = await asyncpg.connect(admin_dsn)
        try:
            for name in names:
                await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:]


async def _wait_ready(base: str, supervisor_task: asyncio.Task[None], log: Path) -> None:
    deadline = time.monotonic() + 300
    async with httpx.AsyncClient() as client:
        while True:
            if supervisor_task.done():
                raise RuntimeError(f"the supervisor stopped:\n{_tail(log)}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"{base}/readyz", timeout=2)).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the shop never became ready:\n{_tail(log)}")
            await asyncio.sleep(0.3)


async def demo_tokens(config: SystemConfig) -> tuple[dict[str, str], str]:
    """Access tokens from the system's identity provider, as its clients get them: alice's,
    bob's and carol's by the authorization code flow, and the admin client's."""
    from cleave.auth.client import authorization_code_token, client_credentials_token
    from cleave.auth.tokens import ADMIN_SCOPE
    from shop.identity.contract import read_credentials
    from shop.identity.domain import USER_SCOPES

    credentials = read_credentials(config.var_dir)
    cli = credentials["clients"]["cleave-cli"]

    def customer(name: str) -> str:
        user = credentials["users"][name]
        issued = authorization_code_token(
            config.issuer,
            client_id="cleave-cli",
            redirect_uri=cli["redirect_uri"],
            email=user["email"],
            password=user["password"],
            scopes=sorted(USER_SCOPES),
        )
        return str(issued["access_token"])

    tokens = {name: await asyncio.to_thread(customer, name) for name in ("alice", "bob", "carol")}
    secret = credentials["clients"]["cleave-admin"]["secret"]
    admin = await asyncio.to_thread(
        client_credentials_token, config.issuer, "cleave-admin", secret, [ADMIN_SCOPE]
    )
    return tokens, str(admin["access_token"])


@contextlib.asynccontextmanager
async def running_system(
    topology: str,
    *,
    admin_dsn: str,
    broker: str,
    settings: str = "",
    workdir: Path | None = None,
) -> AsyncIterator[System]:
    """Start `topology` on the PostgreSQL at `admin_dsn` and the broker at `broker` (each under
    names of this run's own), wait until every unit is ready, and stop and remove it all after."""
    run = uuid.uuid4().hex[:8]
    workdir = workdir or Path(tempfile.mkdtemp(prefix="cleave-faults-"))
    var, log = workdir / "var", workdir / f"{topology}.log"
    toml = workdir / "cleave.toml"
    toml.write_text((ROOT / "cleave.toml").read_text() + EXTRA_SETTINGS + settings)
    prefix = f"faults_{run}"
    host_and_port = admin_dsn.split("@", 1)[1].split("/", 1)[0]
    namespace = f"faults{run}"
    separator = "&" if "?" in broker else "?"
    broker_url = f"{broker}{separator}namespace={namespace}"
    template = load_config(toml, topology=topology)
    environment = {
        "CLEAVE_CONFIG": str(toml),
        "CLEAVE_VAR": str(var),
        "CLEAVE_TOPOLOGY": topology,
        "CLEAVE_DATABASE": f"postgresql+asyncpg://postgres@{host_and_port}/{prefix}_{{service}}",
        "CLEAVE_BROKER": broker_url,
        "CLEAVE_LOG_FORMAT": "json",
        "CLEAVE_LOG_LEVEL": "WARNING",
        "OTEL_TRACES_SAMPLER": "always_off",  # spans cost CPU the load should have
        # Units start in the run's folder: the repository stays importable, for the releases
        # a class rolls a unit to (`next_release`).
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    for unit in template.topology.units:  # every port its own, /metrics too: runs never meet
        environment[address_variable(unit)] = f"127.0.0.1:{free_port()}:{free_port()}:{free_port()}"
    names = [f"{prefix}_{service}" for service in template.services]
    await _create_databases(admin_dsn, names)
    port = free_port()
    with _environment(environment):
        config = load_config(toml, topology=topology).serving_at("127.0.0.1", port)
        wired = await through_proxies(config, calls=True, broker=True, databases=False)
        output = log.open("w")
        supervisor = Supervisor(
            config,
            host="127.0.0.1",
            port=port,
            console=Console(file=output, highlight=False, soft_wrap=True, width=200),
            unit_environment=wired.unit_environment,
            ready_timeout_seconds=300,
        )
        task = asyncio.create_task(supervisor.run())
        base = f"http://127.0.0.1:{port}"
        try:
            await _wait_ready(base, task, log)
            tokens, admin = await demo_tokens(config)
            yield System(
                config=config,
                supervisor=supervisor,
                proxies=wired.proxies,
                base=base,
                admin_dsn=admin_dsn,
                database_prefix=prefix,
                broker_url=broker_url,
                namespace=namespace,
                var=var,
                log=log,
                toml=toml,
                tokens=tokens,
                admin_token=admin,
            )
        finally:
            supervisor.shutdown()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 60)
            await wired.proxies.stop()
            output.close()
            await _drop_databases(admin_dsn, names)


async def create_products(system: System, tag: str, *, scarce_stock: int) -> dict[str, str]:
    """A plentiful and a scarce product of the class's own, so its stock adds up on its own."""
    prefix = tag.upper()  # SKUs are upper-case letters, digits and dashes
    skus = {
        "bulk": f"{prefix}-BULK",
        "scarce": f"{prefix}-SCARCE",
        "unknown": f"{prefix}-NO-SUCH-THING",
    }
    headers = {"Authorization": f"Bearer {system.admin_token}"}
    async with httpx.AsyncClient(base_url=system.base, headers=headers, timeout=30) as client:
        for kind, stock in (("bulk", 1_000_000), ("scarce", scarce_stock)):
            created = await client.post(
                "/api/catalog/v1/products",
                json={
                    "sku": skus[kind],
                    "name": f"{tag} {kind}",
                    "price": {"amount": 1000 + len(kind), "currency": "EUR"},
                    "stock": stock,
                },
            )
            if created.status_code != 201:
                raise RuntimeError(f"cannot create {skus[kind]}: {created.text}")
    return skus


def write_plan(
    path: Path, system: System, tag: str, skus: dict[str, str], count: int, rate: float
) -> None:
    path.write_text(
        json.dumps(
            {
                "base": system.base,
                "tokens": system.tokens,
                "tag": tag,
                "skus": skus,
                "count": count,
                "rate": rate,
            }
        )
    )
