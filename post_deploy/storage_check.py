"""The storage part of ``check``: the FSx claim is Bound, the CSI drivers that serve it and the default
StorageClass are ready, each gap one line naming the object and the command that shows why.

What is checked, through the Kubernetes API (the same client and kubeconfig as the other steps):

- the PersistentVolumeClaim the storage stack created (``FsxPvcNamespace``/``FsxPvcName``) exists and is
  ``Bound`` (a static claim stays Pending when its PersistentVolume is missing or does not match);
- an ``fsx-csi-node`` pod is Ready on every HyperPod node: without it, pods there cannot mount the claim
  (the add-on's DaemonSet; labels as the EKS add-on sets them);
- with the EBS driver (``DefaultStorageClass``): exactly one default StorageClass, the named one, and a
  Ready ``ebs-csi-controller`` pod: otherwise every PVC without a storageClassName stays Pending.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from post_deploy.labels import CLUSTER_NAME_LABEL

FSX_NODE_PODS = "app=fsx-csi-node"
EBS_CONTROLLER_PODS = "app=ebs-csi-controller"
CSI_NAMESPACE = "kube-system"
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"


@dataclass
class StorageReport:
    claim: str | None = None  # namespace/name
    claim_phase: str | None = None
    fsx_nodes_ready: list[str] = field(default_factory=list)
    default_storage_class: str | None = None
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "claim": self.claim,
            "claim_phase": self.claim_phase,
            "fsx_nodes_ready": self.fsx_nodes_ready,
            "default_storage_class": self.default_storage_class,
            "problems": self.problems,
        }


def _ready(pod: Any) -> bool:
    if (pod.status.phase if pod.status else None) != "Running":
        return False
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))


def check_storage(
    api_client: k8s.ApiClient,
    *,
    claim: tuple[str, str] | None,
    storage_class: str | None,
    cluster_name: str | None = None,
) -> StorageReport:
    core, storage = k8s.CoreV1Api(api_client), k8s.StorageV1Api(api_client)
    report = StorageReport()
    if claim is not None:
        namespace, name = claim
        report.claim = f"{namespace}/{name}"
        _check_claim(core, report, namespace, name)
        _check_fsx_nodes(core, report, cluster_name)
    if storage_class is not None:
        _check_storage_class(core, storage, report, storage_class)
    return report


def _check_claim(core: k8s.CoreV1Api, report: StorageReport, namespace: str, name: str) -> None:
    describe = f"`kubectl -n {namespace} describe pvc {name}`"
    try:
        pvc = core.read_namespaced_persistent_volume_claim(name, namespace)
    except ApiException as err:
        if err.status != 404:
            raise
        report.problems.append(
            f"PersistentVolumeClaim {namespace}/{name} does not exist: the storage stack's Kubernetes objects "
            "are missing (redeploy the storage stack: cdk deploy <prefix>-storage)"
        )
        return
    report.claim_phase = pvc.status.phase if pvc.status else None
    if report.claim_phase != "Bound":
        volume = pvc.spec.volume_name or "(none)"
        report.problems.append(
            f"PersistentVolumeClaim {namespace}/{name} is {report.claim_phase or 'without status'}, not Bound to "
            f"PersistentVolume {volume}: pods that mount it stay Pending; see {describe} and "
            f"`kubectl describe pv {volume}`"
        )


def _check_fsx_nodes(core: k8s.CoreV1Api, report: StorageReport, cluster_name: str | None) -> None:
    selector = f"{CLUSTER_NAME_LABEL}={cluster_name}" if cluster_name else CLUSTER_NAME_LABEL
    nodes = sorted(n.metadata.name for n in core.list_node(label_selector=selector).items)
    pods = core.list_namespaced_pod(CSI_NAMESPACE, label_selector=FSX_NODE_PODS).items
    ready = {p.spec.node_name for p in pods if p.spec and _ready(p)}
    report.fsx_nodes_ready = [n for n in nodes if n in ready]
    missing = [n for n in nodes if n not in ready]
    if missing:
        report.problems.append(
            f"FSx CSI node pod not Ready on {', '.join(missing)}: pods there cannot mount the Lustre claim; see "
            f"`kubectl -n {CSI_NAMESPACE} get pods -l {FSX_NODE_PODS} -o wide` and the aws-fsx-csi-driver add-on's "
            "health (`aws eks describe-addon --addon-name aws-fsx-csi-driver`)"
        )


def _check_storage_class(core: k8s.CoreV1Api, storage: k8s.StorageV1Api, report: StorageReport, name: str) -> None:
    classes = storage.list_storage_class().items
    defaults = sorted(
        c.metadata.name for c in classes if (c.metadata.annotations or {}).get(DEFAULT_CLASS_ANNOTATION) == "true"
    )
    report.default_storage_class = defaults[0] if len(defaults) == 1 else None
    if not defaults:
        report.problems.append(
            f"no default StorageClass (expected {name}): PVCs without storageClassName stay Pending; "
            "redeploy the storage stack"
        )
    elif defaults != [name]:
        report.problems.append(
            f"default StorageClass is {', '.join(defaults)}, expected only {name}: with several defaults "
            f"Kubernetes picks the newest; remove the annotation {DEFAULT_CLASS_ANNOTATION} from the others"
        )
    controllers = core.list_namespaced_pod(CSI_NAMESPACE, label_selector=EBS_CONTROLLER_PODS).items
    if not any(_ready(p) for p in controllers):
        report.problems.append(
            f"no Ready EBS CSI controller pod ({EBS_CONTROLLER_PODS} in {CSI_NAMESPACE}): gp3 volumes are not "
            f"provisioned; see `kubectl -n {CSI_NAMESPACE} get pods -l {EBS_CONTROLLER_PODS}` and the "
            "aws-ebs-csi-driver add-on's health"
        )
