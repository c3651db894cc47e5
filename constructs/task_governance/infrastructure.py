"""``TaskGovernance``: SageMaker HyperPod task governance for a HyperPod cluster, from the typed config.

What it deploys, in the order each part needs the one before:

1. the ``amazon-sagemaker-hyperpod-taskgovernance`` EKS add-on (Kueue and HyperPod's controllers), once the
   HyperPod cluster is usable (AWS: "install under the HyperPod cluster"; it replaces any other Kueue);
2. the cluster policy, CloudFormation's ``AWS::SageMaker::ClusterSchedulerConfig``: the priority classes
   (task governance turns each into the Kueue WorkloadPriorityClass ``<name>-priority``) and whether idle
   compute is shared by fair-share weight;
3. one compute quota per team through a custom resource (CloudFormation has no type for quotas in the
   pinned CDK; ``runtime/handler.py``). Creating a quota makes task governance create the team's namespace
   ``hyperpod-ns-<team>`` and Kueue LocalQueue ``hyperpod-ns-<team>-localqueue`` (``config.task_governance_names``).

``cdk destroy`` undoes it in reverse: quotas (waited for), then the policy, then the add-on, then the cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from aws_cdk import CustomResource, Duration, RemovalPolicy, Stack
from aws_cdk import aws_eks as eks_l1
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import custom_resources as cr

from config import task_governance_names as names
from config.model import TaskGovernanceConfig, TeamConfig
from constructs import Construct, IDependable
from constructs.hyperpod_cluster import asset, nag
from constructs.logged_provider import logged_provider
from constructs.task_governance import permissions

RUNTIME = lambda_.Runtime.PYTHON_3_14
RUNTIME_SOURCE = Path(__file__).resolve().parent / "runtime"
RUNTIME_PACKAGE = "compute_quota_runtime"
RESOURCE_TYPE = "Custom::ComputeQuota"
OWNER_TAG_KEY = "task-governance:owner"
# Task governance applies a quota in seconds to minutes; the framework polls within the 1-hour limit.
QUERY_INTERVAL = Duration.seconds(15)
TOTAL_TIMEOUT = Duration.minutes(30)


class TaskGovernance(Construct):
    """Attributes: ``addon``, ``cluster_policy`` and ``quotas`` (team name -> custom resource)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: TaskGovernanceConfig,
        prefix: str,
        tags: Mapping[str, str],
        eks_cluster_name: str,
        hyperpod_cluster_arn: str,
        hyperpod_ready: IDependable,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.addon = eks_l1.CfnAddon(
            self,
            "Addon",
            addon_name=names.ADDON_NAME,
            cluster_name=eks_cluster_name,
            addon_version=config.addon_version,
            resolve_conflicts="OVERWRITE",
            preserve_on_delete=False,
        )
        self.addon.node.add_dependency(hyperpod_ready)

        self.cluster_policy = sagemaker.CfnClusterSchedulerConfig(
            self,
            "ClusterPolicy",
            name=f"{prefix}-cluster-policy",
            cluster_arn=hyperpod_cluster_arn,
            description="Task priorities and idle-compute sharing between the teams of this HyperPod cluster",
            scheduler_config=sagemaker.CfnClusterSchedulerConfig.SchedulerConfigProperty(
                priority_classes=[
                    sagemaker.CfnClusterSchedulerConfig.PriorityClassProperty(name=c.name, weight=c.weight)
                    for c in config.priority_classes
                ],
                fair_share="Enabled" if config.fair_share else "Disabled",
            ),
        )
        self.cluster_policy.node.add_dependency(self.addon)

        owner = f"{stack.stack_name}/{self.node.addr}"
        provider = self._provider(stack, hyperpod_cluster_arn, owner, log_retention)
        self.quotas: dict[str, CustomResource] = {}
        for team in config.teams:
            request = quota_request(team, prefix=prefix, cluster_arn=hyperpod_cluster_arn, tags=tags, owner=owner)
            quota = CustomResource(
                self,
                f"Quota-{team.name}",
                service_token=provider.service_token,
                resource_type=RESOURCE_TYPE,
                properties={"ComputeQuota": stack.to_json_string(request), "OwnerTagKey": OWNER_TAG_KEY},
                removal_policy=RemovalPolicy.DESTROY,
                service_timeout=TOTAL_TIMEOUT,
            )
            quota.node.add_dependency(self.cluster_policy)
            self.quotas[team.name] = quota

    def _provider(self, stack: Stack, cluster_arn: str, owner: str, log_retention: logs.RetentionDays) -> cr.Provider:
        handler_role = iam.Role(
            self,
            "HandlerRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Task governance: create/update/delete the teams' SageMaker compute quotas",
            inline_policies={
                "ComputeQuotas": iam.PolicyDocument(
                    statements=permissions.handler_statements(
                        stack, cluster_arn=cluster_arn, owner_tag_key=OWNER_TAG_KEY, owner=owner
                    )
                )
            },
        )
        nag.justify_wildcard_resources(
            handler_role, handler_role.node.default_child, nag.by_sid(permissions.WILDCARD_REASONS)
        )
        code = lambda_.Code.from_asset(str(asset.build(RUNTIME_SOURCE, RUNTIME_PACKAGE)))

        def function(name: str, handler: str, description: str) -> lambda_.Function:
            log_group = logs.LogGroup(
                self, f"{name}Logs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY
            )
            log_group.grant_write(handler_role)
            return lambda_.Function(
                self,
                name,
                code=code,
                handler=f"{RUNTIME_PACKAGE}.handler.{handler}",
                runtime=RUNTIME,
                architecture=lambda_.Architecture.ARM_64,
                memory_size=256,
                timeout=Duration.minutes(1),
                role=handler_role,
                description=description,
                log_group=log_group,
            )

        on_event = function("OnEvent", "on_event", "Compute quota custom resource: Create/Update/DeleteComputeQuota")
        is_complete = function("IsComplete", "is_complete", "Compute quota custom resource: waits for the outcome")
        return logged_provider(
            self,
            on_event=on_event,
            is_complete=is_complete,
            query_interval=QUERY_INTERVAL,
            total_timeout=TOTAL_TIMEOUT,
            log_retention=log_retention,
            owner="Task governance compute quotas",
        )


def quota_request(team: TeamConfig, *, prefix: str, cluster_arn: str, tags: Mapping[str, str], owner: str) -> dict:
    """The CreateComputeQuota request for a team (the handler validates it against botocore's model)."""
    return {
        "Name": names.compute_quota_name(prefix, team.name),
        "Description": f"HyperPod task governance quota for team {team.name} ({names.team_namespace(team.name)})",
        "ClusterArn": cluster_arn,
        "ComputeQuotaConfig": {
            "ComputeQuotaResources": [
                {"InstanceType": q.instance_type, "Count": q.count} for q in team.instance_quotas
            ],
            "ResourceSharingConfig": {"Strategy": "LendAndBorrow" if team.lend_and_borrow else "DontLend"},
            "PreemptTeamTasks": team.preempt_team_tasks,
        },
        "ComputeQuotaTarget": {"TeamName": team.name, "FairShareWeight": team.fair_share_weight},
        "ActivationState": "Enabled",
        "Tags": [{"Key": k, "Value": v} for k, v in sorted(tags.items())] + [{"Key": OWNER_TAG_KEY, "Value": owner}],
    }


def teams_output(config: TaskGovernanceConfig) -> str:
    """The ``TaskGovernanceTeams`` stack output ``post_deploy`` reads: team names, comma-separated."""
    return ",".join(t.name for t in config.teams)


def priority_classes_output(config: TaskGovernanceConfig) -> str:
    """The ``TaskGovernancePriorityClasses`` output: ``name=weight`` pairs, comma-separated."""
    return ",".join(f"{c.name}={c.weight}" for c in config.priority_classes)
