"""`cleave deploy render --target lambda`: an AWS SAM template per topology that lists
`functions`, validated offline by cfn-lint (AWS's own CloudFormation and SAM resource schemas).
No AWS account here: nothing is deployed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from cleave.config import load_config
from cleave.deploy.render import render
from cleave.deploy.system import System
from cleave.errors import ConfigError
from cleave.messaging.sqs import SQSBroker
from cleave.runtime import load_services, site_service
from tests.unit.test_deploy import ROOT, cleave

CORE = '"identity", "catalog", "customer", "ordering", "storefront"'
TOPOLOGY = f"""
[topology.functions]
units = {{ core = [{CORE}], payments = ["payment"] }}
broker = "sqs://sqs.eu-west-1.amazonaws.com/?namespace=shop"
database = "postgresql+asyncpg://cleave_{{service}}@db.internal:5432/cleave_{{service}}"
functions = ["core"]
"""
TEMPLATE = "deploy/lambda/functions/template.yaml"
TOPOLOGY_BROKER = "sqs://sqs.eu-west-1.amazonaws.com/?namespace=shop"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The project's cleave.toml with one more topology: the core as a function, payments in a
    process, over SQS."""
    (tmp_path / "cleave.toml").write_text((ROOT / "cleave.toml").read_text() + TOPOLOGY)
    return tmp_path


def cfn_lint(template: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), str(template)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_rendered_template_runs_the_core_as_a_function_and_passes_cfn_lint(
    project: Path,
) -> None:
    rendered = cleave("deploy", "render", "--target", "lambda", cwd=project)
    assert rendered.returncode == 0, rendered.stderr
    assert f"wrote   {TEMPLATE}" in rendered.stdout
    assert not (project / "Dockerfile").exists()  # only the target asked for
    linted = cfn_lint(project / TEMPLATE)
    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert cleave("deploy", "check", "--target", "lambda", cwd=project).returncode == 0

    template: dict[str, Any] = yaml.safe_load((project / TEMPLATE).read_text())
    assert template["Transform"] == "AWS::Serverless-2016-10-31"
    assert set(template["Parameters"]) == {"PublicUrl", "AddressOfPayments"}
    function = template["Resources"]["CoreFunction"]["Properties"]
    assert "PaymentsFunction" not in template["Resources"]  # it serves gRPC: a process
    assert (function["Handler"], function["CodeUri"]) == (
        "cleave.serverless.handler",
        "../../../build/lambda",
    )
    variables = function["Environment"]["Variables"]
    assert (variables["CLEAVE_TOPOLOGY"], variables["CLEAVE_UNIT"]) == ("functions", "core")
    assert variables["CLEAVE_DATABASE_ORDERING"] == (
        "{{resolve:secretsmanager:cleave-databases:SecretString:ordering}}"
    )
    assert variables["CLEAVE_ADDRESS_PAYMENTS"] == {"Ref": "AddressOfPayments"}
    events = function["Events"]
    routes = {
        name: event["Properties"].get("Path")
        for name, event in events.items()
        if event["Type"] == "HttpApi"
    }
    assert routes["ApiOrdering"] == "/api/ordering/{proxy+}"
    assert routes["Site"] is None  # the storefront's pages: the API's default route
    assert "ApiPayment" not in routes
    queues = {name for name, event in events.items() if event["Type"] == "SQS"}
    # customer consumes events; the unit's revocation list has a queue of its own
    assert queues == {"CustomerQueue", "RevocationsCoreQueue"}
    for queue in queues:
        assert events[queue]["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    customer_queue = template["Resources"]["CustomerQueue"]["Properties"]
    assert customer_queue["QueueName"] == "shop-customer"
    assert customer_queue["RedrivePolicy"]["maxReceiveCount"] == 5
    assert events["Tick"] == {"Type": "Schedule", "Properties": {"Schedule": "rate(1 minute)"}}


def test_cfn_lint_names_what_breaks_the_template(project: Path) -> None:
    """The gate can fail: a property SAM does not know is an error naming it."""
    assert cleave("deploy", "render", "--target", "lambda", cwd=project).returncode == 0
    path = project / TEMPLATE
    template = yaml.safe_load(path.read_text())
    template["Resources"]["CoreFunction"]["Properties"]["Events"]["Tick"]["Properties"] = {
        "Every": "minute"
    }
    path.write_text(yaml.safe_dump(template))
    linted = cfn_lint(path)
    assert linted.returncode != 0
    assert "Every" in linted.stdout


def system_of(project: Path, functions: str, **replacing: str) -> System:
    text = (project / "cleave.toml").read_text().replace('functions = ["core"]', functions)
    for old, new in replacing.items():
        text = text.replace(old, new)
    (project / "cleave.toml").write_text(text)
    config = load_config(project / "cleave.toml")
    services = load_services(config)
    return System(
        config, text, frozenset(), "1", site_service=site_service(services), declarations=services
    )


@pytest.mark.parametrize("options", ["", "&fifo=true&max_receives=3&visibility=60"])
def test_the_templates_queues_are_the_ones_the_sqs_adapter_declares(
    project: Path, options: str
) -> None:
    """The function's cold start declares its queues through the adapter (with their topic
    subscription): the template must name and set them the same, or one overwrites the other."""
    url = f"sqs://sqs.eu-west-1.amazonaws.com/?namespace=shop{options}"
    system = system_of(project, 'functions = ["core"]', **{TOPOLOGY_BROKER: url})
    resources = yaml.safe_load(render(system, targets=("lambda",))[TEMPLATE])["Resources"]
    broker = SQSBroker(url)
    address = broker.sqs_address
    for group, logical in (("customer", "Customer"), ("revocations-core", "RevocationsCore")):
        queue = resources[f"{logical}Queue"]["Properties"]
        parked = resources[queue["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]]
        assert queue["QueueName"] == broker.queue_name(group)
        assert parked["Properties"]["QueueName"] == broker.parked_queue_name(group)
        assert queue["RedrivePolicy"]["maxReceiveCount"] == address.max_receives
        assert queue["VisibilityTimeout"] == address.visibility
        assert queue.get("FifoQueue", False) is parked["Properties"].get("FifoQueue", False)
        assert queue.get("FifoQueue", False) is address.fifo
    if address.fifo:
        assert resources["CustomerQueue"]["Properties"]["QueueName"] == "shop-customer.fifo"


@pytest.mark.parametrize(
    ("functions", "replacing", "reason"),
    [
        (
            'functions = ["payments"]',
            {},
            "unit 'payments' cannot run as a function: unit core calls payment over gRPC",
        ),
        (
            'functions = ["core"]',
            {
                "postgresql+asyncpg://cleave_{service}@db.internal:5432/cleave_{service}": (
                    "sqlite+aiosqlite:///{var}/{service}.db"
                )
            },
            "identity's database is SQLite",
        ),
        (
            'functions = ["core"]',
            {"sqs://sqs.eu-west-1.amazonaws.com/?namespace=shop": "nats://127.0.0.1:4222"},
            "it consumes events, which a function receives only as SQS events, and the broker "
            "is 'nats'",
        ),
        (
            'functions = ["core"]',
            {TOPOLOGY_BROKER: f"{TOPOLOGY_BROKER}&visibility=10"},
            "the broker's visibility=10 is shorter than the function's 30 s timeout",
        ),
    ],
)
def test_a_unit_that_cannot_be_a_function_is_refused_with_the_reason(
    project: Path, functions: str, replacing: dict[str, str], reason: str
) -> None:
    system = system_of(project, functions, **replacing)
    with pytest.raises(ConfigError, match=reason):
        render(system, targets=("lambda",))


def test_a_refusal_is_one_line_and_an_exit_code(project: Path) -> None:
    system_of(project, 'functions = ["payments"]')
    refused = cleave("deploy", "render", "--target", "lambda", cwd=project)
    assert refused.returncode == 2  # a configuration error, as every command exits on one
    assert refused.stderr.count("\n") == 1
    assert "unit 'payments' cannot run as a function" in refused.stderr
    unknown = cleave("deploy", "render", "--target", "lamda", cwd=project)
    assert unknown.returncode == 1
    assert "--target 'lamda': use one of docker, compose, kubernetes, lambda" in unknown.stderr


def test_functions_must_name_units_of_their_topology(project: Path) -> None:
    toml = project / "cleave.toml"
    toml.write_text(toml.read_text().replace('functions = ["core"]', 'functions = ["cor"]'))
    with pytest.raises(ConfigError, match=r"cleave.toml:\d+: functions names unknown unit 'cor'"):
        load_config(toml)


def test_the_plan_says_which_units_are_functions(project: Path) -> None:
    plan = cleave("plan", "-t", "functions", cwd=project)
    assert plan.returncode == 0, plan.stderr
    assert "unit core  an AWS Lambda function (cleave.serverless.handler)" in plan.stdout
    assert "unit payments  http " in plan.stdout
