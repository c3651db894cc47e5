"""SkyPilot on a HyperPod cluster whose GPU groups Karpenter scales from 0 (``hyperpod.autoscaling: karpenter``).

Without help, SkyPilot 0.14.1 fails a launch on an empty group within a minute: its optimizer drops a
Kubernetes context where no node fits the request (``sky/clouds/kubernetes.py``
``regions_with_offering``), and a pod that stays Pending longer than ``provision_timeout`` (10-60 s by
default, ``_calculate_provision_timeout``) is given up. Its ``kubernetes.autoscaler`` setting is the
documented way out: with an autoscaler configured for the context, the context is kept although nothing
fits yet, the GPU checks are skipped, and the pod's node selector comes from that autoscaler's label
formatter (``sky/provision/kubernetes/utils.py`` ``get_accelerator_label_key_values``).

Which autoscaler value: ``karpenter`` selects ``karpenter.k8s.aws/instance-gpu-name``, a label the open
source AWS provider sets and HyperPod's nodes do not carry; ``generic`` selects ``skypilot.co/accelerator``
with the lowercase accelerator name, which is exactly the label the cluster construct puts on every node
of a GPU group through ``KubernetesConfig.Labels`` (so HyperPod's Karpenter sees it among the group's
labels before the node exists). ``provision_timeout`` is raised to cover a HyperPod node's start (instance
boot plus lifecycle script, typically 10-20 minutes).

Both go under ``kubernetes.context_configs.<context>``, so other contexts keep their own behaviour, and a
value the user already set there wins (reported, not overridden). The client sends its config with every
request, so the in-process override reaches the API server (as ``submit``'s other overrides do).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from post_deploy.common import StepError, say
from post_deploy.exit_codes import ExitCode

# The SkyPilot autoscaler whose label formatter matches HyperPod's group labels (see the module docstring).
SKYPILOT_AUTOSCALER = "generic"
# How long a pod may wait for Karpenter's node before SkyPilot gives the launch up.
DEFAULT_SCALE_UP_TIMEOUT = 2700


def parse_groups(value: str | None) -> tuple[str, ...]:
    """``--karpenter-groups a,b`` (the HyperPodKarpenterGroups output) -> ("a", "b")."""
    return tuple(g.strip() for g in (value or "").split(",") if g.strip())


def context_settings(timeout: int = DEFAULT_SCALE_UP_TIMEOUT) -> dict[str, Any]:
    return {"autoscaler": SKYPILOT_AUTOSCALER, "provision_timeout": int(timeout)}


def with_autoscaler(config: Any, context: str, timeout: int = DEFAULT_SCALE_UP_TIMEOUT) -> tuple[Any, list[str]]:
    """``config`` (a SkyPilot ``Config``) with our settings for ``context`` under the user's own, and the
    keys whose user value differs from ours (theirs win)."""
    path = ("kubernetes", "context_configs", context)
    theirs = dict(config.get_nested(path, None) or {})
    ours = context_settings(timeout)
    config.set_nested(path, {**theirs, **{k: v for k, v in ours.items() if k not in theirs}})
    return config, sorted(k for k in ours if k in theirs and theirs[k] != ours[k])


def schema_problem(config: Any) -> str | None:
    """What SkyPilot's own config validation (its schema and its ``case_insensitive_enum`` keyword, which a
    plain JSON-schema validator would ignore) says about ``config``; None: accepted."""
    from sky.utils import common_utils, schemas

    try:
        common_utils.validate_schema(dict(config), schemas.get_config_schema(), "Invalid SkyPilot config: ")
    except ValueError as exc:
        return str(exc).splitlines()[0]
    return None


@contextlib.contextmanager
def autoscaler_config(context: str | None, groups: tuple[str, ...], timeout: int) -> Iterator[None]:
    """Send the autoscaler settings with every SkyPilot request made inside (only when Karpenter scales
    groups of this cluster and a context is known)."""
    if not groups or not context:
        yield
        return
    from sky import skypilot_config

    config, replaced = with_autoscaler(skypilot_config.to_dict(), context, timeout)
    problem = schema_problem(config)
    if problem:  # e.g. an autoscaler value of the user's own that this SkyPilot does not know
        raise StepError(ExitCode.USAGE, problem)
    if replaced:
        say(
            f"warning: your SkyPilot config sets kubernetes.context_configs.{context} {', '.join(replaced)}; "
            f"a launch on an empty Karpenter group ({', '.join(groups)}) may then fail before its node starts"
        )
    with skypilot_config.replace_skypilot_config_in_process(config):
        yield


def note(context: str | None, groups: tuple[str, ...], timeout: int) -> str:
    """One line for ``check`` and ``submit``: what a launch on a scaled-to-zero group will do."""
    return (
        f"Karpenter scales instance group(s) {', '.join(groups)} from 0: SkyPilot (kubernetes.context_configs."
        f"{context or '<context>'}: autoscaler {SKYPILOT_AUTOSCALER}, provision_timeout {timeout} s) keeps the "
        "context, and a pod waits for its node instead of failing"
    )


def narrow_accelerators(task: Any, offered: tuple[str, ...]) -> list[str]:
    """Keep only the accelerator choices some instance group offers (``offered``: skypilot.co/accelerator
    values) and return the dropped ones. With an autoscaler configured SkyPilot treats every choice as
    feasible (it cannot ask HyperPod's Karpenter), so from a list such as smoke.yaml's it could pick a GPU no
    group has, and the pod would wait out the timeout. A task none of whose choices is offered fails at once."""
    choices = list(task.resources)
    gpu = [r for r in choices if r.accelerators]
    if not offered or not gpu:
        return []
    kept = [r for r in choices if not r.accelerators or any(a.lower() in offered for a in r.accelerators)]
    dropped = sorted({a for r in gpu if r not in kept for a in r.accelerators})
    if not [r for r in kept if r.accelerators]:
        raise StepError(
            ExitCode.TASK_INVALID,
            f"task {task.name or '(unnamed)'} asks for {', '.join(sorted({a for r in gpu for a in r.accelerators}))}; "
            f"the cluster's instance groups offer only {', '.join(offered)}",
        )
    if dropped:
        task.set_resources(set(kept) if isinstance(task.resources, set) else kept)
    return dropped
