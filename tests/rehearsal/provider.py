"""The two pieces of AWS machinery between CloudFormation and the HyperPod handlers, replayed.

``ProviderFramework`` mirrors aws-cdk-lib's custom-resources Provider framework (``framework.js``
in the synthesized ``cdk.out``): the custom resource's ``ServiceToken`` names the framework's
onEvent function, whose environment names the user's ``on_event``/``is_complete`` functions and
the waiter state machine. The user functions get the CloudFormation request with every property
as a string; ``is_complete`` gets the request merged with ``on_event``'s result; a result without
``PhysicalResourceId`` keeps the default (the RequestId on Create); ``Data`` with
``IsComplete: false`` is an error; the waiter polls at the waiter definition's ``IntervalSeconds``
(compressed here to ``poll_sleep``) at most ``MaxAttempts`` times.

``run_started_executions`` replays Step Functions executions the handlers started in moto (moto
records them but runs nothing): Wait (not waited), Task on a Lambda ARN (the function runs from
its asset), Choice on ``StringEquals``, Succeed, Fail, ``ResultPath`` and ``Catch``. A state type or
construct outside that set raises, so a changed poller definition is noticed. Retries are not
replayed: a failing task goes straight to its Catch.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from typing import Any

from tests.rehearsal.assembly import Stack
from tests.rehearsal.intrinsics import Unresolvable, cfn_strings
from tests.rehearsal.lambdas import LambdaError
from tests.rehearsal.moto_stacks import DeploymentFailed, MotoStacks

FRAMEWORK_ON_EVENT = "framework.onEvent"
MAX_TRANSITIONS = 200


class ProviderFramework:
    def __init__(self, stacks: MotoStacks, stack: Stack, service_token: str):
        self.stacks, self.stack = stacks, stack
        framework = stacks.function_environment(service_token)
        if framework.get("Handler") != FRAMEWORK_ON_EVENT:
            raise Unresolvable(
                f"{stack.name}: ServiceToken {service_token} is not a CDK Provider framework "
                f"onEvent function (handler {framework.get('Handler')!r})"
            )
        self.on_event_arn = framework["USER_ON_EVENT_FUNCTION_ARN"]
        self.is_complete_arn = framework.get("USER_IS_COMPLETE_FUNCTION_ARN")
        for arn in (self.on_event_arn, self.is_complete_arn):
            if arn:
                stacks.prewarm(arn)
        self.interval, self.max_attempts = 0, 0
        if self.is_complete_arn:
            definition = json.loads(
                stacks.client("stepfunctions", stacks.region(stack)).describe_state_machine(
                    stateMachineArn=framework["WAITER_STATE_MACHINE_ARN"]
                )["definition"]
            )
            retry = definition["States"][definition["StartAt"]]["Retry"][0]
            self.interval, self.max_attempts = retry["IntervalSeconds"], retry["MaxAttempts"]

    def request(
        self,
        request_type: str,
        logical_id: str,
        resource_type: str,
        properties: dict[str, Any],
        *,
        physical_id: str | None = None,
        old_properties: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One CloudFormation request to the end: the final response (PhysicalResourceId, Data)."""
        region = self.stacks.region(self.stack)
        cfn_request: dict[str, Any] = {
            "RequestType": request_type,
            "ServiceToken": properties["ServiceToken"],
            "ResponseURL": f"https://cloudformation-custom-resource-response-{region}.s3.amazonaws.com/rehearsal",
            "StackId": self.stacks.pseudo(self.stack)["AWS::StackId"],
            "RequestId": str(uuid.uuid4()),
            "LogicalResourceId": logical_id,
            "ResourceType": resource_type,
            "ResourceProperties": cfn_strings(properties),
        }
        if physical_id is not None:
            cfn_request["PhysicalResourceId"] = physical_id
        if old_properties is not None:
            cfn_request["OldResourceProperties"] = cfn_strings(old_properties)
        where = f"{request_type.upper()}_FAILED {self.stack.name}/{logical_id} ({resource_type})"
        result = self._invoke(self.on_event_arn, cfn_request, where) or {}
        event = {
            **cfn_request,
            **result,
            "PhysicalResourceId": result.get("PhysicalResourceId") or _default_physical_id(cfn_request),
        }
        if request_type == "Delete" and event["PhysicalResourceId"] != physical_id:
            raise DeploymentFailed(
                f"{where}: DELETE: cannot change the physical resource ID from {physical_id!r} "
                f"to {event['PhysicalResourceId']!r} during deletion"
            )
        if not self.is_complete_arn:
            return event
        for _ in range(self.max_attempts + 1):
            done = self._invoke(self.is_complete_arn, event, where)
            if done.get("IsComplete"):
                return {**event, **done, "Data": {**(event.get("Data") or {}), **(done.get("Data") or {})}}
            if done.get("Data"):
                raise DeploymentFailed(f'{where}: "Data" is not allowed if "IsComplete" is "False"')
            time.sleep(self.stacks.poll_sleep)
        raise DeploymentFailed(
            f"{where}: Operation timed out (is_complete said no {self.max_attempts + 1} times, {self.interval} s apart)"
        )

    def _invoke(self, arn: str, payload: dict[str, Any], where: str) -> Any:
        try:
            return self.stacks.function_at(arn).invoke(payload)
        except LambdaError as exc:
            raise DeploymentFailed(f"{where}: {exc.error.get('errorMessage')}") from exc


def _default_physical_id(request: dict[str, Any]) -> str:
    return request["RequestId"] if request["RequestType"] == "Create" else request["PhysicalResourceId"]


# ----- Step Functions executions ------------------------------------------------------------------
def run_started_executions(stacks: MotoStacks) -> list[dict[str, Any]]:
    """Replay every execution started in a rehearsed state machine and not replayed yet."""
    outcomes = []
    for physical in list(stacks.physical.values()):
        if physical.type != "AWS::StepFunctions::StateMachine":
            continue
        region = physical.ref.split(":")[3]
        sfn = stacks.client("stepfunctions", region)
        definition = json.loads(sfn.describe_state_machine(stateMachineArn=physical.ref)["definition"])
        for execution in sfn.list_executions(stateMachineArn=physical.ref)["executions"]:
            arn = execution["executionArn"]
            if arn in stacks.executions_replayed:
                continue
            stacks.executions_replayed.add(arn)
            state_input = json.loads(sfn.describe_execution(executionArn=arn)["input"])
            outcomes.append({"execution": arn, **interpret(stacks, definition, state_input)})
    return outcomes


def interpret(stacks: MotoStacks, definition: dict[str, Any], data: Any) -> dict[str, Any]:
    states, name = definition["States"], definition["StartAt"]
    for _ in range(MAX_TRANSITIONS):
        state = states[name]
        kind = state["Type"]
        if kind == "Succeed":
            return {"status": "SUCCEEDED", "output": data}
        if kind == "Fail":
            cause = _path(data, state["CausePath"]) if "CausePath" in state else state.get("Cause")
            return {"status": "FAILED", "error": state.get("Error"), "cause": cause}
        if kind == "Wait":
            pass
        elif kind == "Task":
            if not str(state["Resource"]).startswith("arn:aws:lambda:"):
                raise Unresolvable(f"state {name}: Task resource {state['Resource']} is not a Lambda ARN")
            try:
                result = stacks.function_at(state["Resource"]).invoke(_path(data, state.get("InputPath", "$")))
            except LambdaError as exc:
                catch = next(
                    (
                        c
                        for c in state.get("Catch", [])
                        if {"States.ALL", exc.error.get("errorType")} & set(c["ErrorEquals"])
                    ),
                    None,
                )
                if catch is None:
                    return {
                        "status": "FAILED",
                        "error": exc.error.get("errorType"),
                        "cause": exc.error.get("errorMessage"),
                    }
                data = _put(
                    data,
                    catch.get("ResultPath", "$"),
                    {"Error": exc.error.get("errorType"), "Cause": json.dumps(exc.error)},
                )
                name = catch["Next"]
                continue
            data = _put(data, state.get("ResultPath", "$"), result)
        elif kind == "Choice":
            name = next((c["Next"] for c in state["Choices"] if _matches(data, c)), state.get("Default"))
            if name is None:
                return {"status": "FAILED", "error": "States.NoChoiceMatched", "cause": ""}
            continue
        else:
            raise Unresolvable(f"state {name}: type {kind} is not replayed by the rehearsal")
        if state.get("End"):
            return {"status": "SUCCEEDED", "output": data}
        name = state["Next"]
    raise DeploymentFailed(f"execution did not finish within {MAX_TRANSITIONS} state transitions")


def _matches(data: Any, choice: dict[str, Any]) -> bool:
    extra = set(choice) - {"Variable", "StringEquals", "Next"}
    if extra:
        raise Unresolvable(f"Choice rule {choice} uses {sorted(extra)}, not replayed by the rehearsal")
    try:
        return _path(data, choice["Variable"]) == choice["StringEquals"]
    except KeyError:
        return False


def _path(data: Any, path: str) -> Any:
    if path == "$":
        return data
    for part in path.removeprefix("$.").split("."):
        data = data[part]
    return data


def _put(data: Any, path: str | None, value: Any) -> Any:
    if path is None:
        return data
    if path == "$":
        return value
    data = copy.deepcopy(data)
    target = data
    *parents, last = path.removeprefix("$.").split(".")
    for part in parents:
        target = target.setdefault(part, {})
    target[last] = value
    return data
