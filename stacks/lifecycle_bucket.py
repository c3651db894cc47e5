"""The lifecycle-script layer: the ``sagemaker-*`` bucket HyperPod reads ``on_create.sh`` from, and the upload."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Aws, CfnOutput, Duration, RemovalPolicy, Stack, Token
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy

from config import AppConfig, outputs
from config.names import lifecycle_bucket_name
from constructs import Construct
from constructs.access_log_bucket.infrastructure import AccessLogBucket
from constructs.nag_acknowledgment import acknowledge

LIFECYCLE_SCRIPTS_DIR = Path(__file__).resolve().parent.parent / "lifecycle_scripts"
LIFECYCLE_PREFIX = "lifecycle_scripts"


class LifecycleBucketStack(Stack):
    """Bucket + upload. Consumers take ``deployed_bucket`` so they wait for the upload to finish."""

    def __init__(self, scope: Construct, construct_id: str, *, config: AppConfig, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        existing = config.lifecycle_bucket.existing_bucket_name
        destroy = config.lifecycle_bucket.removal_policy == "destroy"
        if existing:
            # Someone else's bucket: imported by name, so no stack can delete it; the scripts go under this
            # app's own prefix, so the upload's prune and its delete touch only the app's objects.
            self.bucket = s3.Bucket.from_bucket_name(self, "Bucket", existing)
            prefix = f"{config.prefix}/{LIFECYCLE_PREFIX}"
        else:
            self.bucket = self._own_bucket(config, destroy)
            prefix = LIFECYCLE_PREFIX
        # The whole folder: on_create.sh sources helpers that live beside it.
        self.deployment = s3deploy.BucketDeployment(
            self,
            "LifecycleScripts",
            sources=[s3deploy.Source.asset(str(LIFECYCLE_SCRIPTS_DIR))],
            destination_bucket=self.bucket,
            destination_key_prefix=prefix,
            prune=True,
            # In an existing bucket "destroy" removes only the app's prefix; "retain" keeps the scripts.
            retain_on_delete=not destroy if existing else False,
            memory_limit=256,
        )
        self._acknowledge_deployment_handler()
        self.deployed_bucket = self.deployment.deployed_bucket
        self.lifecycle_prefix = prefix
        CfnOutput(self, outputs.LIFECYCLE_BUCKET_NAME, value=self.bucket.bucket_name)

    def _own_bucket(self, config: AppConfig, destroy: bool) -> s3.Bucket:
        removal = RemovalPolicy.DESTROY if destroy else RemovalPolicy.RETAIN
        # Deleted only after the lifecycle bucket and its last access logs (constructs/access_log_bucket).
        access_logs = AccessLogBucket(
            self,
            "AccessLogs",
            removal_policy=removal,
            versioned=True,
            lifecycle_rules=[
                s3.LifecycleRule(expiration=Duration.days(365), noncurrent_version_expiration=Duration.days(30))
            ],
        )
        # The managed AmazonSageMakerClusterInstanceRolePolicy only reads buckets named sagemaker-*.
        bucket = s3.Bucket(
            self,
            "Bucket",
            bucket_name=lifecycle_bucket_name(config, Aws.ACCOUNT_ID, Aws.REGION),
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            server_access_logs_bucket=access_logs.bucket,
            server_access_logs_prefix="lifecycle-bucket/",
            removal_policy=removal,
            auto_delete_objects=destroy,
        )
        access_logs.log_source(bucket)
        return bucket

    def _acknowledge_deployment_handler(self) -> None:
        """cdk-nag findings on aws-cdk-lib's own BucketDeployment Lambda, acknowledged on it alone."""
        handler = self.deployment.handler_role.node.scope
        # With a concrete region CDK writes the partition as a literal (enablePartitionLiterals).
        partition = "<AWS::Partition>" if Token.is_unresolved(self.partition) else self.partition
        if isinstance(self.bucket, s3.Bucket):
            bucket_arn = f"<{self.get_logical_id(self.bucket.node.default_child)}.Arn>"
        else:
            bucket_arn = f"arn:{partition}:s3:::{self.bucket.bucket_name}"
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
