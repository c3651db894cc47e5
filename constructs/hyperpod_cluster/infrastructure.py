"""``HyperPodCluster``: a SageMaker HyperPod (EKS-orchestrated) cluster that ``cdk deploy`` waits for.

Design: CloudFormation gives a custom resource at most one hour, and HyperPod creation can take much
longer (capacity, deep health checks on large groups); yet the deploy must end only when the cluster is
InService with every group's nodes Running, or fail with HyperPod's own FailureMessage. So the work is split:

1. A Provider-framework custom resource (``runtime/handler.py``) validates the request, refuses changes
   HyperPod cannot apply in place, starts the poller and calls CreateCluster/UpdateCluster *last*, then
   returns. Its Delete calls DeleteCluster and waits (``is_complete``, within the 1-hour limit) until the
   cluster is gone, so CloudFormation never tears down EKS or the subnets underneath a live cluster. An
   update that meets a busy cluster waits there too, until it is InService (``runtime/handler.py``).
2. A CloudFormation WaitCondition (timeout ``creation_timeout_hours``, up to 12 h) holds the deployment. A
   Step Functions standard workflow (``wait.py``) checks the cluster every 75 s at most (a free Wait
   state, then one short Lambda call, so no Lambda idles) and signals the
   WaitCondition's handle with SUCCESS, or FAILURE carrying the FailureMessage (or a timeout with the last
   status). The handle's logical id includes a hash of the desired spec, so every spec change gets a new
   handle and CloudFormation waits again for the new target; the custom resource receives the handle URL
   as a property and starts the poller on Create and Update.
3. If the wait fails, CloudFormation rolls back: on Create it deletes the custom resource (DeleteCluster);
   on Update it sends the previous spec back, which the handler applies against the live cluster.

``wait_for_in_service: false`` drops the WaitCondition and the poller; the deploy then ends once HyperPod
accepted the request.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from aws_cdk import CfnWaitCondition, CfnWaitConditionHandle, CustomResource, Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import custom_resources as cr

from config.model import HyperPodConfig
from constructs import Construct, IDependable, checkov_skips
from constructs.hyperpod_cluster import asset, nag, ownership, permissions, request
from constructs.hyperpod_cluster.wait import InServicePoller
from constructs.logged_provider import logged_provider

RUNTIME = lambda_.Runtime.PYTHON_3_14
# CloudFormation's limit for a custom resource (ServiceTimeout at most 3600 s).
CUSTOM_RESOURCE_TIMEOUT = Duration.seconds(3600)
# The Provider polls is_complete this often. Its total timeout leaves room after the handler's own deadline
# (runtime/handler.py HANDLER_DEADLINE_SECONDS) for one last is_complete run and one interval, and stays under
# CloudFormation's limit, so the handler's message, not a bare timeout, reaches CloudFormation.
PROVIDER_QUERY_INTERVAL = Duration.seconds(30)
PROVIDER_TOTAL_TIMEOUT = Duration.minutes(54)
# Lambda timeouts: the most calls each function makes, each through every retry (runtime/aws.py).
ON_EVENT_TIMEOUT = Duration.minutes(10)
IS_COMPLETE_TIMEOUT = Duration.minutes(8)
RESOURCE_TYPE = "Custom::HyperPodCluster"


class HyperPodCluster(Construct):
    """The cluster, its execution role, the custom resource and (unless disabled) the InService wait.

    Attributes: ``cluster_name`` (str), ``cluster_arn`` (token), ``execution_role`` (the nodes' role),
    ``cluster_role`` (the role HyperPod assumes for Karpenter autoscaling, or None),
    ``ready`` (what to depend on for "cluster usable": the WaitCondition, or the custom resource when not
    waiting), ``wait_condition`` (or None), ``status`` (cluster status when the custom resource finished).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: HyperPodConfig,
        tags: Mapping[str, str],
        eks_cluster: eks.ICluster,
        vpc: ec2.IVpc,
        subnets: Sequence[ec2.ISubnet],
        security_group: ec2.ISecurityGroup,
        lifecycle_bucket: s3.IBucket,
        lifecycle_prefix: str = "lifecycle_scripts",
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        legacy_owner_tag_values: Sequence[str] = (),
    ) -> None:
        super().__init__(scope, construct_id)
        if not subnets:
            raise ValueError("subnets: HyperPod needs at least one subnet for VpcConfig")
        request.validate_tags(tags)
        prefix = lifecycle_prefix.strip("/")
        stack = Stack.of(self)
        self.cluster_name = config.cluster_name
        owner = ownership.owner_tag_value(self)
        # Earlier versions tagged with <stack name>/<node.addr>: this tree's addr, plus what the caller knows
        # of other trees the same stack is deployed from (the pipeline's Stage). Sorted: same in every tree.
        legacy_owners = sorted({f"{stack.stack_name}/{self.node.addr}", *legacy_owner_tag_values} - {owner})
        perm_scope = permissions.Scope(
            stack=stack,
            vpc_id=vpc.vpc_id,
            subnet_ids=[s.subnet_id for s in subnets],
            security_group_id=security_group.security_group_id,
            eks_cluster_arn=eks_cluster.cluster_arn,
            eks_cluster_name=eks_cluster.cluster_name,
            bucket_arn=lifecycle_bucket.bucket_arn,
            lifecycle_prefix=prefix,
            owner_tag_key=request.OWNER_TAG_KEY,
            owner_tag_value=owner,
            legacy_owner_tag_values=legacy_owners,
            training_plan_arns=[g.training_plan_arn for g in config.instance_groups if g.training_plan_arn],
        )

        self.execution_role = self._execution_role(perm_scope)
        self.cluster_role: iam.Role | None = None
        if config.autoscaling == "karpenter":
            self.cluster_role = self._cluster_role(perm_scope)
        code = lambda_.Code.from_asset(str(asset.build()))
        wait_seconds = config.creation_timeout_hours * 3600
        self.poller: InServicePoller | None = None
        if config.wait_for_in_service:
            self.poller = InServicePoller(
                self,
                "Poller",
                code=code,
                runtime=RUNTIME,
                statements=permissions.poller_statements(perm_scope),
                timeout=Duration.seconds(wait_seconds + 600),
                log_retention=log_retention,
            )
            self._acknowledge_poller(self.poller)

        provider = self._provider(perm_scope, code, log_retention)
        handle = None
        digest = request.spec_digest(config, tags, prefix)
        if config.wait_for_in_service:
            handle = CfnWaitConditionHandle(self, f"InServiceHandle{digest}")

        cluster_request = request.cluster_request(
            config,
            tags=tags,
            owner=owner,
            eks_cluster_arn=eks_cluster.cluster_arn,
            subnet_ids=perm_scope.subnet_ids,
            security_group_id=perm_scope.security_group_id,
            execution_role_arn=self.execution_role.role_arn,
            source_s3_uri=f"s3://{lifecycle_bucket.bucket_name}/{prefix}/",
            cluster_role_arn=self.cluster_role.role_arn if self.cluster_role else None,
        )
        properties = {
            "ClusterRequest": stack.to_json_string(cluster_request),
            "OwnerTagKey": request.OWNER_TAG_KEY,
            "LegacyOwnerTagValues": legacy_owners,
        }
        if config.karpenter_groups:
            # Their node counts are Karpenter's: the handler keeps the live counts instead of resetting them.
            properties["KarpenterGroups"] = json.dumps(list(config.karpenter_groups))
        if handle is not None:
            properties["WaitHandleUrl"] = handle.ref
            properties["WaitTimeoutSeconds"] = str(wait_seconds)
        self.resource = CustomResource(
            self,
            "Resource",
            service_token=provider.service_token,
            resource_type=RESOURCE_TYPE,
            properties=properties,
            removal_policy=RemovalPolicy.DESTROY,
            service_timeout=CUSTOM_RESOURCE_TIMEOUT,
        )
        self.cluster_arn = self.resource.get_att_string("ClusterArn")
        self.status = self.resource.get_att_string("ClusterStatus")

        self.wait_condition: CfnWaitCondition | None = None
        self.ready: IDependable = self.resource
        if handle is not None:
            self.wait_condition = CfnWaitCondition(
                self,
                f"InService{digest}",
                handle=handle.ref,
                timeout=str(wait_seconds),
                count=1,
            )
            self.wait_condition.node.add_dependency(self.resource)
            self.ready = self.wait_condition

    # --- parts ------------------------------------------------------------------------------------

    def _execution_role(self, scope: permissions.Scope) -> iam.Role:
        role = iam.Role(
            self,
            "ExecutionRole",
            assumed_by=iam.ServicePrincipal(permissions.SAGEMAKER),
            description=f"HyperPod execution role for cluster {self.cluster_name} (nodes and HyperPod)",
            managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name(permissions.MANAGED_INSTANCE_POLICY)],
            # Inline, so the permissions exist before the custom resource (which needs the role's ARN) runs.
            inline_policies={
                "HyperPodNodes": iam.PolicyDocument(statements=permissions.execution_role_statements(scope))
            },
        )
        nag.acknowledge(
            role,
            "AmazonSageMakerClusterInstanceRolePolicy is the AWS-maintained baseline HyperPod documents for "
            "cluster instance roles (CloudWatch logs/metrics under /aws/sagemaker/Clusters, SSM messages, "
            "sagemaker-* lifecycle buckets); AWS updates it as HyperPod's agents change.",
            f"AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/{permissions.MANAGED_INSTANCE_POLICY}]",
        )
        nag.justify_wildcard_resources(role, role.node.default_child, nag.by_sid(permissions.WILDCARD_REASONS))
        checkov_skips.skip(
            role,
            "CKV_AWS_111",
            "ec2:DetachNetworkInterface on '*' is what AWS documents for the HyperPod EKS execution role: the VPC "
            "CNI on the nodes detaches interfaces it did not create (tests/rules pins the documented statements).",
        )
        return role

    def _cluster_role(self, scope: permissions.Scope) -> iam.Role:
        role = iam.Role(
            self,
            "ClusterRole",
            assumed_by=iam.ServicePrincipal(permissions.HYPERPOD_SLR_SERVICE),
            description=f"HyperPod cluster {self.cluster_name}: adds and removes nodes for Karpenter autoscaling",
            # Inline, so the permissions exist before CreateCluster names the role.
            inline_policies={"Autoscaling": iam.PolicyDocument(statements=permissions.cluster_role_statements(scope))},
        )
        nag.justify_wildcard_resources(role, role.node.default_child, nag.by_sid(permissions.WILDCARD_REASONS))
        return role

    def _provider(self, scope: permissions.Scope, code: lambda_.Code, log_retention: logs.RetentionDays) -> cr.Provider:
        handler_role = iam.Role(
            self,
            "HandlerRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"HyperPod cluster {self.cluster_name}: create/update/delete custom resource",
            inline_policies={
                "HyperPodCluster": iam.PolicyDocument(
                    statements=permissions.handler_statements(
                        scope,
                        execution_role_arn=self.execution_role.role_arn,
                        poller_arn=self.poller.state_machine.state_machine_arn if self.poller else None,
                        cluster_role_arn=self.cluster_role.role_arn if self.cluster_role else None,
                    )
                )
            },
        )
        nag.justify_wildcard_resources(
            handler_role, handler_role.node.default_child, nag.by_sid(permissions.WILDCARD_REASONS)
        )
        environment = {}
        if self.poller is not None:
            environment["POLLER_STATE_MACHINE_ARN"] = self.poller.state_machine.state_machine_arn

        def function(name: str, handler: str, timeout: Duration, description: str) -> lambda_.Function:
            log_group = logs.LogGroup(
                self, f"{name}Logs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY
            )
            log_group.grant_write(handler_role)
            return lambda_.Function(
                self,
                name,
                code=code,
                handler=f"hyperpod_cluster_runtime.handler.{handler}",
                runtime=RUNTIME,
                architecture=lambda_.Architecture.ARM_64,
                memory_size=256,
                timeout=timeout,
                role=handler_role,
                environment=environment,
                description=description,
                log_group=log_group,
            )

        on_event = function(
            "OnEvent",
            "on_event",
            ON_EVENT_TIMEOUT,
            "HyperPod cluster custom resource: validates, then Create/Update/DeleteCluster",
        )
        is_complete = function(
            "IsComplete",
            "is_complete",
            IS_COMPLETE_TIMEOUT,
            "HyperPod cluster custom resource: acceptance check and wait-until-deleted",
        )

        return logged_provider(
            self,
            on_event=on_event,
            is_complete=is_complete,
            query_interval=PROVIDER_QUERY_INTERVAL,
            total_timeout=PROVIDER_TOTAL_TIMEOUT,
            log_retention=log_retention,
            owner=f"HyperPod cluster {self.cluster_name}",
        )

    def _acknowledge_poller(self, poller: InServicePoller) -> None:
        nag.justify_wildcard_resources(
            poller.role, poller.role.node.default_child, nag.by_sid(permissions.WILDCARD_REASONS)
        )
        _justify_generated(poller.state_machine.role)


def _justify_generated(role: iam.IRole) -> None:
    """Acknowledge the wildcards aws-cdk-lib writes into a role's DefaultPolicy (see ``nag.generated_by_cdk``)."""
    policy = role.node.try_find_child("DefaultPolicy")
    if policy is not None:
        nag.justify_wildcard_resources(policy, policy.node.default_child, nag.generated_by_cdk)
