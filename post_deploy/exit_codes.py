"""Exit codes of ``python -m post_deploy``: one per failure class, so a pipeline can tell them apart.

``submit`` passes a finished job's own exit code through unchanged (SkyPilot uses 100 and up for
failed/cancelled jobs), so every code below stays under 100.
"""

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    UNEXPECTED = 1  # a bug or an unclassified error; the message says what
    USAGE = 2  # bad arguments or unreadable outputs file (argparse also uses 2)
    AWS_API = 3  # an AWS call failed after retries (credentials, permissions, not found)
    CLUSTER_NOT_READY = 4  # HyperPod cluster still Creating/Updating, or Failed
    NODES_TIMEOUT = 5  # nodes did not become Ready/schedulable in time
    NODES_UNHEALTHY = 6  # nodes failed deep health checks / marked Unschedulable by HyperPod
    KUBERNETES_API = 7  # the Kubernetes API refused or failed a request after retries
    SKYPILOT_CHECK = 8  # SkyPilot does not see the context or the expected GPUs
    TASK_INVALID = 9  # a task YAML failed offline validation
    LAUNCH_FAILED = 10  # SkyPilot could not provision or submit the task
    PREFLIGHT_BLOCKED = 11  # preflight: the deployment would fail (quota, capacity, plan, network, ...)
    PREFLIGHT_WARNINGS = 12  # preflight: deployable, but with warnings to read
