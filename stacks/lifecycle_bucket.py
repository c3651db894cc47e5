"""The lifecycle-script layer: the ``sagemaker-*`` bucket HyperPod reads ``on_create.sh`` from, and the upload."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Aws, CfnOutput, Duration, RemovalPolicy, Stack, Token
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy

from config import AppConfig, outputs
from config.names import lifecycle_bucket_name
from constructs import Construct, checkov_skips
from constructs.nag_acknowledgment import acknowledge

LIFECYCLE_SCRIPTS_DIR = Path(__file__).resolve().parent.parent / "lifecycle_scripts"
LIFECYCLE_PREFIX = "lifecycle_scripts"


class LifecycleBucketStack(Stack):
    """Bucket + upload. Consumers take ``deployed_bucket`` so they wait for the upload to finish."""

    def __init__(self, scope: Construct, construct_id: str, *, config: AppConfig, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        destroy = config.lifecycle_bucket.removal_policy == "destroy"
        removal = RemovalPolicy.DESTROY if destroy else RemovalPolicy.RETAIN

        access_logs = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            lifecycle_rules=[
                s3.LifecycleRule(expiration=Duration.days(365), noncurrent_version_expiration=Duration.days(30))
            ],
            removal_policy=removal,
            auto_delete_objects=destroy,
        )
        acknowledge(
            access_logs, "This is the access-log target bucket; logging it to itself would loop.", "AwsSolutions-S1"
        )
        checkov_skips.skip(
            access_logs, "CKV_AWS_18", "This is the access-log target bucket; logging it to itself would loop."
        )

        # The managed AmazonSageMakerClusterInstanceRolePolicy only reads buckets named sagemaker-*.
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            bucket_name=lifecycle_bucket_name(config, Aws.ACCOUNT_ID, Aws.REGION),
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            server_access_logs_bucket=access_logs,
            server_access_logs_prefix="lifecycle-bucket/",
            removal_policy=removal,
            auto_delete_objects=destroy,
        )
        # The whole folder: on_create.sh sources helpers that live beside it.
        self.deployment = s3deploy.BucketDeployment(
            self,
            "LifecycleScripts",
            sources=[s3deploy.Source.asset(str(LIFECYCLE_SCRIPTS_DIR))],
            destination_bucket=self.bucket,
            destination_key_prefix=LIFECYCLE_PREFIX,
            prune=True,
            retain_on_delete=False,
            memory_limit=256,
        )
        self._acknowledge_deployment_handler()
        self.deployed_bucket = self.deployment.deployed_bucket
        self.lifecycle_prefix = LIFECYCLE_PREFIX
        CfnOutput(self, outputs.LIFECYCLE_BUCKET_NAME, value=self.bucket.bucket_name)

    def _acknowledge_deployment_handler(self) -> None:
        """cdk-nag findings on aws-cdk-lib's own BucketDeployment Lambda, acknowledged on it alone."""
        handler = self.deployment.handler_role.node.scope
        bucket_arn = f"<{self.get_logical_id(self.bucket.node.default_child)}.Arn>"
        # With a concrete region CDK writes the partition as a literal (enablePartitionLiterals).
        partition = "<AWS::Partition>" if Token.is_unresolved(self.partition) else self.partition
        account = "<AWS::AccountId>" if Token.is_unresolved(self.account) else self.account
        asset_bucket = f"arn:{partition}:s3:::cdk-hnb659fds-assets-{account}-{self.region}"
        acknowledge(
            handler,
            "aws-cdk-lib's BucketDeployment handler uses AWSLambdaBasicExecutionRole, which only lets it write "
            "its own CloudWatch logs.",
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
        )
        acknowledge(
            handler,
            "The wildcards come from grantRead on the CDK asset bucket and grantReadWrite on this lifecycle "
            "bucket: syncing a folder needs every object key under those two buckets and nothing else.",
            *(
                f"AwsSolutions-IAM5[Action::s3:{a}]"
                for a in ("GetObject*", "GetBucket*", "List*", "DeleteObject*", "Abort*")
            ),
            f"AwsSolutions-IAM5[Resource::{asset_bucket}/*]",
            f"AwsSolutions-IAM5[Resource::{bucket_arn}/*]",
        )
        acknowledge(
            handler,
            "aws-cdk-lib pins the BucketDeployment runtime; it moves forward with the pinned aws-cdk-lib version.",
            "AwsSolutions-L1",
        )
