"""The storage layer: the FSx for Lustre file system (created or existing) and each removal policy, the CSI
add-ons with Pod Identity, and the Kubernetes objects that bind a claim to it and add a default StorageClass."""

from __future__ import annotations

import functools
import json

import aws_cdk as cdk
import kubernetes_validate
import pytest
from aws_cdk.assertions import Match, Template

from config import outputs
from constructs.csi_drivers.manifests import fsx_volume, gp3_storage_class
from constructs.hyperpod_helm_chart.runtime.helm_chart_installer.kubernetes_objects import RESOURCE_TYPE
from stacks.infrastructure import add_infrastructure
from tests.conftest import make_config

EXISTING = "fs-0123456789abcdef0"


@functools.cache
def _synth(**overrides) -> dict[str, dict]:
    """Templates of every stack for one config (cached: each variant is synthesized once per session)."""
    config = make_config(**overrides)
    app = cdk.App()
    stacks = add_infrastructure(app, config)
    return {s.stack_name: Template.from_stack(s).to_json() for s in stacks.all()}


def _storage(**overrides) -> Template:
    return Template.from_json(_synth(**overrides)["hyperpod-sky-storage"])


def _of_type(template: Template, type_name: str) -> dict[str, dict]:
    return template.find_resources(type_name)


def _manifests(template: Template) -> str:
    (objects,) = _of_type(template, RESOURCE_TYPE).values()
    return json.dumps(objects["Properties"]["Manifests"])


def test_default_file_system_is_persistent_2_in_the_hyperpod_subnet_on_the_shared_group():
    templates = _synth()
    storage = Template.from_json(templates["hyperpod-sky-storage"])
    storage.has_resource_properties(
        "AWS::FSx::FileSystem",
        {
            "FileSystemType": "LUSTRE",
            "FileSystemTypeVersion": "2.15",
            "StorageType": "SSD",
            "StorageCapacity": 1200,
            "LustreConfiguration": {
                "DeploymentType": "PERSISTENT_2",
                "PerUnitStorageThroughput": 250,
                "DataCompressionType": "LZ4",
                "CopyTagsToBackups": True,
            },
            "Tags": Match.array_with(
                [{"Key": "Name", "Value": "hyperpod-sky-fsx"}, {"Key": "project", "Value": "hyperpod-skypilot"}]
            ),
        },
    )
    (fs,) = _of_type(storage, "AWS::FSx::FileSystem").values()
    # The subnet and group are the ones the HyperPod cluster gets (network stack exports).
    network = templates["hyperpod-sky-network"]
    (subnet,) = fs["Properties"]["SubnetIds"]
    (group,) = fs["Properties"]["SecurityGroupIds"]
    subnet_export = subnet["Fn::ImportValue"]
    exported = {o["Export"]["Name"]: o["Value"] for o in network["Outputs"].values() if "Export" in o}
    subnet_ref = exported[subnet_export]["Ref"]
    assert network["Resources"][subnet_ref]["Properties"]["AvailabilityZone"] == "us-east-1a"
    assert exported[group["Fn::ImportValue"]] == {"Fn::GetAtt": ["HyperPodSecurityGroup1A747A0A", "GroupId"]}


def test_snapshot_takes_a_final_backup_before_the_file_system_is_deleted():
    storage = _storage()
    (fs_id,) = _of_type(storage, "AWS::FSx::FileSystem")
    fs = _of_type(storage, "AWS::FSx::FileSystem")[fs_id]
    assert fs["DeletionPolicy"] == "Delete"
    ((backup_id, backup),) = _of_type(storage, "Custom::FsxFinalBackup").items()
    assert fs_id in backup["DependsOn"]  # created after, so deleted before the file system
    assert backup["Properties"]["FileSystemId"] == {"Ref": fs_id}
    (objects,) = _of_type(storage, RESOURCE_TYPE).values()
    assert backup_id in objects["DependsOn"]  # the claim is released before the backup and the delete
    # The handler may back up this file system and tag only backups.
    policies = json.dumps(_of_type(storage, "AWS::IAM::Policy"))
    assert '"fsx:CreateBackup"' in policies and '":backup/*"' in policies


@pytest.mark.parametrize(("policy", "deletion"), [("retain", "Retain"), ("destroy", "Delete")])
def test_retain_and_destroy_map_to_the_deletion_policy_without_a_backup(policy, deletion):
    storage = _storage(**{"storage.fsx.removal_policy": policy})
    (fs,) = _of_type(storage, "AWS::FSx::FileSystem").values()
    assert fs["DeletionPolicy"] == deletion
    assert _of_type(storage, "Custom::FsxFinalBackup") == {}
    assert storage.to_json()["Outputs"][outputs.FSX_REMOVAL_POLICY]["Value"] == policy


def test_s3_import_path_links_the_bucket_under_data_with_automatic_import():
    storage = _storage(
        **{"storage.fsx.s3_import_path": "s3://my-datasets/imagenet/", "storage.fsx.removal_policy": "destroy"}
    )
    storage.has_resource_properties(
        "AWS::FSx::DataRepositoryAssociation",
        {
            "DataRepositoryPath": "s3://my-datasets/imagenet/",
            "FileSystemPath": "/data",
            "BatchImportMetaDataOnCreate": True,
            "S3": {"AutoImportPolicy": {"Events": ["NEW", "CHANGED", "DELETED"]}},
        },
    )


def test_existing_file_system_is_looked_up_and_never_created_or_deleted():
    templates = _synth(**{"storage.fsx.existing_file_system_id": EXISTING})
    storage = Template.from_json(templates["hyperpod-sky-storage"])
    assert _of_type(storage, "AWS::FSx::FileSystem") == {}
    assert _of_type(storage, "Custom::FsxFinalBackup") == {}
    ((lookup_id, lookup),) = _of_type(storage, "Custom::FsxExistingFileSystem").items()
    assert lookup["Properties"]["FileSystemId"] == EXISTING
    manifests = _manifests(storage)
    assert EXISTING in manifests and lookup_id in manifests  # volumeHandle, and dnsname/mountname from the look-up
    out = storage.to_json()["Outputs"]
    assert out[outputs.FSX_FILE_SYSTEM_ID]["Value"] == EXISTING
    assert out[outputs.FSX_REMOVAL_POLICY]["Value"] == "existing"
    # The existing file system has its own security group: ours opens no Lustre ports for it.
    network = json.dumps(templates["hyperpod-sky-network"])
    assert '"FromPort": 988' not in network


def test_created_file_system_opens_the_lustre_ports_on_the_shared_group():
    network = Template.from_json(_synth()["hyperpod-sky-network"])
    for low, high in ((988, 988), (1018, 1023)):
        network.has_resource_properties(
            "AWS::EC2::SecurityGroupIngress",
            {
                "IpProtocol": "tcp",
                "FromPort": low,
                "ToPort": high,
                "GroupId": {"Fn::GetAtt": ["HyperPodSecurityGroup1A747A0A", "GroupId"]},
                "SourceSecurityGroupId": {"Fn::GetAtt": ["HyperPodSecurityGroup1A747A0A", "GroupId"]},
            },
        )


def test_storage_off_adds_no_stack_and_changes_no_other_template():
    off = _synth(**{"storage.fsx.enabled": "false", "storage.ebs_csi": "false"})
    assert "hyperpod-sky-storage" not in off
    assert '"FromPort": 988' not in json.dumps(off["hyperpod-sky-network"])
    hyperpod = off["hyperpod-sky-hyperpod"]
    assert "storage" not in json.dumps(hyperpod.get("Parameters", {})) + json.dumps(hyperpod.get("Outputs", {}))


def test_hyperpod_stack_is_deployed_after_and_deleted_before_storage():
    config = make_config()
    app = cdk.App()
    stacks = add_infrastructure(app, config)
    assert stacks.storage in stacks.hyperpod.dependencies
    assert [s.stack_name for s in stacks.all()] == [
        "hyperpod-sky-network",
        "hyperpod-sky-lifecycle",
        "hyperpod-sky-eks",
        "hyperpod-sky-storage",
        "hyperpod-sky-hyperpod",
    ]


def test_csi_addons_get_pod_identity_roles_trusting_only_this_cluster():
    storage = _storage()
    addons = {a["Properties"]["AddonName"]: a for a in _of_type(storage, "AWS::EKS::Addon").values()}
    assert set(addons) == {"aws-ebs-csi-driver", "aws-fsx-csi-driver"}
    roles = _of_type(storage, "AWS::IAM::Role")
    expected_sa = {"aws-ebs-csi-driver": "ebs-csi-controller-sa", "aws-fsx-csi-driver": "fsx-csi-controller-sa"}
    for name, addon in addons.items():
        (association,) = addon["Properties"]["PodIdentityAssociations"]
        assert association["ServiceAccount"] == expected_sa[name]
        role = roles[association["RoleArn"]["Fn::GetAtt"][0]]
        (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert trust["Principal"] == {"Service": "pods.eks.amazonaws.com"}
        assert sorted(trust["Action"]) == ["sts:AssumeRole", "sts:TagSession"]
        assert set(trust["Condition"]) == {"StringEquals", "ArnEquals"}
        assert "aws:SourceArn" in trust["Condition"]["ArnEquals"]
    ebs_role = roles[
        addons["aws-ebs-csi-driver"]["Properties"]["PodIdentityAssociations"][0]["RoleArn"]["Fn::GetAtt"][0]
    ]
    assert "service-role/AmazonEBSCSIDriverPolicy" in json.dumps(ebs_role["Properties"]["ManagedPolicyArns"])
    fsx_role_id = addons["aws-fsx-csi-driver"]["Properties"]["PodIdentityAssociations"][0]["RoleArn"]["Fn::GetAtt"][0]
    fsx_actions = [
        s["Action"]
        for p in _of_type(storage, "AWS::IAM::Policy").values()
        if {"Ref": fsx_role_id} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    assert fsx_actions == ["fsx:DescribeFileSystems"]  # static volume: nothing that creates or deletes


def test_kubernetes_objects_are_served_by_the_helm_installer_and_wait_for_the_addons():
    templates = _synth()
    storage = Template.from_json(templates["hyperpod-sky-storage"])
    (objects,) = _of_type(storage, RESOURCE_TYPE).values()
    token = objects["Properties"]["ServiceToken"]["Fn::ImportValue"]
    assert token.startswith("hyperpod-sky-eks:") and "HyperPodDependenciesProviderframeworkonEvent" in token
    for addon_id in _of_type(storage, "AWS::EKS::Addon"):
        assert addon_id in objects["DependsOn"]


def test_only_the_ebs_driver_and_storage_class_without_fsx():
    storage = _storage(**{"storage.fsx.enabled": "false"})
    assert [a["Properties"]["AddonName"] for a in _of_type(storage, "AWS::EKS::Addon").values()] == [
        "aws-ebs-csi-driver"
    ]
    manifests = _manifests(storage)
    assert "StorageClass" in manifests and "PersistentVolume" not in manifests
    assert outputs.FSX_FILE_SYSTEM_ID not in storage.to_json().get("Outputs", {})


@pytest.mark.parametrize("version", ["1.32", "1.33", "1.34"])
def test_manifests_are_valid_kubernetes_objects(version):
    objects = [
        *fsx_volume(
            file_system_id=EXISTING,
            dns_name=f"{EXISTING}.fsx.us-east-1.amazonaws.com",
            mount_name="abcdefgh",
            capacity_gib=1200,
        ),
        gp3_storage_class(),
    ]
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)
    pv, pvc, sc = objects
    assert (
        pvc["spec"]["volumeName"] == pv["metadata"]["name"]
        and pv["spec"]["claimRef"]["name"] == pvc["metadata"]["name"]
    )
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"  # deleting the PV never touches the data
    assert pv["spec"]["storageClassName"] == pvc["spec"]["storageClassName"] == ""  # no dynamic provisioning
    assert sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    assert sc["parameters"]["encrypted"] == "true" and sc["parameters"]["type"] == "gp3"


def test_every_storage_variant_passes_cfn_lint(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    variants = {
        "existing": {"storage.fsx.existing_file_system_id": EXISTING},
        "retain": {"storage.fsx.removal_policy": "retain"},
        "s3": {"storage.fsx.s3_import_path": "s3://my-datasets/imagenet/", "storage.fsx.removal_policy": "destroy"},
        "ebs_only": {"storage.fsx.enabled": "false"},
    }
    files = []
    for name, overrides in variants.items():
        path = tmp_path / f"{name}.template.json"
        path.write_text(json.dumps(_synth(**overrides)["hyperpod-sky-storage"]))
        files.append(str(path))
    lint = subprocess.run(
        [
            str(Path(sys.executable).parent / "cfn-lint"),
            "--format",
            "parseable",
            "--ignore-checks",
            "W3005",
            "--",
            *files,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
