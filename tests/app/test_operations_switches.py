"""The operations switches of issue 13 wired into the HyperPod layer (observability with Grafana and
logging, the training operator, task governance with a team, Karpenter autoscaling), all on in a closed
network: the real CLI synth passes cdk-nag, cfn-lint and checkov (every skip explained), every
security-group flow still holds (the collectors' scrape flows included), and every IAM statement holds
up against AWS's references. Off, the templates are exactly those of a config without the sections."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests import checkov_scan
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
    assert {"AWS::SageMaker::ClusterSchedulerConfig", "Custom::ComputeQuota", "Custom::KubernetesObjects"} <= kinds
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


def test_checkov_finds_nothing_unexplained_with_every_switch_on(all_on):
    # The same scan and skip rules as the default synth (tests/checkov_scan.py), over what the switches add.
    reports = checkov_scan.scan(sorted(all_on.glob("*.template.json")))
    assert checkov_scan.unexplained(reports) == []
    scanned = {c["resource"] for r in reports for c in r.get("results", {}).get("passed_checks", [])}
    assert any(".Observability" in c for c in scanned) and any(".TrainingOperator" in c for c in scanned)
