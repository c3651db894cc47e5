"""The poller state machine that releases the WaitCondition once the cluster is really ready.

Loop: Wait -> CheckCluster (one Lambda call: DescribeCluster, ListClusterNodes only at the end, and the
WaitCondition signal when finished) -> Choice (SUCCESS / FAILURE / loop). The Wait state costs nothing
while HyperPod works, so no Lambda idles. The wait plus the check's hard timeout equal
``POLL_INTERVAL_SECONDS``, which bounds the time from "cluster ready" to "CloudFormation signalled".

A check that fails (API errors beyond botocore's retries, a Lambda timeout, a throttled Lambda) means
"wait", not "the cluster failed": a few slow minutes of the SageMaker API must not turn into a FAILURE
whose rollback deletes a cluster that is still being created. ``ReportError`` records the error and loops
until the deadline the handler put in the input, and only then signals FAILURE with the last error.

The check's timeout has a margin over botocore's worst case: DescribeCluster and one ListClusterNodes page,
each with every retry of the ``poll`` budget (``runtime/aws.py``), plus the WaitCondition signal
(``tests/hyperpod_cluster/test_infrastructure.py`` pins the inequality).

A 12-hour wait is at most 576 iterations of ~9 history events each, well under the 25,000-event limit of a
standard workflow.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks

from constructs import Construct

# Seconds between the cluster becoming ready and the signal, at most (on the path without Lambda retries).
POLL_INTERVAL_SECONDS = 75
CHECK_TIMEOUT_SECONDS = 45
WAIT_SECONDS = POLL_INTERVAL_SECONDS - CHECK_TIMEOUT_SECONDS
# Lambda-side failures worth retrying before giving up and signalling FAILURE.
RETRYABLE = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "Lambda.Unknown",
    "States.Timeout",
    "SignalError",
]


class InServicePoller(Construct):
    """Lambda + state machine. ``state_machine`` is started by the custom resource for Create and Update."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        code: lambda_.Code,
        runtime: lambda_.Runtime,
        statements: list[iam.PolicyStatement],
        timeout: Duration,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="HyperPod cluster poller: reads the cluster, signals the CloudFormation WaitCondition",
            inline_policies={"ReadHyperPodClusters": iam.PolicyDocument(statements=statements)},
        )
        log_group = logs.LogGroup(self, "Logs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY)
        log_group.grant_write(self.role)
        self.function = lambda_.Function(
            self,
            "Function",
            code=code,
            handler="hyperpod_cluster_runtime.poller.handle",
            runtime=runtime,
            architecture=lambda_.Architecture.ARM_64,
            memory_size=256,
            timeout=Duration.seconds(CHECK_TIMEOUT_SECONDS),
            role=self.role,
            description="Checks a HyperPod cluster once and signals the WaitCondition when it is ready or failed",
            log_group=log_group,
        )

        wait = sfn.Wait(self, "WaitBetweenChecks", time=sfn.WaitTime.duration(Duration.seconds(WAIT_SECONDS)))
        check = tasks.LambdaInvoke(
            self,
            "CheckCluster",
            lambda_function=self.function,
            payload_response_only=True,
            result_path="$.Check",
            retry_on_service_exceptions=False,
            task_timeout=sfn.Timeout.duration(Duration.seconds(CHECK_TIMEOUT_SECONDS)),
        )
        check.add_retry(errors=RETRYABLE, interval=Duration.seconds(5), max_attempts=3, backoff_rate=2)
        # ReportError gets the whole state (with the caught error under $.Error) and returns the whole state
        # without it, with a new $.Check: WAIT until the deadline, then FAILURE (after signalling).
        report = tasks.LambdaInvoke(
            self,
            "ReportError",
            lambda_function=self.function,
            payload_response_only=True,
            result_path="$",
            retry_on_service_exceptions=False,
            task_timeout=sfn.Timeout.duration(Duration.seconds(CHECK_TIMEOUT_SECONDS)),
        )
        report.add_retry(errors=RETRYABLE, interval=Duration.seconds(5), max_attempts=3, backoff_rate=2)
        report.add_catch(
            sfn.Fail(self, "PollerFailed", error="PollerError", cause_path="$.ReportFailure.Cause"),
            errors=["States.ALL"],
            result_path="$.ReportFailure",
        )
        check.add_catch(report, errors=["States.ALL"], result_path="$.Error")
        done = (
            sfn.Choice(self, "Finished")
            .when(sfn.Condition.string_equals("$.Check.Outcome", "SUCCESS"), sfn.Succeed(self, "ClusterReady"))
            .when(
                sfn.Condition.string_equals("$.Check.Outcome", "FAILURE"),
                sfn.Fail(self, "ClusterNotReady", error="HyperPodNotReady", cause_path="$.Check.Reason"),
            )
            .otherwise(wait)
        )
        report.next(done)
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            definition_body=sfn.DefinitionBody.from_chainable(wait.next(check).next(done)),
            state_machine_type=sfn.StateMachineType.STANDARD,
            timeout=timeout,
            tracing_enabled=True,
            comment="Polls a HyperPod cluster until ready/failed and signals the CloudFormation WaitCondition",
            logs=sfn.LogOptions(
                destination=logs.LogGroup(
                    self, "StateMachineLogs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY
                ),
                level=sfn.LogLevel.ALL,
                # The input holds the WaitCondition's presigned URL; keep it out of the logs.
                include_execution_data=False,
            ),
        )
