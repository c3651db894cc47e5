"""The desired cluster (a CreateCluster request built by the construct) and how it differs from a real one.

The construct serialises the complete CreateCluster request into one JSON property, so numbers keep their
types (CloudFormation turns every other custom-resource property into a string) and the handler sends
exactly what was synthesized. Validation uses botocore's own SageMaker model, plus the length and pattern
limits botocore does not enforce client-side, so a bad value fails before any API call.

Comparisons are made against the live cluster (DescribeCluster), not against the previous properties:
during an update rollback CloudFormation sends the old properties back, and a refused change that never
reached HyperPod must not be refused again on the way back.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

import botocore.session
from botocore.validate import ParamValidator


class SpecError(ValueError):
    """A request that cannot be sent or a change that cannot be applied; the message is the whole story."""


# Fields of an instance group HyperPod cannot change on an existing group.
IMMUTABLE_GROUP_FIELDS = ("InstanceType", "ExecutionRole", "ThreadsPerCore", "InstanceStorageConfigs")
# Fields UpdateCluster applies in place (besides adding and removing whole groups).
IN_PLACE_GROUP_FIELDS = (
    "InstanceCount",
    "LifeCycleConfig",
    "OnStartDeepHealthChecks",
    "TrainingPlanArn",
    "KubernetesConfig",
)
REPLACE_HINT = "change hyperpod.cluster_name to replace the cluster (CloudFormation then deletes the old one)"


@lru_cache(maxsize=1)
def _model():
    return botocore.session.get_session().get_service_model("sagemaker")


@dataclass(frozen=True)
class Properties:
    """The custom resource's properties, parsed and validated."""

    request: dict[str, Any]
    owner_tag_key: str
    wait_handle_url: str | None
    wait_timeout_seconds: int
    # Owner values earlier versions of the construct wrote; a cluster carrying one is still ours.
    legacy_owner_tag_values: tuple[str, ...] = ()
    # Groups whose node counts Karpenter owns while autoscaling is on (property KarpenterGroups).
    karpenter_groups: tuple[str, ...] = ()

    @property
    def cluster_name(self) -> str:
        return self.request["ClusterName"]

    @property
    def owner_tag_value(self) -> str:
        return tags_of(self.request)[self.owner_tag_key]

    @property
    def accepted_owner_tag_values(self) -> tuple[str, ...]:
        return (self.owner_tag_value, *self.legacy_owner_tag_values)

    @classmethod
    def parse(cls, props: dict[str, Any]) -> Properties:
        raw = props.get("ClusterRequest")
        if not isinstance(raw, str):
            raise SpecError("property ClusterRequest is missing (expected the CreateCluster request as a JSON string)")
        try:
            request = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise SpecError(f"property ClusterRequest is not valid JSON ({exc.msg} at character {exc.pos})") from None
        validate_request(request)
        owner_key = props.get("OwnerTagKey")
        if not owner_key or owner_key not in tags_of(request):
            raise SpecError(f"property OwnerTagKey = {owner_key!r} must name one of the request's Tags")
        url = props.get("WaitHandleUrl") or None
        if url is not None and not re.match(r"^https?://", url):
            raise SpecError(f"property WaitHandleUrl = {url[:60]!r} is not an http(s) URL")
        try:
            timeout = int(props.get("WaitTimeoutSeconds", 0))
        except (TypeError, ValueError):
            raise SpecError(
                f"property WaitTimeoutSeconds = {props.get('WaitTimeoutSeconds')!r} is not a whole number"
            ) from None
        if url is not None and not 60 <= timeout <= 43200:
            raise SpecError(f"property WaitTimeoutSeconds = {timeout} must be 60..43200 (a WaitCondition's limits)")
        legacy = props.get("LegacyOwnerTagValues") or []
        if not isinstance(legacy, list) or not all(isinstance(v, str) and v for v in legacy):
            raise SpecError(f"property LegacyOwnerTagValues = {legacy!r} must be a list of tag values")
        return cls(
            request=request,
            owner_tag_key=owner_key,
            wait_handle_url=url,
            wait_timeout_seconds=timeout,
            karpenter_groups=_karpenter_groups(props.get("KarpenterGroups"), request),
            legacy_owner_tag_values=tuple(legacy),
        )


def _karpenter_groups(raw: Any, request: dict[str, Any]) -> tuple[str, ...]:
    if raw in (None, ""):
        return ()
    try:
        names = json.loads(raw) if isinstance(raw, str) else None
    except json.JSONDecodeError:
        names = None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise SpecError(f"property KarpenterGroups = {str(raw)[:60]!r} is not a JSON list of instance group names")
    unknown = sorted(set(names) - set(groups_of(request)))
    if unknown:
        raise SpecError(f"property KarpenterGroups names groups the request does not have: {', '.join(unknown)}")
    if names and not autoscaling_enabled(request):
        raise SpecError("property KarpenterGroups is set but the request does not enable AutoScaling")
    return tuple(names)


def autoscaling_enabled(request_or_cluster: dict[str, Any]) -> bool:
    """Karpenter autoscaling is on in this request (or on the live cluster, from DescribeCluster)."""
    return (request_or_cluster.get("AutoScaling") or {}).get("Mode") == "Enable"


def validate_request(request: Any) -> None:
    """Raise SpecError naming the first offending key if SageMaker would reject the request's shape."""
    if not isinstance(request, dict):
        raise SpecError("ClusterRequest must be a JSON object")
    shape = _model().operation_model("CreateCluster").input_shape
    report = ParamValidator().validate(request, shape)
    if report.has_errors():
        lines = [line.strip() for line in report.generate_report().splitlines() if line.strip()]
        first = next((line for line in lines if not line.endswith("failed:")), lines[0])
        raise SpecError(f"invalid CreateCluster request: {first}")
    problems = list(_limits(request, shape, "ClusterRequest"))
    if problems:
        raise SpecError(f"invalid CreateCluster request: {problems[0]}")
    for key in ("InstanceGroups", "VpcConfig", "Orchestrator"):
        if key not in request:
            raise SpecError(f"invalid CreateCluster request: {key} is required for an EKS-orchestrated cluster")
    names = [g["InstanceGroupName"] for g in request["InstanceGroups"]]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SpecError(f"invalid CreateCluster request: InstanceGroupName repeated: {', '.join(dupes)}")
    for group in request["InstanceGroups"]:
        for key in ("InstanceType", "LifeCycleConfig", "ThreadsPerCore"):
            if key not in group:
                raise SpecError(
                    f"invalid CreateCluster request: instance group {group['InstanceGroupName']} has no {key}"
                )


def _limits(value: Any, shape, path: str):
    """Max lengths, max values and patterns from the model (botocore's validator checks only minimums)."""
    meta = shape.metadata
    if shape.type_name == "structure":
        for name, member in shape.members.items():
            if name in value:
                yield from _limits(value[name], member, f"{path}.{name}")
    elif shape.type_name == "list":
        if "max" in meta and len(value) > meta["max"]:
            yield f"{path} has {len(value)} items; at most {meta['max']} allowed"
        for i, item in enumerate(value):
            yield from _limits(item, shape.member, f"{path}[{i}]")
    elif shape.type_name == "map":
        if "max" in meta and len(value) > meta["max"]:
            yield f"{path} has {len(value)} entries; at most {meta['max']} allowed"
        for key, item in value.items():
            yield from _limits(key, shape.key, f"{path} key {key!r}")
            yield from _limits(item, shape.value, f"{path}[{key!r}]")
    elif shape.type_name == "string":
        if shape.enum and value not in shape.enum:
            near = difflib.get_close_matches(str(value), shape.enum, n=3)
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            yield f"{path} = {value!r} is not one of the {len(shape.enum)} values SageMaker accepts{hint}"
        if "max" in meta and len(value) > meta["max"]:
            yield f"{path} = {value[:40]!r}... is longer than {meta['max']} characters"
        pattern = _pattern(meta.get("pattern"))
        if pattern is not None and not pattern.fullmatch(value):
            yield f"{path} = {value!r} does not match {meta['pattern']}"
    elif shape.type_name in ("integer", "long"):
        if "max" in meta and value > meta["max"]:
            yield f"{path} = {value} is above the maximum {meta['max']}"


@cache
def _pattern(source: str | None):
    """Python ``re`` cannot compile Java-style ``\\p{L}`` classes; those patterns are left to the service."""
    if not source:
        return None
    try:
        return re.compile(source)
    except re.error:
        return None


def tags_of(request: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in request.get("Tags", [])}


def groups_of(request_or_cluster: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {g["InstanceGroupName"]: g for g in request_or_cluster.get("InstanceGroups", [])}


def target_counts(request: dict[str, Any]) -> dict[str, int]:
    return {name: g["InstanceCount"] for name, g in groups_of(request).items()}


def refusals(desired: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """Changes HyperPod cannot apply to the live cluster, each phrased with what to do instead."""
    problems = []
    want_vpc, have_vpc = desired["VpcConfig"], actual.get("VpcConfig")
    if have_vpc:
        for key in ("Subnets", "SecurityGroupIds"):
            if sorted(want_vpc[key]) != sorted(have_vpc.get(key, [])):
                problems.append(f"VpcConfig.{key} {sorted(have_vpc.get(key, []))} -> {sorted(want_vpc[key])}")
    have_eks = (actual.get("Orchestrator") or {}).get("Eks", {}).get("ClusterArn")
    want_eks = desired["Orchestrator"]["Eks"]["ClusterArn"]
    if have_eks and have_eks != want_eks:
        problems.append(f"Orchestrator.Eks.ClusterArn {have_eks} -> {want_eks}")
    have_mode, want_mode = actual.get("NodeProvisioningMode"), desired.get("NodeProvisioningMode")
    if have_mode and not want_mode:
        # UpdateCluster can set the mode (it is not create-only in CloudFormation's schema for
        # AWS::SageMaker::Cluster either) but has no value that turns it off again.
        problems.append(
            f"NodeProvisioningMode {have_mode} -> unset (HyperPod cannot switch continuous provisioning off; keep "
            "hyperpod.node_provisioning_mode: Continuous, which turning hyperpod.autoscaling off does not change)"
        )
    if autoscaling_enabled(desired) and not autoscaling_enabled(actual) and have_mode != "Continuous":
        problems.append(
            "AutoScaling Disabled -> Enable on a cluster without continuous provisioning (HyperPod enables Karpenter "
            "only on clusters already in NodeProvisioningMode Continuous: deploy once with "
            "hyperpod.node_provisioning_mode: Continuous, then turn on hyperpod.autoscaling)"
        )
    have_role, want_role = actual.get("ClusterRole"), desired.get("ClusterRole")
    if autoscaling_enabled(actual) and autoscaling_enabled(desired) and have_role and want_role != have_role:
        problems.append(
            f"ClusterRole {have_role} -> {want_role} (it cannot change while autoscaling is enabled: deploy once with "
            "hyperpod.autoscaling off, then on again)"
        )
    have_groups = groups_of(actual)
    for name, want in groups_of(desired).items():
        have = have_groups.get(name)
        if have is None:
            continue  # a new group is an in-place change
        for field in IMMUTABLE_GROUP_FIELDS:
            if field not in have:
                continue  # not reported by the service: nothing to compare against
            was, wanted = _comparable(field, have.get(field)), _comparable(field, want.get(field))
            if was != wanted:
                problems.append(f"instance group {name}: {field} {_show(was)} -> {_show(wanted)}")
    return problems


def refusal_message(cluster_name: str, problems: list[str]) -> str:
    return (
        f"HyperPod cluster {cluster_name} cannot be changed in place: {'; '.join(problems)}. "
        f"Nothing was changed. To apply this, {REPLACE_HINT}; to add a differently shaped group, give it a new name."
    )


def in_place_projection(request: dict[str, Any]) -> dict[str, Any]:
    """The parts of a request UpdateCluster applies; equal projections mean no UpdateCluster is needed."""
    return {
        "NodeRecovery": request.get("NodeRecovery"),
        "NodeProvisioningMode": request.get("NodeProvisioningMode"),
        "AutoScaling": autoscaling_enabled(request),
        "Groups": {
            name: {f: _normal(g.get(f)) for f in (*IN_PLACE_GROUP_FIELDS, "MinInstanceCount")}
            for name, g in groups_of(request).items()
        },
    }


def karpenter_owned(karpenter_groups: tuple[str, ...], actual: dict[str, Any]) -> set[str]:
    """Groups whose live counts belong to Karpenter: it only owns them once autoscaling runs on the cluster."""
    return set(karpenter_groups) if autoscaling_enabled(actual) else set()


def needs_update(
    desired: dict[str, Any],
    previous: dict[str, Any] | None,
    actual: dict[str, Any],
    karpenter_groups: tuple[str, ...] = (),
) -> bool:
    """UpdateCluster is needed if the in-place spec changed, or the live cluster drifted from it (a Karpenter
    group's count is not drift: Karpenter moves it through BatchAdd/BatchDeleteClusterNodes)."""
    if previous is None or in_place_projection(desired) != in_place_projection(previous):
        return True
    if autoscaling_enabled(desired) != autoscaling_enabled(actual):
        return True
    if desired.get("NodeProvisioningMode") and desired["NodeProvisioningMode"] != actual.get("NodeProvisioningMode"):
        return True
    have = groups_of(actual)
    if set(have) != set(groups_of(desired)):
        return True
    owned = karpenter_owned(karpenter_groups, actual)
    return any(
        have[name].get("TargetCount") != count for name, count in target_counts(desired).items() if name not in owned
    )


def update_request(
    desired: dict[str, Any], actual: dict[str, Any], karpenter_groups: tuple[str, ...] = ()
) -> dict[str, Any]:
    """UpdateCluster takes the full group list; groups no longer wanted go in InstanceGroupsToDelete.

    A Karpenter group keeps its live count (sending the config's 0 would remove the nodes Karpenter added).
    Autoscaling is switched with ``AutoScaling``; the ClusterRole goes with enabling only, since HyperPod does
    not accept a ClusterRole change while autoscaling is enabled."""
    have = groups_of(actual)
    owned = karpenter_owned(karpenter_groups, actual)
    groups = []
    for group in desired["InstanceGroups"]:
        name = group["InstanceGroupName"]
        if name in owned and name in have and have[name].get("TargetCount") is not None:
            group = {**group, "InstanceCount": have[name]["TargetCount"]}
        groups.append(group)
    request: dict[str, Any] = {"ClusterName": desired["ClusterName"], "InstanceGroups": groups}
    removed = sorted(set(have) - set(groups_of(desired)))
    if removed:
        request["InstanceGroupsToDelete"] = removed
    if "NodeRecovery" in desired:
        request["NodeRecovery"] = desired["NodeRecovery"]
    if desired.get("NodeProvisioningMode"):
        request["NodeProvisioningMode"] = desired["NodeProvisioningMode"]
    if autoscaling_enabled(desired) and not autoscaling_enabled(actual):
        request["AutoScaling"] = desired["AutoScaling"]
        request["ClusterRole"] = desired["ClusterRole"]
    elif autoscaling_enabled(actual) and not autoscaling_enabled(desired):
        request["AutoScaling"] = {"Mode": "Disable"}
    return request


def adoption_mismatches(
    desired: dict[str, Any], actual: dict[str, Any], karpenter_groups: tuple[str, ...] = ()
) -> list[str]:
    """Why an existing cluster of the same name is not the one this request would create."""
    problems = refusals(desired, actual)
    have, want = groups_of(actual), groups_of(desired)
    if autoscaling_enabled(desired) != autoscaling_enabled(actual):
        problems.append(
            f"AutoScaling {'Enable' if autoscaling_enabled(actual) else 'Disabled'} -> "
            f"{'Enable' if autoscaling_enabled(desired) else 'Disabled'}"
        )
    if set(have) != set(want):
        problems.append(f"instance groups {sorted(have)} -> {sorted(want)}")
    owned = karpenter_owned(karpenter_groups, actual)
    for name in sorted(set(have) & set(want) - owned):
        if have[name].get("TargetCount") != want[name]["InstanceCount"]:
            problems.append(
                f"instance group {name}: InstanceCount {have[name].get('TargetCount')} -> {want[name]['InstanceCount']}"
            )
    return problems


def _comparable(field: str, value: Any) -> Any:
    """Storage is compared on the extra EBS volumes the request sets; a root-volume entry the service may
    report is not part of the request."""
    if field == "InstanceStorageConfigs":
        value = [c for c in value or [] if not (c.get("EbsVolumeConfig") or {}).get("RootVolume")]
    return _normal(value)


def _normal(value: Any) -> Any:
    """Order-insensitive comparison for the lists HyperPod may echo in another order."""
    if isinstance(value, list):
        return sorted((_normal(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    return value


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)
