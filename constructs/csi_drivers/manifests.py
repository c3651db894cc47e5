"""The Kubernetes objects the CSI drivers serve: the default gp3 StorageClass and the static PersistentVolume
and PersistentVolumeClaim of the shared FSx for Lustre file system (applied by ``constructs/kubernetes_objects``).

Static provisioning, as the FSx CSI driver documents it ("static provisioning" example): the PV names the
file system (``volumeHandle`` = its id, ``dnsname`` and ``mountname`` attributes), ``storageClassName: ""``
on both sides so no provisioner ever creates or deletes a file system, ``volumeName`` on the claim so it
binds to exactly this PV, and ``Retain`` so deleting the PV never touches the data. The claim lives in
``default``, the namespace SkyPilot launches pods in when the kubeconfig context names none (which is how
``post_deploy kubeconfig`` writes it).
"""

from __future__ import annotations

from constructs.csi_drivers.infrastructure import EBS_PROVISIONER, FSX_DRIVER

PVC_NAMESPACE = "default"
PVC_NAME = "fsx-claim"
PV_NAME = "fsx-pv"
STORAGE_CLASS_NAME = "gp3"
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"


def gp3_storage_class() -> dict:
    """Encrypted gp3, created where the pod lands (WaitForFirstConsumer: EBS volumes are zonal), expandable."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": STORAGE_CLASS_NAME, "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
        "provisioner": EBS_PROVISIONER,
        "parameters": {"type": "gp3", "encrypted": "true", "csi.storage.k8s.io/fstype": "ext4"},
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
        "allowVolumeExpansion": True,
    }


def fsx_volume(*, file_system_id: str, dns_name: str, mount_name: str, capacity_gib: int) -> list[dict]:
    """The PV and the PVC bound to it (ReadWriteMany: every node of a multi-node job mounts it)."""
    capacity = f"{capacity_gib}Gi"
    labels = {"app.kubernetes.io/managed-by": "hyperpod-sky", "hyperpod-sky/volume": "fsx"}
    pv = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": PV_NAME, "labels": labels},
        "spec": {
            "capacity": {"storage": capacity},
            "volumeMode": "Filesystem",
            "accessModes": ["ReadWriteMany"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "mountOptions": ["flock"],
            "claimRef": {"namespace": PVC_NAMESPACE, "name": PVC_NAME},
            "csi": {
                "driver": FSX_DRIVER,
                "volumeHandle": file_system_id,
                "volumeAttributes": {"dnsname": dns_name, "mountname": mount_name},
            },
        },
    }
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": PVC_NAME, "namespace": PVC_NAMESPACE, "labels": labels},
        "spec": {
            "accessModes": ["ReadWriteMany"],
            "storageClassName": "",
            "volumeName": PV_NAME,
            "resources": {"requests": {"storage": capacity}},
        },
    }
    return [pv, pvc]
