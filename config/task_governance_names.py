"""Names HyperPod task governance gives each team's Kubernetes objects, shared by the CDK app (which
creates the teams' compute quotas) and ``post_deploy`` (which points SkyPilot at them). CDK-free.

Source, AWS documentation "Example HyperPod task governance AWS CLI commands"
(https://docs.aws.amazon.com/sagemaker/latest/dg/sagemaker-hyperpod-eks-operate-console-ui-governance-cli.html):
* "The namespace in this example, hyperpod-ns-test-team, is created in Kubernetes based on the team name
  provided, test-team, when the compute allocation is created."
* "with the queue name hyperpod-ns-team-name-localqueue and priority class priority-class-name-priority,
  you must include the following labels: kueue.x-k8s.io/queue-name: hyperpod-ns-team-name-localqueue,
  kueue.x-k8s.io/priority-class: priority-class-name-priority"; "training-priority refers to the priority
  class named training"; a job without a priority class "is treated as a low priority job" (weight 0), and
  an unknown one is refused at submission.
The HyperPod CLI (aws/sagemaker-hyperpod-cli, ``constants.py``) builds the same names from
``HYPERPOD_NAMESPACE_PREFIX = "hyperpod-ns-"`` and ``SAGEMAKER_MANAGED_LOCAL_QUEUE_SUFFIX = "-localqueue"``.
"""

from __future__ import annotations

ADDON_NAME = "amazon-sagemaker-hyperpod-taskgovernance"
NAMESPACE_PREFIX = "hyperpod-ns-"
LOCAL_QUEUE_SUFFIX = "-localqueue"
PRIORITY_CLASS_SUFFIX = "-priority"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
PRIORITY_CLASS_LABEL = "kueue.x-k8s.io/priority-class"
# Kueue's API group; LocalQueues and WorkloadPriorityClasses are read from it by `check`.
KUEUE_GROUP = "kueue.x-k8s.io"


def team_namespace(team: str) -> str:
    return f"{NAMESPACE_PREFIX}{team}"


def local_queue(team: str) -> str:
    return f"{team_namespace(team)}{LOCAL_QUEUE_SUFFIX}"


def priority_class(name: str) -> str:
    """The Kueue WorkloadPriorityClass task governance creates for a cluster-policy priority class."""
    return f"{name}{PRIORITY_CLASS_SUFFIX}"


def compute_quota_name(prefix: str, team: str) -> str:
    """The CreateComputeQuota ``Name`` (EntityName: at most 63 characters) this app gives a team's quota."""
    return f"{prefix}-{team}"
