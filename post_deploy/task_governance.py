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
