"""The construct on a bare stack: template shape, IAM, cdk-nag and cfn-lint."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_logs as logs
from aws_cdk.assertions import Match, Template
from cdk_nag import AwsSolutionsChecks

from config.model import HelmChartConfig
from constructs.hyperpod_helm_chart import infrastructure
from constructs.hyperpod_helm_chart.chart_values import chart_values
from constructs.hyperpod_helm_chart.infrastructure import HyperPodHelmChart

PINNED = "ab" * 32
CR_TYPE = "Custom::HyperPodHelmChart"


def _network(stack: cdk.Stack) -> tuple[ec2.Vpc, ec2.SecurityGroup]:
    vpc = ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=1)
    vpc.add_flow_log("FlowLog")
    sg = ec2.SecurityGroup(
        stack, "ClusterSg", vpc=vpc, description="shared by EKS and HyperPod", allow_all_outbound=True
    )
    return vpc, sg


def build(
    *,
    env: cdk.Environment | None = None,
    real_cluster: bool = False,
    chart: HelmChartConfig | None = None,
    nag: bool = False,
    outdir: Path | None = None,
    **kwargs,
):
    app = cdk.App(outdir=str(outdir) if outdir else None)
    stack = cdk.Stack(app, "HelmChartTest", env=env)
    vpc, sg = _network(stack)
    if real_cluster:
        cluster = eks.Cluster(
            stack,
            "Eks",
            version=eks.KubernetesVersion.V1_33,
            vpc=vpc,
            security_group=sg,
            default_capacity_type=eks.DefaultCapacityType.NODEGROUP,
            default_capacity=0,
        )
    else:
        cluster = eks.Cluster.from_cluster_attributes(stack, "Eks", cluster_name="hp-eks")
    helm_chart = HyperPodHelmChart(
        stack, "HelmChart", cluster=cluster, chart=chart or HelmChartConfig(), vpc=vpc, security_group=sg, **kwargs
    )
    if nag:
        cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app, stack, helm_chart, vpc, sg


def only(template: Template, type_: str) -> tuple[str, dict]:
    (item,) = template.find_resources(type_).items()
    return item


def test_custom_resource_carries_the_pinned_source_and_the_complete_values():
    _, stack, helm_chart, _, _ = build(
        env=cdk.Environment(account="123456789012", region="us-west-2"), chart=HelmChartConfig(files_sha256=PINNED)
    )
    template = Template.from_stack(stack)
    _, resource = only(template, CR_TYPE)
    props = resource["Properties"]
    assert props["ClusterName"] == "hp-eks" and props["Region"] == "us-west-2"
    assert props["Repository"] == "aws/sagemaker-hyperpod-cli"
    assert props["Commit"] == "0e32919013e957dc9bd2051bca645a4d60df9e8e"
    assert props["ChartPath"] == "helm_chart/HyperPodHelmChart"
    assert props["ExpectedFilesSha256"] == PINNED
    assert (props["ReleaseName"], props["Namespace"]) == ("dependencies", "kube-system")
    assert props["ServiceTimeout"] == "1200"
    values = json.loads(props["Values"])  # one JSON string: booleans stay booleans
    assert values == chart_values("us-west-2")
    assert values["health-monitoring-agent"] == {"enabled": True, "region": "us-west-2"}
    for on in ("deep-health-check", "job-auto-restart", "hyperpod-patching", "trainingOperators", "mpi-operator"):
        assert values[on] == {"enabled": True}
    for dev in ("nvidia-device-plugin", "aws-efa-k8s-device-plugin"):
        assert values[dev]["devicePlugin"] == {"enabled": True}
    for off in ("storage", "mlflow", "inferenceOperators", "cert-manager", "gpu-operator"):
        assert values[off] == {"enabled": False}
    assert (helm_chart.release_name, helm_chart.namespace) == ("dependencies", "kube-system")


def test_region_token_is_rendered_into_the_values_by_cloudformation():
    _, stack, helm_chart, _, _ = build()
    _, resource = only(Template.from_stack(stack), CR_TYPE)
    props = resource["Properties"]
    assert props["Region"] == {"Ref": "AWS::Region"}
    parts = props["Values"]["Fn::Join"][1]
    assert parts.count({"Ref": "AWS::Region"}) == 2  # global.region and health-monitoring-agent.region
    rendered = "".join(p if isinstance(p, str) else "eu-north-1" for p in parts)
    assert json.loads(rendered) == chart_values("eu-north-1")


def test_chart_digest_attribute_is_the_handlers_reported_digest():
    _, stack, helm_chart, _, _ = build()
    logical = stack.get_logical_id(helm_chart.resource.node.default_child)
    assert stack.resolve(helm_chart.chart_digest) == {"Fn::GetAtt": [logical, "FilesSha256"]}


def test_handler_runs_python_313_in_the_private_subnets_with_the_kubectl_layer():
    _, stack, helm_chart, vpc, sg = build()
    template = Template.from_stack(stack)
    layers = template.find_resources("AWS::Lambda::LayerVersion")
    (layer_id,) = [k for k, v in layers.items() if "/opt/helm/helm" in v["Properties"]["Description"]]
    private = [stack.resolve(s.subnet_id) for s in vpc.private_subnets]
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Runtime": "python3.13",
            "Handler": "helm_chart_installer.handler.on_event",
            "Architectures": ["x86_64"],
            "Layers": [{"Ref": layer_id}],
            "Timeout": 840,
            "MemorySize": 1024,
            "VpcConfig": {"SubnetIds": private, "SecurityGroupIds": [stack.resolve(sg.security_group_id)]},
            "Environment": {
                "Variables": {"ARCHIVE_BASE_URL": "https://codeload.github.com", "HELM_BINARY": "/opt/helm/helm"}
            },
            "LoggingConfig": {"LogGroup": {"Ref": Match.string_like_regexp("HelmChartHandlerLogs")}},
        },
    )


def test_handler_asset_holds_only_the_runtime_package(tmp_path):
    app, stack, helm_chart, _, _ = build(outdir=tmp_path)
    assembly = app.synth()
    _, function = [
        (k, v)
        for k, v in Template.from_stack(stack).find_resources("AWS::Lambda::Function").items()
        if v["Properties"].get("Handler") == infrastructure.HANDLER
    ][0]
    asset_hash = (
        function["Properties"]["Code"]["S3Key"]["Fn::Sub"].split(".")[0]
        if isinstance(function["Properties"]["Code"]["S3Key"], dict)
        else function["Properties"]["Code"]["S3Key"].split(".")[0]
    )
    asset_dir = Path(assembly.directory) / f"asset.{asset_hash}"
    files = {p.relative_to(asset_dir).as_posix() for p in asset_dir.rglob("*") if p.is_file()}
    assert files == {
        f"helm_chart_installer/{m}.py"
        for m in ("__init__", "handler", "chart_archive", "chart_digest", "eks_auth", "helm_cli", "kubernetes_objects")
    }


def test_runtime_code_imports_no_cdk_and_only_what_lambda_provides():
    allowed_third_party = {"botocore"}
    for path in (infrastructure.RUNTIME_DIR / "helm_chart_installer").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top in sys.stdlib_module_names or top in allowed_third_party or top == "__future__", (
                    f"{path.name} imports {name}"
                )


def test_access_entry_gives_only_the_handler_role_cluster_admin():
    _, stack, helm_chart, _, _ = build(real_cluster=True)
    template = Template.from_stack(stack)
    role_id = stack.get_logical_id(helm_chart.handler_role.node.default_child)
    cluster_id = [k for k in template.find_resources("AWS::EKS::Cluster")][0]
    entries = template.find_resources(
        "AWS::EKS::AccessEntry", {"Properties": {"PrincipalArn": {"Fn::GetAtt": [role_id, "Arn"]}}}
    )
    ((entry_id, entry),) = entries.items()
    assert entry["Properties"]["ClusterName"] == {"Ref": cluster_id}
    assert entry["Properties"]["AccessPolicies"] == [
        {
            "AccessScope": {"Type": "cluster"},
            "PolicyArn": {
                "Fn::Join": [
                    "",
                    ["arn:", {"Ref": "AWS::Partition"}, ":eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"],
                ]
            },
        }
    ]
    _, resource = only(template, CR_TYPE)
    assert entry_id in resource["DependsOn"]  # helm runs only after the entry exists, and is gone before it
    assert resource["Properties"]["ClusterName"] == {"Ref": cluster_id}


def test_handler_role_permissions_are_exactly_describe_cluster_and_vpc_access():
    _, stack, helm_chart, _, _ = build(real_cluster=True)
    template = Template.from_stack(stack)
    role_id = stack.get_logical_id(helm_chart.handler_role.node.default_child)
    role = template.to_json()["Resources"][role_id]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"] == [
        {"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}}
    ]
    assert role["ManagedPolicyArns"] == [
        {
            "Fn::Join": [
                "",
                ["arn:", {"Ref": "AWS::Partition"}, ":iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"],
            ]
        }
    ]
    assert "Policies" not in role
    policies = [
        p["Properties"]
        for p in template.find_resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
    ]
    cluster_id = [k for k in template.find_resources("AWS::EKS::Cluster")][0]
    assert [p["PolicyDocument"]["Statement"] for p in policies] == [
        [
            {
                "Sid": "ReadClusterEndpoint",
                "Action": "eks:DescribeCluster",
                "Effect": "Allow",
                "Resource": {"Fn::GetAtt": [cluster_id, "Arn"]},
            }
        ]
    ]


def test_custom_resource_waits_for_the_nat_routes_of_its_subnets():
    _, stack, helm_chart, vpc, _ = build()
    _, resource = only(Template.from_stack(stack), CR_TYPE)
    routes = {stack.get_logical_id(s.node.find_child("DefaultRoute")) for s in vpc.private_subnets}
    assert routes <= set(resource["DependsOn"])


@pytest.mark.parametrize("retention, days", [(None, 30), (logs.RetentionDays.ONE_WEEK, 7)])
def test_both_log_groups_have_retention(retention, days):
    kwargs = {"log_retention": retention} if retention else {}
    _, stack, helm_chart, _, _ = build(**kwargs)
    groups = Template.from_stack(stack).find_resources("AWS::Logs::LogGroup")
    ours = {k: v for k, v in groups.items() if k.startswith("HelmChart")}
    assert len(ours) == 2 and all(g["Properties"]["RetentionInDays"] == days for g in ours.values())


def _acknowledgments(root) -> dict[str, str]:
    found = {}
    for construct in root.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == cdk.Validations.ACKNOWLEDGED_RULES_METADATA_KEY:
                for rule, reason in entry.data.items():
                    found[
                        f"{construct.node.path}|{rule.removeprefix('Annotation::').removeprefix('AwsSolutions::')}"
                    ] = reason
    return found


def test_cdk_nag_reports_nothing_unacknowledged(tmp_path):
    app, stack, helm_chart, _, _ = build(nag=True, outdir=tmp_path)
    app.synth()  # raises ValidationFailed on any unacknowledged AwsSolutions finding
    report = (
        json.loads((tmp_path / "validation-report.json").read_text())
        if (tmp_path / "validation-report.json").exists()
        else {"pluginReports": []}
    )
    assert all(not r.get("violations") for r in report["pluginReports"])


def test_every_acknowledgment_answers_a_real_finding_with_a_reason(tmp_path, monkeypatch):
    _, _, helm_chart, _, _ = build()
    acks = _acknowledgments(helm_chart)
    assert len(acks) == 4 and all(len(reason) > 60 for reason in acks.values())

    monkeypatch.setattr(cdk.Validations, "acknowledge", lambda self, *rules: None)
    app, _, _, _, _ = build(nag=True, outdir=tmp_path)
    with pytest.raises(Exception, match="ValidationFailed"):
        app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    findings = {
        f"{c['constructPath']}|{v['ruleName']}"
        for r in report["pluginReports"]
        for v in r["violations"]
        for c in v["violatingConstructs"]
    }
    # A rule acknowledged on a construct covers findings on its L1 resource child.
    expected = {f"{path}/Resource|{rule}" for path, rule in (k.split("|") for k in acks)}
    assert findings == expected


def test_cfn_lint_finds_nothing_but_cdk_dependency_noise(tmp_path):
    app, stack, _, _, _ = build(real_cluster=True, outdir=tmp_path)
    app.synth()
    out = subprocess.run(
        [
            str(Path(sys.executable).with_name("cfn-lint")),
            "--format",
            "json",
            str(tmp_path / f"{stack.stack_name}.template.json"),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode in (0, 4), out.stderr  # 4: warnings only
    findings = json.loads(out.stdout)
    assert any(f["Rule"]["Id"] == "W3005" for f in findings)  # proves the linter ran on this template
    assert [(f["Rule"]["Id"], f["Message"]) for f in findings if f["Rule"]["Id"] != "W3005"] == []
