"""SkyPilot through HyperPod task governance: a team's tasks go to the team's namespace and Kueue queue.

Task governance (``constructs/task_governance``) gives every team a namespace ``hyperpod-ns-<team>`` and a
Kueue LocalQueue ``hyperpod-ns-<team>-localqueue``, and turns each cluster-policy priority class ``<name>``
into the Kueue priority class ``<name>-priority`` (``config.task_governance_names``, with the AWS sources).
A pod is governed when it carries ``kueue.x-k8s.io/queue-name`` (and, for its priority,
``kueue.x-k8s.io/priority-class``); without a priority class task governance treats it as weight 0.

SkyPilot 0.14.1 has the settings for this in its own config schema: ``kubernetes.context_configs.<context>``
takes ``namespace``, ``kueue.local_queue_name`` (SkyPilot then adds the queue label and Kueue's pod-group
labels/annotations to every pod, so a multi-node task is admitted as one gang) and ``pod_config``, which
carries the priority-class label. ``submit --team`` sends exactly that config with its requests (the
SkyPilot client ships its config to the API server with each request), checked by SkyPilot's own schema
validator first; the user's own config file is left untouched.

The teams and priority classes come from the stack outputs ``TaskGovernanceTeams`` and
``TaskGovernancePriorityClasses`` (``--outputs`` file or environment variables), so a typo in ``--team``
fails before anything is launched, with the valid names.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass

from config import outputs as keys
from config import task_governance_names as names
from post_deploy.common import StepError
from post_deploy.exit_codes import ExitCode
from post_deploy.outputs import StackOutputs


@dataclass(frozen=True)
class Governance:
    """What the deployed cluster policy and quotas offer: team names and priority classes (name -> weight)."""

    teams: tuple[str, ...]
    priority_classes: dict[str, int]

    @classmethod
    def from_outputs(cls, outs: StackOutputs) -> Governance | None:
        if not outs.task_governance_teams:
            return None
        teams = tuple(t.strip() for t in outs.task_governance_teams.split(",") if t.strip())
        classes: dict[str, int] = {}
        for pair in (outs.task_governance_priority_classes or "").split(","):
            name, _, weight = pair.strip().partition("=")
            if name:
                try:
                    classes[name] = int(weight)
                except ValueError:
                    raise StepError(
                        ExitCode.USAGE,
                        f"stack output {keys.TASK_GOVERNANCE_PRIORITY_CLASSES} has {pair.strip()!r}; expected name=weight",
                    ) from None
        return cls(teams=teams, priority_classes=classes)


@dataclass(frozen=True)
class TeamPlacement:
    """Where one team's tasks go: namespace, LocalQueue and (optionally) the Kueue priority class label."""

    team: str
    namespace: str
    local_queue: str
    priority_class: str | None

    @property
    def pod_labels(self) -> dict[str, str]:
        return {names.PRIORITY_CLASS_LABEL: self.priority_class} if self.priority_class else {}


def placement_for(governance: Governance | None, team: str, priority: str | None) -> TeamPlacement:
    """Check ``--team``/``--priority`` against the deployed teams and classes; one line naming the valid ones."""
    if governance is None:
        raise StepError(
            ExitCode.USAGE,
            f"--team {team}: the stack outputs have no {keys.TASK_GOVERNANCE_TEAMS} (deploy with "
            "task_governance.enabled: true, and pass --outputs cdk-outputs.json or set the output as env var)",
        )
    if team not in governance.teams:
        raise StepError(
            ExitCode.USAGE,
            f"--team {team}: not one of the teams task governance has on this cluster: {', '.join(governance.teams)}",
        )
    label = None
    if priority is not None:
        base = priority.removesuffix(names.PRIORITY_CLASS_SUFFIX)
        if base not in governance.priority_classes:
            known = ", ".join(f"{n} ({w})" for n, w in governance.priority_classes.items()) or "none"
            raise StepError(
                ExitCode.USAGE,
                f"--priority {priority}: not a priority class of the cluster policy; known (weight): {known}",
            )
        label = names.priority_class(base)
    return TeamPlacement(
        team=team,
        namespace=names.team_namespace(team),
        local_queue=names.local_queue(team),
        priority_class=label,
    )


def team_config(config: dict, context: str, placement: TeamPlacement) -> dict:
    """``config`` (a SkyPilot config as a dict) with the team's namespace, queue and priority label set for
    ``context``; anything else the user configured stays, their own pod labels included."""
    merged = copy.deepcopy(config)
    context_config = merged.setdefault("kubernetes", {}).setdefault("context_configs", {}).setdefault(context, {})
    context_config["namespace"] = placement.namespace
    context_config.setdefault("kueue", {})["local_queue_name"] = placement.local_queue
    # `quota.queue` is SkyPilot's alias that wins over kueue.local_queue_name: drop a stale one for this context.
    if isinstance(context_config.get("quota"), dict):
        context_config["quota"].pop("queue", None)
    if placement.pod_labels:
        pod = context_config.setdefault("pod_config", {})
        pod.setdefault("metadata", {}).setdefault("labels", {}).update(placement.pod_labels)
    validate_skypilot_config(merged)
    return merged


def validate_skypilot_config(config: dict) -> None:
    """SkyPilot's own schema check of a whole config (what it runs when it loads ``~/.sky/config.yaml``)."""
    from sky.utils import common_utils, schemas

    try:
        common_utils.validate_schema(config, schemas.get_config_schema(), "Invalid SkyPilot config: ")
    except ValueError as exc:
        raise StepError(ExitCode.TASK_INVALID, " ".join(str(exc).split())) from None


# --- what `check` reports per team ----------------------------------------------------------------

# Newest first, as SkyPilot's own debug dump does (sky/provision/kubernetes/debug.py): Kueue 0.15+ serves
# v1beta2, earlier releases v1beta1 only.
KUEUE_VERSIONS = ("v1beta2", "v1beta1")
_NO_SUCH_RESOURCE = "could not find the requested resource"


@dataclass
class TeamQueue:
    """One team's Kueue objects as the cluster has them (``problem`` set when they are missing)."""

    team: str
    namespace: str
    local_queue: str
    cluster_queue: str | None = None
    pending: int | None = None
    admitted: int | None = None
    # flavor -> resource -> nominal quota (as Kueue writes it, e.g. "8" nvidia.com/gpu)
    quota: dict[str, dict[str, str]] | None = None
    problem: str | None = None

    def line(self) -> str:
        where = f"team {self.team}: {self.namespace}/{self.local_queue}"
        if self.problem:
            return f"{where}: {self.problem}"
        quota = "; ".join(
            f"{flavor}: " + ", ".join(f"{name} {value}" for name, value in resources.items())
            for flavor, resources in (self.quota or {}).items()
        )
        return (
            f"{where} -> cluster queue {self.cluster_queue}: {self.pending} pending, {self.admitted} admitted; "
            f"quota {quota or 'none'}"
        )


def team_queues(api_client, governance: Governance) -> list[TeamQueue]:
    """Each team's LocalQueue and the ClusterQueue behind it (its nominal quota), read through the API."""
    from kubernetes import client as k8s

    custom = k8s.CustomObjectsApi(api_client)
    found: list[TeamQueue] = []
    for team in governance.teams:
        entry = TeamQueue(team=team, namespace=names.team_namespace(team), local_queue=names.local_queue(team))
        local = _kueue_object(custom, "localqueues", entry.local_queue, entry.namespace)
        if local is None:
            entry.problem = (
                "LocalQueue not found: task governance creates it with the team's compute quota "
                "(is the amazon-sagemaker-hyperpod-taskgovernance add-on ACTIVE and the quota Created?)"
            )
            found.append(entry)
            continue
        status = local.get("status") or {}
        entry.pending = int(status.get("pendingWorkloads") or 0)
        entry.admitted = int(status.get("admittedWorkloads") or 0)
        entry.cluster_queue = (local.get("spec") or {}).get("clusterQueue")
        cluster_queue = _kueue_object(custom, "clusterqueues", entry.cluster_queue) if entry.cluster_queue else None
        if cluster_queue is None:
            entry.problem = f"its ClusterQueue {entry.cluster_queue!r} was not found"
        else:
            entry.quota = {
                flavor["name"]: {r["name"]: str(r.get("nominalQuota", "0")) for r in flavor.get("resources", [])}
                for group in (cluster_queue.get("spec") or {}).get("resourceGroups", [])
                for flavor in group.get("flavors", [])
            }
        found.append(entry)
    return found


def _kueue_object(custom, plural: str, name: str, namespace: str | None = None) -> dict | None:
    """The object from the newest Kueue API version the cluster serves; None when it does not exist."""
    from kubernetes.client.rest import ApiException

    from post_deploy.kube import call_with_retries

    for version in KUEUE_VERSIONS:
        try:
            if namespace:
                return call_with_retries(
                    functools.partial(
                        custom.get_namespaced_custom_object, names.KUEUE_GROUP, version, namespace, plural, name
                    )
                )
            return call_with_retries(
                functools.partial(custom.get_cluster_custom_object, names.KUEUE_GROUP, version, plural, name)
            )
        except ApiException as err:
            if err.status == 404 and _NO_SUCH_RESOURCE in (err.body or ""):
                continue  # this Kueue version is not served: try the older one
            if err.status == 404:
                return None
            raise
    return None
