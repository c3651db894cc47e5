"""CloudFormation output keys shared by the stacks (which write them) and ``post_deploy`` (which reads
``cdk deploy --outputs-file`` or the pipeline's env vars). One place, so the two cannot drift."""

REGION = "Region"
EKS_CLUSTER_NAME = "EksClusterName"
EKS_CLUSTER_ARN = "EksClusterArn"
HYPERPOD_CLUSTER_NAME = "HyperPodClusterName"
HYPERPOD_CLUSTER_ARN = "HyperPodClusterArn"
LIFECYCLE_BUCKET_NAME = "LifecycleBucketName"
FSX_FILE_SYSTEM_ID = "FsxFileSystemId"
FSX_DNS_NAME = "FsxDnsName"
FSX_MOUNT_NAME = "FsxMountName"
FSX_MOUNT_PATH = "FsxMountPath"
FSX_PVC_NAME = "FsxPvcName"
FSX_PVC_NAMESPACE = "FsxPvcNamespace"
# snapshot | retain | destroy | existing: what deleting the storage stack does to the file system.
FSX_REMOVAL_POLICY = "FsxRemovalPolicy"
DEFAULT_STORAGE_CLASS = "DefaultStorageClass"
