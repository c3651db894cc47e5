"""``ServiceLogGroupRetention``: retention (and removal) for a log group a service creates by a fixed name.

Why not ``logs.LogGroup(log_group_name=...)``: EKS writes its control-plane logs after the cluster is deleted
and so recreates ``/aws/eks/<cluster>/cluster``; the next deploy of the same config then fails with "already
exists" (terraform-aws-eks issues 2486 and 2763 describe the same race). Why not aws-cdk-lib's
``LogRetention``: it is the same create-or-adopt idea, but its handler is Node.js code that needs the AWS SDK
of the Lambda runtime, so it cannot be exercised offline; this one is small Python, tested against moto
(``tests/control_plane_log_group``).
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import ArnFormat, CustomResource, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs

from constructs import Construct

RUNTIME_DIR = Path(__file__).resolve().parent / "runtime"
RESOURCE_TYPE = "Custom::ServiceLogGroupRetention"


class ServiceLogGroupRetention(Construct):
    """Creates or adopts ``log_group_name`` and sets its retention; deletes it with the stack if ``destroy``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        log_group_name: str,
        retention_days: int,
        removal_policy: RemovalPolicy = RemovalPolicy.DESTROY,
        own_log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        encryption_key: kms.IKey | None = None,
    ) -> None:
        """``encryption_key``: a customer-managed key for the group (its key policy must let CloudWatch Logs use
        it for this group; see ``grant_log_group_encryption``)."""
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        group_arn = stack.format_arn(
            service="logs",
            resource="log-group",
            resource_name=log_group_name,
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Creates or adopts {log_group_name} and sets its retention",
            inline_policies={
                "ThisLogGroupOnly": iam.PolicyDocument(
                    statements=[
                        iam.PolicyStatement(
                            actions=[
                                "logs:CreateLogGroup",
                                "logs:PutRetentionPolicy",
                                "logs:DeleteLogGroup",
                                *(["logs:AssociateKmsKey"] if encryption_key else []),
                            ],
                            resources=[group_arn],
                        )
                    ]
                )
            },
        )
        function_logs = logs.LogGroup(
            self, "HandlerLogs", retention=own_log_retention, removal_policy=RemovalPolicy.DESTROY
        )
        function_logs.grant_write(role)
        function = lambda_.Function(
            self,
            "Handler",
            code=lambda_.Code.from_asset(str(RUNTIME_DIR)),
            handler="handler.handle",
            runtime=lambda_.Runtime.PYTHON_3_14,
            architecture=lambda_.Architecture.ARM_64,
            memory_size=128,
            timeout=Duration.minutes(2),
            role=role,
            log_group=function_logs,
            description=f"Create-or-adopt {log_group_name} with its retention",
        )
        self.resource = CustomResource(
            self,
            "Resource",
            service_token=function.function_arn,
            resource_type=RESOURCE_TYPE,
            properties={
                "LogGroupName": log_group_name,
                "RetentionInDays": str(retention_days),
                "RemovalPolicy": "destroy" if removal_policy == RemovalPolicy.DESTROY else "retain",
                **({"KmsKeyArn": encryption_key.key_arn} if encryption_key else {}),
            },
            service_timeout=Duration.minutes(5),
        )
        self.resource.node.add_dependency(role)
        if encryption_key is not None:
            grant_log_group_encryption(encryption_key, group_arn)
            self.resource.node.add_dependency(encryption_key)
        self.log_group_name = log_group_name


def grant_log_group_encryption(key: kms.IKey, group_arn: str) -> None:
    """The key policy CloudWatch Logs needs to encrypt one log group with ``key`` (AWS docs, "Encrypt log data in
    CloudWatch Logs using AWS KMS"): the data-key actions only under that group's encryption context. DescribeKey
    takes no encryption context (the Service Authorization Reference lists none for it; tests/rules), so under the
    condition it would always be denied: it gets a statement of its own."""
    service = iam.ServicePrincipal(f"logs.{Stack.of(key).region}.amazonaws.com")
    key.add_to_resource_policy(iam.PolicyStatement(principals=[service], actions=["kms:DescribeKey"], resources=["*"]))
    key.add_to_resource_policy(
        iam.PolicyStatement(
            principals=[service],
            actions=[
                "kms:Encrypt",
                "kms:Decrypt",
                "kms:ReEncryptFrom",
                "kms:ReEncryptTo",
                "kms:GenerateDataKey",
                "kms:GenerateDataKeyWithoutPlaintext",
            ],
            resources=["*"],
            conditions={"ArnEquals": {"kms:EncryptionContext:aws:logs:arn": group_arn}},
        )
    )
