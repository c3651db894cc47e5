"""The shared FSx for Lustre file system (or an existing one), with data protection on delete.

Created: PERSISTENT_2 (Lustre 2.15) in one subnet (the HyperPod subnet's AZ: Lustre traffic then stays
in the AZ), on the security group HyperPod nodes carry (which admits TCP 988 and 1018-1023 from itself:
``stacks/network.py``), tagged, optionally linked to S3 by a data repository association under ``/data``.
Encryption at rest: persistent FSx for Lustre file systems are always encrypted with a KMS key; with no
``KmsKeyId`` it is the AWS managed ``aws/fsx`` key, which, unlike a key of this stack, cannot be deleted
with the stack and leave the final backup unreadable. Removal policies:

- ``snapshot``: a ``Custom::FsxFinalBackup`` that depends on the file system takes a user backup before
  CloudFormation deletes it (``runtime/fsx_lustre_runtime/handler.py``);
- ``retain``: the file system stays when the stack is deleted;
- ``destroy``: it is deleted.

Existing (``existing_file_system_id``): nothing is created; a ``Custom::FsxExistingFileSystem`` reads the
DNS and mount names at deploy time (and refuses a non-Lustre file system or one in another VPC).
"""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_fsx as fsx
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import custom_resources as cr

from config.model import FsxConfig
from constructs import Construct
from constructs.logged_provider import logged_provider
from constructs.nag_acknowledgment import acknowledge

RUNTIME_DIR = Path(__file__).parent / "runtime"
FINAL_BACKUP_TYPE = "Custom::FsxFinalBackup"
EXISTING_FILE_SYSTEM_TYPE = "Custom::FsxExistingFileSystem"
LUSTRE_VERSION = "2.15"
# Where an S3 data repository association appears inside the file system.
DATA_REPOSITORY_PATH = "/data"
# CloudFormation gives a custom resource at most an hour; the backup poll stops a little before.
BACKUP_TIMEOUT = cdk.Duration.minutes(55)
BACKUP_POLL = cdk.Duration.seconds(30)


class FsxLustre(Construct):
    """Attributes (tokens): ``file_system_id``, ``dns_name``, ``mount_name``, ``file_system_arn``;
    ``storage_capacity_gib`` (int, for the PersistentVolume); ``resource``: what Kubernetes objects that
    mount it should depend on (the final backup when there is one, so they go before it)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: FsxConfig,
        name: str,
        vpc: ec2.IVpc,
        subnet: ec2.ISubnet,
        security_group: ec2.ISecurityGroup,
        tags: dict[str, str],
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        self.storage_capacity_gib = config.storage_capacity_gib
        self._handler_function: lambda_.Function | None = None
        self._provider: cr.Provider | None = None
        self._log_retention = log_retention

        if config.existing_file_system_id:
            fs_id = config.existing_file_system_id
            self.file_system_id = fs_id
            self.file_system_arn = stack.format_arn(service="fsx", resource="file-system", resource_name=fs_id)
            self.resource = cdk.CustomResource(
                self,
                "ExistingFileSystem",
                service_token=self._service_token(),
                resource_type=EXISTING_FILE_SYSTEM_TYPE,
                properties={"FileSystemId": fs_id, "VpcId": vpc.vpc_id, "Region": stack.region},
            )
            self.dns_name = self.resource.get_att_string("DNSName")
            self.mount_name = self.resource.get_att_string("MountName")
            return

        self.file_system = fsx.CfnFileSystem(
            self,
            "FileSystem",
            file_system_type="LUSTRE",
            file_system_type_version=LUSTRE_VERSION,
            storage_type="SSD",
            storage_capacity=config.storage_capacity_gib,
            subnet_ids=[subnet.subnet_id],
            security_group_ids=[security_group.security_group_id],
            lustre_configuration=fsx.CfnFileSystem.LustreConfigurationProperty(
                deployment_type="PERSISTENT_2",
                per_unit_storage_throughput=config.throughput_per_unit_mib,
                data_compression_type=config.compression,
                copy_tags_to_backups=True,
            ),
            tags=[cdk.CfnTag(key="Name", value=name)],
        )
        self.file_system.apply_removal_policy(
            cdk.RemovalPolicy.RETAIN if config.removal_policy == "retain" else cdk.RemovalPolicy.DESTROY
        )
        self.file_system_id = self.file_system.ref
        self.file_system_arn = stack.format_arn(
            service="fsx", resource="file-system", resource_name=self.file_system.ref
        )
        self.dns_name = self.file_system.attr_dns_name
        self.mount_name = self.file_system.attr_lustre_mount_name
        self.resource: cdk.CfnResource | cdk.CustomResource = self.file_system

        if config.s3_import_path:
            self.data_repository = fsx.CfnDataRepositoryAssociation(
                self,
                "DataRepository",
                file_system_id=self.file_system.ref,
                file_system_path=DATA_REPOSITORY_PATH,
                data_repository_path=config.s3_import_path,
                batch_import_meta_data_on_create=True,
                s3=fsx.CfnDataRepositoryAssociation.S3Property(
                    auto_import_policy=fsx.CfnDataRepositoryAssociation.AutoImportPolicyProperty(
                        events=["NEW", "CHANGED", "DELETED"]
                    )
                ),
            )

        if config.removal_policy == "snapshot":
            backups = stack.format_arn(service="fsx", resource="backup", resource_name="*")
            self.resource = cdk.CustomResource(
                self,
                "FinalBackup",
                service_token=self._service_token(backup_of=(self.file_system_arn, backups)),
                resource_type=FINAL_BACKUP_TYPE,
                # Covers the backup poll; CloudFormation's own limit for a custom resource is an hour.
                service_timeout=cdk.Duration.minutes(60),
                properties={
                    "FileSystemId": self.file_system.ref,
                    "Region": stack.region,
                    "Name": name,
                    "Tags": dict(tags),
                },
            )
            # Created after, deleted before the file system: the backup exists before it goes.
            self.resource.node.add_dependency(self.file_system)

    def _service_token(self, *, backup_of: tuple[str, str] | None = None) -> str:
        """The Provider framework (with an ``is_complete`` poll) around the runtime's two handlers."""
        stack = cdk.Stack.of(self)
        role = iam.Role(
            self,
            "HandlerRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="FSx final backup / existing file system look-up (custom resource)",
        )
        logs_group = logs.LogGroup(
            self, "HandlerLogs", retention=self._log_retention, removal_policy=cdk.RemovalPolicy.DESTROY
        )
        logs_group.grant_write(role)
        # DescribeFileSystems and DescribeBackups support no resource-level permissions (Service
        # Authorization Reference for Amazon FSx), so they can only be granted on "*".
        role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadFileSystemsAndBackups",
                actions=["fsx:DescribeFileSystems", "fsx:DescribeBackups"],
                resources=["*"],
            )
        )
        reasons = [
            "fsx:DescribeFileSystems and fsx:DescribeBackups take no resource ARN (Service Authorization "
            "Reference), so '*' is the only possible resource; both are read-only."
        ]
        findings = ["AwsSolutions-IAM5[Resource::*]"]
        if backup_of:
            file_system_arn, backups = backup_of
            # CreateBackup is authorized on the file system and on the new backup; tags given in the
            # request also need TagResource on the backup. A backup's id is generated, hence backup/*.
            role.add_to_policy(
                iam.PolicyStatement(
                    sid="TakeTheFinalBackup", actions=["fsx:CreateBackup"], resources=[file_system_arn, backups]
                )
            )
            role.add_to_policy(
                iam.PolicyStatement(sid="TagTheFinalBackup", actions=["fsx:TagResource"], resources=[backups])
            )
            reasons.append(
                "A backup's id is generated by FSx when it is created, so CreateBackup and the tagging of the "
                "new backup can only name backup/* in this account and region."
            )
            findings.append(
                f"AwsSolutions-IAM5[Resource::arn:{_nag(stack.partition, 'Partition')}:fsx:{_nag(stack.region, 'Region')}:"
                f"{_nag(stack.account, 'AccountId')}:backup/*]"
            )
        acknowledge(role, " ".join(reasons), *findings)

        function = lambda_.Function(
            self,
            "Handler",
            description="FSx for Lustre final backup before delete / existing file system look-up",
            runtime=lambda_.Runtime.PYTHON_3_13,
            architecture=lambda_.Architecture.ARM_64,
            handler="fsx_lustre_runtime.handler.on_event",
            code=lambda_.Code.from_asset(str(RUNTIME_DIR), exclude=["**/__pycache__", "**/*.pyc"]),
            role=role,
            log_group=logs_group,
            timeout=cdk.Duration.minutes(2),
        )
        complete = lambda_.Function(
            self,
            "IsComplete",
            description="FSx for Lustre final backup: polls the backup until AVAILABLE",
            runtime=lambda_.Runtime.PYTHON_3_13,
            architecture=lambda_.Architecture.ARM_64,
            handler="fsx_lustre_runtime.handler.is_complete",
            code=lambda_.Code.from_asset(str(RUNTIME_DIR), exclude=["**/__pycache__", "**/*.pyc"]),
            role=role,
            log_group=logs_group,
            timeout=cdk.Duration.minutes(2),
        )
        for fn in (function, complete):
            acknowledge(
                fn,
                "Pinned on purpose to python3.13, a current AWS-supported Lambda runtime; a runtime bump should "
                "be a reviewed change, not a side effect of upgrading CDK or cdk-nag.",
                "AwsSolutions-L1",
            )
        provider = logged_provider(
            self,
            on_event=function,
            is_complete=complete,
            query_interval=BACKUP_POLL,
            total_timeout=BACKUP_TIMEOUT,
            log_retention=self._log_retention,
            owner="FSx final backup",
        )
        return provider.service_token


def _nag(value: str, pseudo: str) -> str:
    return f"<AWS::{pseudo}>" if cdk.Token.is_unresolved(value) else value
