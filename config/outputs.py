"""CloudFormation output keys shared by the stacks (which write them) and ``post_deploy`` (which reads
``cdk deploy --outputs-file`` or the pipeline's env vars). One place, so the two cannot drift."""

REGION = "Region"
EKS_CLUSTER_NAME = "EksClusterName"
EKS_CLUSTER_ARN = "EksClusterArn"
HYPERPOD_CLUSTER_NAME = "HyperPodClusterName"
HYPERPOD_CLUSTER_ARN = "HyperPodClusterArn"
LIFECYCLE_BUCKET_NAME = "LifecycleBucketName"
PROMETHEUS_WORKSPACE_ID = "PrometheusWorkspaceId"
PROMETHEUS_QUERY_URL = "PrometheusQueryUrl"
PROMETHEUS_REMOTE_WRITE_URL = "PrometheusRemoteWriteUrl"
GRAFANA_WORKSPACE_URL = "GrafanaWorkspaceUrl"
# Only with hyperpod.autoscaling: karpenter: comma-separated names of the groups Karpenter scales from 0.
HYPERPOD_KARPENTER_GROUPS = "HyperPodKarpenterGroups"
# Only with hyperpod.autoscaling: karpenter: the skypilot.co/accelerator values of every instance group.
HYPERPOD_ACCELERATORS = "HyperPodAccelerators"
# Only with task_governance.enabled: team names, and the cluster policy's priority classes as name=weight.
TASK_GOVERNANCE_TEAMS = "TaskGovernanceTeams"
TASK_GOVERNANCE_PRIORITY_CLASSES = "TaskGovernancePriorityClasses"
