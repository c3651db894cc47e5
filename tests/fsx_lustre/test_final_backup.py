"""The final backup before the file system goes, and the existing-file-system look-up: the runtime handlers
against moto's FSx (which creates, lists, tags and deletes backups) and, for states moto never reaches
(FAILED with a reason, a file system in another VPC), botocore's Stubber with the real FSx model."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.fsx.models import fsx_backends

from constructs.fsx_lustre.runtime.fsx_lustre_runtime import handler

REGION = "us-east-1"
FS_TAGS = {"project": "hyperpod-skypilot"}


def _event(request: str, fs_id: str, *, resource_type: str = handler.FINAL_BACKUP_TYPE, **props) -> dict:
    return {
        "RequestType": request,
        "ResourceType": resource_type,
        "LogicalResourceId": "FsxFinalBackup",
        "PhysicalResourceId": f"final-backup:{fs_id}",
        "ResourceProperties": {
            "FileSystemId": fs_id,
            "Region": REGION,
            "Name": "hyperpod-sky-fsx",
            "Tags": FS_TAGS,
            **props,
        },
    }


@pytest.fixture
def fsx():
    with mock_aws():
        yield boto3.client("fsx", region_name=REGION)


def _file_system(fsx, **lustre) -> str:
    return fsx.create_file_system(
        FileSystemType="LUSTRE",
        StorageCapacity=1200,
        StorageType="SSD",
        SubnetIds=["subnet-12345678"],
        LustreConfiguration={"DeploymentType": "PERSISTENT_2", "PerUnitStorageThroughput": 250, **lustre},
    )["FileSystem"]["FileSystemId"]


def _set_lifecycle(backup_id: str, lifecycle: str) -> None:
    fsx_backends[DEFAULT_ACCOUNT_ID][REGION].backups[backup_id].lifecycle = lifecycle


def _poll(event: dict, started: dict, fsx) -> dict:
    return handler.is_complete({**event, **started}, fsx=fsx)


def test_create_and_update_take_no_backup(fsx):
    fs_id = _file_system(fsx)
    for request in ("Create", "Update"):
        assert handler.on_event(_event(request, fs_id), fsx=fsx) == {"PhysicalResourceId": f"final-backup:{fs_id}"}
        assert handler.is_complete(_event(request, fs_id), fsx=fsx) == {"IsComplete": True}
    assert fsx.describe_backups()["Backups"] == []


def test_delete_backs_up_the_file_system_and_completes_only_when_available(fsx):
    fs_id = _file_system(fsx)
    event = _event("Delete", fs_id)
    started = handler.on_event(event, fsx=fsx)
    backup_id = started["Data"]["BackupId"]
    (backup,) = fsx.describe_backups()["Backups"]
    assert backup["BackupId"] == backup_id
    assert fsx_backends[DEFAULT_ACCOUNT_ID][REGION].backups[backup_id].file_system_id == fs_id
    tags = {t["Key"]: t["Value"] for t in backup["Tags"]}
    assert tags == {**FS_TAGS, handler.FINAL_BACKUP_TAG: fs_id, "Name": "hyperpod-sky-fsx-final"}

    assert _poll(event, started, fsx) == {"IsComplete": False}  # CREATING: CloudFormation keeps waiting
    _set_lifecycle(backup_id, "TRANSFERRING")
    assert _poll(event, started, fsx) == {"IsComplete": False}
    _set_lifecycle(backup_id, "AVAILABLE")
    assert _poll(event, started, fsx) == {"IsComplete": True, "Data": {"BackupId": backup_id}}


def test_a_retried_delete_resumes_the_backup_already_started(fsx):
    fs_id = _file_system(fsx)
    first = handler.on_event(_event("Delete", fs_id), fsx=fsx)
    second = handler.on_event(_event("Delete", fs_id), fsx=fsx)
    assert first == second
    assert len(fsx.describe_backups()["Backups"]) == 1


def test_a_failed_earlier_final_backup_is_not_reused(fsx):
    fs_id = _file_system(fsx)
    first = handler.on_event(_event("Delete", fs_id), fsx=fsx)["Data"]["BackupId"]
    _set_lifecycle(first, "FAILED")
    second = handler.on_event(_event("Delete", fs_id), fsx=fsx)["Data"]["BackupId"]
    assert second != first


def test_backups_of_other_file_systems_or_by_others_are_not_mistaken_for_ours(fsx):
    fs_id, other = _file_system(fsx), _file_system(fsx)
    fsx.create_backup(FileSystemId=other, Tags=[{"Key": handler.FINAL_BACKUP_TAG, "Value": other}])
    fsx.create_backup(FileSystemId=fs_id, Tags=[{"Key": "Name", "Value": "someone's manual backup"}])
    started = handler.on_event(_event("Delete", fs_id), fsx=fsx)
    assert len(fsx.describe_backups()["Backups"]) == 3
    assert fsx_backends[DEFAULT_ACCOUNT_ID][REGION].backups[started["Data"]["BackupId"]].file_system_id == fs_id


def test_a_file_system_already_gone_has_nothing_to_back_up(fsx):
    event = _event("Delete", "fs-0123456789abcdef0")
    started = handler.on_event(event, fsx=fsx)
    assert started["Data"] == {}
    assert _poll(event, started, fsx) == {"IsComplete": True}


def test_a_backup_that_cannot_start_fails_the_delete_loudly(fsx):
    fs_id = _file_system(fsx)
    stub = Stubber(fsx)
    stub.add_response(
        "describe_file_systems",
        {"FileSystems": [{"FileSystemId": fs_id, "FileSystemType": "LUSTRE"}]},
        {"FileSystemIds": [fs_id]},
    )
    stub.add_response("describe_backups", {"Backups": []})
    stub.add_client_error(
        "create_backup",
        service_error_code="AccessDenied",
        service_message="User is not authorized to perform fsx:CreateBackup",
        http_status_code=403,
    )
    with stub, pytest.raises(handler.FinalBackupFailed) as err:
        handler.on_event(_event("Delete", fs_id), fsx=fsx)
    message = str(err.value)
    assert f"final backup of {fs_id} could not start (AccessDenied" in message
    assert "NOT deleted" in message and "removal_policy" in message
    stub.assert_no_pending_responses()


def test_a_backup_that_ends_failed_fails_the_delete_with_fsx_reason(fsx):
    backup_id = "backup-0123456789abcdef0"
    event = {**_event("Delete", "fs-0123456789abcdef0"), "Data": {"BackupId": backup_id}}
    stub = Stubber(fsx)
    stub.add_response(
        "describe_backups",
        {
            "Backups": [
                {
                    "BackupId": backup_id,
                    "Lifecycle": "FAILED",
                    "FailureDetails": {"Message": "Backup failed: file system is linked to a data repository"},
                    "Type": "USER_INITIATED",
                    "CreationTime": 1_700_000_000,
                    "FileSystem": {"FileSystemId": "fs-0123456789abcdef0"},
                }
            ]
        },
        {"BackupIds": [backup_id]},
    )
    with stub, pytest.raises(handler.FinalBackupFailed) as err:
        handler.is_complete(event, fsx=fsx)
    assert "ended FAILED: Backup failed: file system is linked to a data repository" in str(err.value)
    assert "NOT deleted" in str(err.value)


def test_a_backup_deleted_while_waiting_fails_the_delete(fsx):
    fs_id = _file_system(fsx)
    event = _event("Delete", fs_id)
    started = handler.on_event(event, fsx=fsx)
    fsx.delete_backup(BackupId=started["Data"]["BackupId"])
    with pytest.raises(handler.FinalBackupFailed, match="can no longer be read"):
        _poll(event, started, fsx)


# ----- existing file system ------------------------------------------------------------------------


def _existing(fs_id: str, request: str = "Create", vpc: str = "vpc-11111111") -> dict:
    return _event(request, fs_id, resource_type=handler.EXISTING_FILE_SYSTEM_TYPE, VpcId=vpc)


def test_existing_file_system_reports_dns_and_mount_name_and_is_never_deleted(fsx):
    fs_id = _file_system(fsx)
    # FSx generates the mount name; moto does not, so it is set as FSx would report it.
    fsx_backends[DEFAULT_ACCOUNT_ID][REGION].file_systems[fs_id].lustre_configuration["MountName"] = "abcdefgh"
    created = handler.on_event(_existing(fs_id), fsx=fsx)
    assert created == {
        "PhysicalResourceId": fs_id,
        "Data": {"DNSName": f"{fs_id}.fsx.{REGION}.amazonaws.com", "MountName": "abcdefgh", "StorageCapacity": "1200"},
    }
    handler.on_event({**_existing(fs_id, "Delete"), "PhysicalResourceId": fs_id}, fsx=fsx)
    assert [f["FileSystemId"] for f in fsx.describe_file_systems()["FileSystems"]] == [fs_id]
    assert fsx.describe_backups()["Backups"] == []


def test_a_missing_existing_file_system_fails_the_deploy_by_name(fsx):
    with pytest.raises(handler.ExistingFileSystemUnusable, match="fs-0123456789abcdef0: no such file system"):
        handler.on_event(_existing("fs-0123456789abcdef0"), fsx=fsx)


@pytest.mark.parametrize(
    ("described", "expected"),
    [
        ({"FileSystemType": "WINDOWS", "VpcId": "vpc-11111111"}, "is WINDOWS, not LUSTRE"),
        ({"FileSystemType": "LUSTRE", "VpcId": "vpc-22222222"}, "is in vpc-22222222, the cluster in vpc-11111111"),
    ],
)
def test_an_existing_file_system_the_nodes_cannot_mount_is_refused(fsx, described, expected):
    fs_id = "fs-0123456789abcdef0"
    stub = Stubber(fsx)
    stub.add_response(
        "describe_file_systems",
        {
            "FileSystems": [
                {
                    "FileSystemId": fs_id,
                    "DNSName": f"{fs_id}.fsx.{REGION}.amazonaws.com",
                    "LustreConfiguration": {"MountName": "abcdefgh"},
                    **described,
                }
            ]
        },
        {"FileSystemIds": [fs_id]},
    )
    with stub, pytest.raises(handler.ExistingFileSystemUnusable, match=expected):
        handler.on_event(_existing(fs_id), fsx=fsx)
