"""The operations switches of issue 13 that this app wires into the HyperPod layer (observability with
Grafana and logging, the training operator, task governance with a team, Karpenter autoscaling), all on in a closed network: the
real CLI synth passes cdk-nag and cfn-lint, checkov finds nothing in the observability and
training-operator resources, every security-group flow still holds (the collectors' scrape flows
included), and every IAM statement holds up against AWS's references. Off, the templates are exactly
those of a config without the sections."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.app.conftest import BIN, run_cdk_synth
from tests.conftest import cdk_context
from tests.in_process import synth, synth_context
from tests.rules import iam_reference, network

SWITCHES = (
    "observability.enabled=true",
    "observability.grafana=true",
    "observability.logging=true",
    "training_operator.enabled=true",
    "task_governance.enabled=true",
    "task_governance.teams=[{name: research, instance_quotas: [{instance_type: ml.p5.48xlarge, count: 1}]}]",
    "network.interface_endpoints=true",
    # Karpenter autoscaling: the p5 group stays fixed (the team's quota needs it), a g5 group scales from 0.
    "hyperpod.autoscaling=karpenter",
    "hyperpod.instance_groups=[{name: worker-group-1, instance_type: ml.p5.48xlarge, instance_count: 2, "
    "deep_health_checks: [InstanceStress, InstanceConnectivity]}, "
    "{name: g5-auto, instance_type: ml.g5.12xlarge, instance_count: 0, karpenter: true}]",
)
SECTIONS = ("observability", "training_operator", "task_governance")


@pytest.fixture(scope="module")
def all_on(tmp_path_factory):
    out = tmp_path_factory.mktemp("ops-on")
    result = run_cdk_synth(out, *[a for s in SWITCHES for a in ("-c", s)])
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def _templates(out) -> dict[str, dict]:
    return {p.name.removesuffix(".template.json"): json.loads(p.read_text()) for p in out.glob("*.template.json")}


def test_all_switches_on_pass_cdk_nag_and_cfn_lint(all_on):
    # cdk-nag is registered on the app, so an unacknowledged finding would have failed the synth itself.
    (report,) = all_on.glob("**/validation-report.json")
    for plugin in json.loads(report.read_text()).get("pluginReports", []):
        assert all(
            r.get("acknowledged", False) for v in plugin.get("violations", []) for r in v.get("violatingResources", [])
        )
    files = sorted(str(p) for p in all_on.glob("*.template.json"))
    result = subprocess.run(
        [str(BIN / "cfn-lint"), "--format", "parseable", "--ignore-checks", "W3005", "--", *files],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    kinds = {r["Type"] for t in _templates(all_on).values() for r in t["Resources"].values()}
    assert {"AWS::APS::Workspace", "AWS::Grafana::Workspace", "AWS::EKS::Addon"} <= kinds
    assert {"AWS::SageMaker::ClusterSchedulerConfig", "Custom::ComputeQuota"} <= kinds
    (cluster,) = [
        r
        for t in _templates(all_on).values()
        for r in t["Resources"].values()
        if r["Type"] == "Custom::HyperPodCluster"
    ]
    assert '\\"AutoScaling\\":{\\"Mode\\":\\"Enable\\"' in json.dumps(cluster["Properties"]["ClusterRequest"])


def test_all_switches_on_keep_every_flow_including_the_collectors_scrapes(all_on):
    templates = _templates(all_on)
    assert network.check(templates, [*network.FLOWS, *network.OBSERVABILITY_FLOWS]) == []
    # The closed network's endpoints (aps-workspaces among them) are reachable from both node kinds.
    endpoints = [f for f in network.FLOWS if f.destination == "interface_endpoints"]
    assert (
        network.check(
            templates, [network.Flow(f.name, f.source, f.destination, f.protocol, f.ports) for f in endpoints]
        )
        == []
    )


def test_all_switches_on_grant_only_what_aws_references_allow(all_on):
    assert iam_reference.check(_templates(all_on)) == []


def test_switches_off_leave_the_templates_exactly_as_without_the_sections():
    context = cdk_context()
    for section in SECTIONS:
        del context["config_defaults"][section]
    assert synth() == synth_context(context)


# Logical-id prefixes of what these switches add (the rest of the app has its own checkov review).
OPERATIONS_RESOURCES = ("Observability", "TrainingOperator", "VpcPrometheusWorkspacesEndpoint")


def test_checkov_finds_nothing_in_what_the_observability_and_training_operator_switches_add(all_on):
    checkov = Path(sys.executable).parent.parent / "checkov" / "bin" / "checkov"
    if not checkov.exists():
        pytest.fail(f"checkov not installed at {checkov}: run `make venv`")
    templates = [all_on / f"hyperpod-sky-{name}.template.json" for name in ("hyperpod", "network")]
    completed = subprocess.run(
        [str(checkov), "--framework", "cloudformation", "--output", "json", "--compact", "--skip-download"]
        + [a for t in templates for a in ("-f", str(t))],
        capture_output=True,
        text=True,
        timeout=600,
        env={"PATH": "/usr/bin:/bin", "HOME": tempfile.mkdtemp(prefix="checkov-home-"), "LOG_LEVEL": "ERROR"},
    )
    assert completed.returncode in (0, 1) and completed.stdout.strip(), completed.stderr[-2000:]
    reports = json.loads(completed.stdout)
    results = [r["results"] for r in (reports if isinstance(reports, list) else [reports])]
    ours = [
        c
        for r in results
        for c in r["passed_checks"] + r["failed_checks"]
        if c["resource"].split(".", 1)[1].startswith(OPERATIONS_RESOURCES)
    ]
    assert {c["resource"].split(".", 1)[0] for c in ours} >= {"AWS::IAM::Role", "AWS::IAM::Policy"}
    failed = [f"{c['check_id']} {c['resource']}" for r in results for c in r["failed_checks"] if c in ours]
    assert failed == []
