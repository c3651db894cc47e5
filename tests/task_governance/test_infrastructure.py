"""Task governance over the synthesized app: on, the add-on, the cluster policy and one compute quota per
team exist in dependency order, their requests satisfy botocore's SageMaker model, IAM holds up against
AWS's references, cdk-nag and cfn-lint are clean; off, every template is byte-for-byte what it was."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import botocore.session
import pytest
from botocore.validate import ParamValidator

from config import outputs as output_keys
from config import sagemaker_api
from config import task_governance_names as names
from constructs.hyperpod_cluster import asset
from constructs.task_governance import infrastructure as tg
from tests.app.conftest import BIN, run_cdk_synth
from tests.conftest import cdk_context
from tests.in_process import synth_context
from tests.rules import iam_reference, network
from tests.rules.network import parse_json_with_intrinsics

GOVERNED = textwrap.dedent(
    """
    hyperpod:
      instance_groups:
        - {name: worker-group-1, instance_type: ml.p5.48xlarge, instance_count: 2,
           deep_health_checks: [InstanceStress, InstanceConnectivity]}
        - {name: g5, instance_type: ml.g5.8xlarge, instance_count: 4}
    task_governance:
      enabled: true
      teams:
        - name: research
          instance_quotas: [{instance_type: ml.p5.48xlarge, count: 1}, {instance_type: ml.g5.8xlarge, count: 2}]
        - name: platform
          instance_quotas: [{instance_type: ml.p5.48xlarge, count: 1}]
          lend_and_borrow: false
          fair_share_weight: 10
          preempt_team_tasks: Never
    """
)
HYPERPOD = "hyperpod-sky-hyperpod"


@pytest.fixture(scope="module")
def governed(tmp_path_factory):
    root = tmp_path_factory.mktemp("governed")
    (root / "governed.yaml").write_text(GOVERNED)
    out = root / "cdk.out"
    result = run_cdk_synth(out, "-c", f"config={root / 'governed.yaml'}")  # cdk-nag runs inside synth
    assert result.returncode == 0, result.stdout + result.stderr
    templates = {p.name.removesuffix(".template.json"): json.loads(p.read_text()) for p in out.glob("*.template.json")}
    return out, templates


def _of_type(template: dict, kind: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def _shape(operation: str):
    return botocore.session.get_session().get_service_model("sagemaker").operation_model(operation).input_shape


def test_the_addon_policy_and_quotas_are_created_in_dependency_order(governed):
    _, templates = governed
    hyperpod = templates[HYPERPOD]
    ((addon_id, addon),) = _of_type(hyperpod, "AWS::EKS::Addon").items()
    assert addon["Properties"]["AddonName"] == "amazon-sagemaker-hyperpod-taskgovernance"
    assert addon["Properties"]["ClusterName"] == {
        "Fn::ImportValue": "hyperpod-sky-eks:ExportsOutputRefClusterEB0386A796A0E3FE"
    }
    # After the HyperPod cluster is InService (its WaitCondition), not merely requested.
    (wait_id,) = _of_type(hyperpod, "AWS::CloudFormation::WaitCondition")
    assert addon["DependsOn"] == [wait_id]
    ((policy_id, policy),) = _of_type(hyperpod, "AWS::SageMaker::ClusterSchedulerConfig").items()
    assert policy["DependsOn"] == [addon_id]
    quotas = _of_type(hyperpod, tg.RESOURCE_TYPE)
    assert len(quotas) == 2
    assert all(q["DependsOn"] == [policy_id] for q in quotas.values())


def test_the_cluster_policy_carries_the_priority_classes_and_fair_share_for_this_cluster(governed):
    _, templates = governed
    (policy,) = _of_type(templates[HYPERPOD], "AWS::SageMaker::ClusterSchedulerConfig").values()
    props = policy["Properties"]
    assert props["ClusterArn"] == {"Fn::GetAtt": ["ClusterEB0386A7", "ClusterArn"]}
    assert props["SchedulerConfig"] == {
        "FairShare": "Enabled",
        "PriorityClasses": [
            {"Name": "inference", "Weight": 100},
            {"Name": "experimentation", "Weight": 90},
            {"Name": "training", "Weight": 80},
            {"Name": "fine-tuning", "Weight": 70},
            {"Name": "interactive", "Weight": 60},
        ],
    }
    # The same structure the SageMaker API takes (CreateClusterSchedulerConfig), with a valid name.
    request = {
        "Name": props["Name"],
        "ClusterArn": "arn:aws:sagemaker:us-east-1:1:cluster/x",
        "SchedulerConfig": props["SchedulerConfig"],
    }
    assert not ParamValidator().validate(request, _shape("CreateClusterSchedulerConfig")).has_errors()
    assert sagemaker_api.full_match("EntityName", props["Name"])


def test_each_quota_request_is_what_create_compute_quota_accepts_for_its_team(governed):
    _, templates = governed
    requests = {}
    for quota in _of_type(templates[HYPERPOD], tg.RESOURCE_TYPE).values():
        request = parse_json_with_intrinsics(quota["Properties"]["ComputeQuota"])
        assert quota["Properties"]["OwnerTagKey"] == tg.OWNER_TAG_KEY
        # This very cluster, resolved at deploy time; validated with an ARN of the shape it resolves to.
        assert request["ClusterArn"] == {"Fn::GetAtt": ["ClusterEB0386A7", "ClusterArn"]}
        sample = {**request, "ClusterArn": "arn:aws:sagemaker:us-east-1:123456789012:cluster/abc123def456"}
        report = ParamValidator().validate(sample, _shape("CreateComputeQuota"))
        assert not report.has_errors(), report.generate_report()
        requests[request["ComputeQuotaTarget"]["TeamName"]] = request
    assert requests["research"]["ComputeQuotaConfig"] == {
        "ComputeQuotaResources": [
            {"InstanceType": "ml.p5.48xlarge", "Count": 1},
            {"InstanceType": "ml.g5.8xlarge", "Count": 2},
        ],
        "ResourceSharingConfig": {"Strategy": "LendAndBorrow"},
        "PreemptTeamTasks": "LowerPriority",
    }
    assert requests["platform"]["ComputeQuotaConfig"]["ResourceSharingConfig"] == {"Strategy": "DontLend"}
    assert requests["platform"]["ComputeQuotaConfig"]["PreemptTeamTasks"] == "Never"
    assert requests["platform"]["ComputeQuotaTarget"] == {"TeamName": "platform", "FairShareWeight": 10}
    assert {r["Name"] for r in requests.values()} == {"hyperpod-sky-research", "hyperpod-sky-platform"}
    # botocore's validator checks types and lengths, not patterns: the name's pattern is checked here.
    assert all(sagemaker_api.full_match("EntityName", r["Name"]) for r in requests.values())
    owners = {t["Value"] for r in requests.values() for t in r["Tags"] if t["Key"] == tg.OWNER_TAG_KEY}
    assert len(owners) == 1 and owners.pop().startswith(f"{HYPERPOD}/")


def test_post_deploy_gets_the_teams_and_priority_classes_as_outputs(governed):
    _, templates = governed
    outputs = templates[HYPERPOD]["Outputs"]
    assert outputs[output_keys.TASK_GOVERNANCE_TEAMS]["Value"] == "research,platform"
    assert outputs[output_keys.TASK_GOVERNANCE_PRIORITY_CLASSES]["Value"] == (
        "inference=100,experimentation=90,training=80,fine-tuning=70,interactive=60"
    )


def test_every_iam_statement_holds_up_against_awss_references(governed):
    _, templates = governed
    assert iam_reference.check(templates) == []


def test_create_compute_quota_is_granted_on_this_cluster_only_and_with_the_owner_tag(governed):
    _, templates = governed
    (role,) = [
        r
        for r in _of_type(templates[HYPERPOD], "AWS::IAM::Role").values()
        if any(p["PolicyName"] == "ComputeQuotas" for p in r["Properties"].get("Policies", []))
    ]
    statements = {s["Sid"]: s for s in role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]}
    create = statements["CreateQuotasOnThisClusterOnly"]
    assert create["Action"] == "sagemaker:CreateComputeQuota"
    assert create["Resource"][0] == {"Fn::GetAtt": ["ClusterEB0386A7", "ClusterArn"]}
    assert list(create["Condition"]["StringEquals"]) == [f"aws:RequestTag/{tg.OWNER_TAG_KEY}"]
    change = statements["ChangeOwnedQuotasOnly"]
    assert list(change["Condition"]["StringEquals"]) == [f"aws:ResourceTag/{tg.OWNER_TAG_KEY}"]
    actions = [a for s in statements.values() for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])]
    assert not [a for a in actions if "*" in a]


def test_cfn_lint_is_clean_and_cdk_nag_acknowledged_every_finding(governed):
    out, templates = governed
    lint = subprocess.run(
        [
            str(BIN / "cfn-lint"),
            "--format",
            "parseable",
            "--ignore-checks",
            "W3005",
            "--",
            *map(str, out.glob("*.template.json")),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    for report in out.glob("**/validation-report.json"):
        for plugin in json.loads(report.read_text()).get("pluginReports", []):
            for violation in plugin.get("violations", []):
                assert all(r.get("acknowledged") for r in violation.get("violatingResources", [])), violation


def test_every_flow_the_cluster_needs_is_still_allowed(governed):
    # Kueue's webhooks and visibility API server run in pods: covered by the control-plane webhook flows.
    _, templates = governed
    assert network.check(templates) == []


def test_the_quota_handler_asset_imports_with_only_its_bundled_packages():
    built = asset.build(tg.RUNTIME_SOURCE, tg.RUNTIME_PACKAGE)
    package = built / tg.RUNTIME_PACKAGE
    assert not any(p.is_symlink() for p in package.iterdir())  # the shared modules are copied, not linked
    assert (package / "aws.py").read_text() == (asset.RUNTIME_SOURCE / "aws.py").read_text()
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); import compute_quota_runtime.handler as h, botocore; "
        "assert botocore.__file__.startswith(sys.argv[1]); print(h.on_event.__module__)"
    )
    result = subprocess.run([sys.executable, "-I", "-S", "-B", "-c", probe, str(built)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "compute_quota_runtime.handler"


# --- off ------------------------------------------------------------------------------------------


def test_off_leaves_every_template_exactly_as_without_the_section():
    context = cdk_context()
    without = {
        **context,
        "config_defaults": {k: v for k, v in context["config_defaults"].items() if k != "task_governance"},
    }
    off_with_teams = {
        **context,
        "task_governance.teams": "[{name: research, instance_quotas: [{instance_type: ml.p5.48xlarge, count: 1}]}]",
    }
    baseline = synth_context(without)
    assert synth_context(context) == baseline
    assert synth_context(off_with_teams) == baseline
    resources = [r for t in baseline.values() for r in t["Resources"].values()]
    assert not [r for r in resources if r["Type"] in ("AWS::SageMaker::ClusterSchedulerConfig", tg.RESOURCE_TYPE)]
    addons = [r["Properties"]["AddonName"] for r in resources if r["Type"] == "AWS::EKS::Addon"]
    assert addons and names.ADDON_NAME not in addons
    assert output_keys.TASK_GOVERNANCE_TEAMS not in baseline[HYPERPOD].get("Outputs", {})


def test_checkov_finds_nothing_unjustified_in_task_governance(governed):
    out, _ = governed
    checkov = BIN.parent / "checkov" / "bin" / "checkov"  # its own venv (Makefile): it pins its own botocore
    result = subprocess.run(
        [
            str(checkov),
            "-f",
            str(out / f"{HYPERPOD}.template.json"),
            "--framework",
            "cloudformation",
            "--compact",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(result.stdout)
    report = report[0] if isinstance(report, list) else report
    ours = [
        f"{c['check_id']} {c['resource']}"
        for c in report["results"]["failed_checks"]
        if c["resource"].split(".", 1)[1].startswith("TaskGovernance")
    ]
    assert ours == []
    skipped = {c["check_id"] for c in report["results"]["skipped_checks"] if ".TaskGovernance" in c["resource"]}
    assert skipped == {"CKV_AWS_111", "CKV_AWS_115", "CKV_AWS_116", "CKV_AWS_117", "CKV_AWS_158", "CKV_AWS_173"}
