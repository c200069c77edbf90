"""What each unit's process is handed by the supervisor: its spans go to the gateway's console
(which receives only traces), and variables meant for one unit reach only that unit."""

from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry.util.re import parse_env_headers

from cleave.config import load_config
from cleave.serving.supervisor import Supervisor
from cleave.web.console.collect import span_secret
from tests.conftest import ROOT


def test_units_send_only_their_spans_to_the_gateway_and_get_their_own_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CLEAVE_VAR", str(tmp_path))
    for variable in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"):
        monkeypatch.delenv(variable, raising=False)
    config = load_config(ROOT / "cleave.toml", topology="split")
    supervisor = Supervisor(
        config,
        host="127.0.0.1",
        port=8123,
        unit_environment={"payment": {"CLEAVE_BROKER": "amqp://guest:guest@127.0.0.1:1/"}},
    )
    payment, ordering = supervisor._environment("payment"), supervisor._environment("ordering")
    # The console serves /v1/traces only: pointing the general endpoint there made every unit's
    # metric export fail with a 404.
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in payment
    assert payment["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] == "http://127.0.0.1:8123/v1/traces"
    # Each unit proves it is one of this system's with the secret the console checks.
    secret = span_secret(config.var_dir)
    assert (config.var_dir / "span-secret").stat().st_mode & 0o777 == 0o600
    assert parse_env_headers(payment["OTEL_EXPORTER_OTLP_TRACES_HEADERS"]) == {
        "authorization": f"Bearer {secret}"
    }
    assert payment["CLEAVE_BROKER"] == "amqp://guest:guest@127.0.0.1:1/"
    assert ordering.get("CLEAVE_BROKER") != payment["CLEAVE_BROKER"]

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    chosen = supervisor._environment("payment")
    assert chosen["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://collector:4318"
    assert "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" not in chosen  # the collector takes everything
    assert "OTEL_EXPORTER_OTLP_TRACES_HEADERS" not in chosen  # and never the console's secret
