"""aws-cdk-lib's Provider framework as this app's asynchronous custom resources use it: the framework functions
log to a group of their own, the waiter state machine logs every step (level ALL), and each framework function
gets its own role (one shared role makes the waiter and the functions depend on each other's policies, a
CloudFormation dependency cycle). The framework's own wildcards are justified here, once.

Construct ids are those the constructs used before this module existed, so their logical ids do not change.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import custom_resources as cr

from constructs import Construct, checkov_skips
from constructs.hyperpod_cluster import nag


def logged_provider(
    scope: Construct,
    *,
    on_event: lambda_.IFunction,
    is_complete: lambda_.IFunction,
    query_interval: Duration,
    total_timeout: Duration,
    log_retention: logs.RetentionDays,
    owner: str,
) -> cr.Provider:
    """``owner`` names the custom resource in the framework roles' descriptions ("FSx final backup")."""
    framework_logs = logs.LogGroup(scope, "ProviderLogs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY)
    roles = []
    for name, purpose in (("ProviderOnEventRole", "starts"), ("ProviderWaiterRole", "polls and times out")):
        role = iam.Role(
            scope,
            name,
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{owner}: CDK provider framework function that {purpose} the custom resource",
        )
        framework_logs.grant_write(role)
        roles.append(role)
    provider = cr.Provider(
        scope,
        "Provider",
        on_event_handler=on_event,
        is_complete_handler=is_complete,
        query_interval=query_interval,
        total_timeout=total_timeout,
        framework_on_event_role=roles[0],
        framework_complete_and_timeout_role=roles[1],
        log_group=framework_logs,
        disable_waiter_state_machine_logging=False,
        waiter_state_machine_log_options=cr.LogOptions(
            destination=logs.LogGroup(
                scope, "ProviderWaiterLogs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY
            ),
            level=sfn.LogLevel.ALL,
            include_execution_data=False,
        ),
    )
    waiter = provider.node.find_child("waiter-state-machine")
    for role in (*roles, waiter.node.find_child("Role")):
        policy = role.node.try_find_child("DefaultPolicy")
        if policy is not None:
            nag.justify_wildcard_resources(policy, policy.node.default_child, nag.generated_by_cdk)
    checkov_skips.skip(
        waiter.node.find_child("Role").node.find_child("DefaultPolicy"),
        "CKV_AWS_111",
        "aws-cdk-lib grants its waiter state machine the CloudWatch Logs log-delivery actions (CreateLogDelivery, "
        "PutResourcePolicy, ...) on '*': AWS documents no resource-level permissions for them (Step Functions, "
        "'Logging using CloudWatch Logs'); the machine writes only to the log group its LoggingConfiguration names.",
    )
    nag.acknowledge(
        waiter,
        "aws-cdk-lib's Provider framework offers no tracing option for its internal waiter state machine; it only "
        f"re-invokes is_complete every {query_interval.to_seconds():g} s, and every step is logged (level ALL) to "
        "CloudWatch Logs.",
        "AwsSolutions-SF2",
    )
    return provider
