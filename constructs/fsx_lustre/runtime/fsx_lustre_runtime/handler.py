"""CDK Provider framework handlers (``on_event`` and ``is_complete``) for two custom resources.

``Custom::FsxFinalBackup`` (removal policy ``snapshot``). It depends on the file system, so on stack
deletion (or when the file system is replaced) CloudFormation deletes it first. Its Delete starts a
user-initiated backup and ``is_complete`` polls it until AVAILABLE; only then does CloudFormation go on
to delete the file system. A backup that cannot start or ends FAILED fails the Delete with the reason,
so the stack stops with the file system (and its data) still there. Why not CloudFormation alone: its
``DeletionPolicy: Snapshot`` does not apply to ``AWS::FSx::FileSystem``, and the type's delete does not
take a final backup (the FSx API skips it unless ``SkipFinalBackup`` is false, which the type does not
expose). Re-running a failed or timed-out delete resumes the backup already in progress (found by its
tag) instead of starting a second one.

``Custom::FsxExistingFileSystem`` (``existing_file_system_id``): Create/Update read the file system and
return its DNS name and mount name for the PersistentVolume, after checking it is a Lustre file system
in the cluster's VPC; Delete leaves it alone (this app never owns it).
"""

from __future__ import annotations

import logging
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

LOG = logging.getLogger(__name__)

FINAL_BACKUP_TYPE = "Custom::FsxFinalBackup"
EXISTING_FILE_SYSTEM_TYPE = "Custom::FsxExistingFileSystem"
# Tag on the backups this handler starts; its value is the file system id.
FINAL_BACKUP_TAG = "hyperpod-sky:final-backup-of"
_IN_PROGRESS = ("PENDING", "CREATING", "TRANSFERRING", "COPYING")
_CONFIG = Config(retries={"mode": "standard", "max_attempts": 8})


class FinalBackupFailed(RuntimeError):
    """The final backup could not be taken; the file system must not be deleted."""


class ExistingFileSystemUnusable(RuntimeError):
    """``existing_file_system_id`` names a file system the cluster cannot mount."""


def _fsx(region: str):
    return boto3.client("fsx", region_name=region, config=_CONFIG)


def _final_backup_physical_id(file_system_id: str) -> str:
    # A replaced file system has another id: a new physical id makes CloudFormation delete the old
    # resource, which backs up the old file system before it goes.
    return f"final-backup:{file_system_id}"


def on_event(event: dict, context: Any = None, *, fsx=None) -> dict:
    logging.getLogger().setLevel(logging.INFO)
    props = event["ResourceProperties"]
    request, kind = event["RequestType"], event["ResourceType"]
    fsx = fsx or _fsx(props["Region"])
    if kind == FINAL_BACKUP_TYPE:
        fs_id = props["FileSystemId"]
        if request in ("Create", "Update"):
            return {"PhysicalResourceId": _final_backup_physical_id(fs_id)}
        if request == "Delete":
            return {"PhysicalResourceId": event["PhysicalResourceId"], "Data": start_final_backup(fsx, props)}
    elif kind == EXISTING_FILE_SYSTEM_TYPE:
        if request in ("Create", "Update"):
            data = describe_existing(fsx, props["FileSystemId"], props["VpcId"])
            return {"PhysicalResourceId": props["FileSystemId"], "Data": data}
        if request == "Delete":
            LOG.info("%s is not owned by this stack; left as it is", props["FileSystemId"])
            return {"PhysicalResourceId": event["PhysicalResourceId"]}
    raise ValueError(f"unsupported {kind} request {request!r}")


def is_complete(event: dict, context: Any = None, *, fsx=None) -> dict:
    props = event["ResourceProperties"]
    if event["ResourceType"] != FINAL_BACKUP_TYPE or event["RequestType"] != "Delete":
        return {"IsComplete": True}
    backup_id = (event.get("Data") or {}).get("BackupId")
    if not backup_id:  # nothing to back up (the file system was already gone)
        return {"IsComplete": True}
    fsx = fsx or _fsx(props["Region"])
    try:
        found = fsx.describe_backups(BackupIds=[backup_id])["Backups"]
        problem = "" if found else "BackupNotFound: no such backup"
    except ClientError as exc:
        found, problem = [], f"{_code(exc)}: {_message(exc)}"
    if problem:
        raise FinalBackupFailed(
            f"final backup {backup_id} of {props['FileSystemId']} can no longer be read ({problem}); "
            "the file system was NOT deleted"
        )
    backup = found[0]
    lifecycle = backup.get("Lifecycle")
    if lifecycle == "AVAILABLE":
        LOG.info(
            "final backup %s of %s is AVAILABLE; the file system may now be deleted", backup_id, props["FileSystemId"]
        )
        return {"IsComplete": True, "Data": {"BackupId": backup_id}}
    if lifecycle in _IN_PROGRESS:
        LOG.info("final backup %s of %s is %s", backup_id, props["FileSystemId"], lifecycle)
        return {"IsComplete": False}
    reason = (backup.get("FailureDetails") or {}).get("Message", "no reason given")
    raise FinalBackupFailed(
        f"final backup {backup_id} of {props['FileSystemId']} ended {lifecycle}: {reason}; the file system "
        "was NOT deleted. Delete the stack again to retry, or set storage.fsx.removal_policy to retain"
    )


def start_final_backup(fsx, props: dict) -> dict:
    """Start (or find the already started) final backup; returns ``{"BackupId": ...}`` or ``{}``."""
    fs_id = props["FileSystemId"]
    try:
        found = fsx.describe_file_systems(FileSystemIds=[fs_id])["FileSystems"]
    except ClientError as exc:
        if _code(exc) != "FileSystemNotFound":
            raise FinalBackupFailed(
                f"cannot read {fs_id} before its final backup ({_code(exc)}: {_message(exc)})"
            ) from None
        found = []
    if not found:
        LOG.warning("%s no longer exists: there is nothing left to back up", fs_id)
        return {}
    existing = _final_backups(fsx, fs_id)
    if existing:
        LOG.info(
            "final backup %s of %s already started (%s); waiting for it",
            existing["BackupId"],
            fs_id,
            existing["Lifecycle"],
        )
        return {"BackupId": existing["BackupId"]}
    tags = [{"Key": k, "Value": v} for k, v in sorted((props.get("Tags") or {}).items())]
    tags += [{"Key": FINAL_BACKUP_TAG, "Value": fs_id}, {"Key": "Name", "Value": f"{props.get('Name', fs_id)}-final"}]
    try:
        backup = fsx.create_backup(FileSystemId=fs_id, Tags=tags)["Backup"]
    except ClientError as exc:
        raise FinalBackupFailed(
            f"final backup of {fs_id} could not start ({_code(exc)}: {_message(exc)}); the file system was NOT "
            "deleted. Fix the cause and delete the stack again, or set storage.fsx.removal_policy to retain or "
            "destroy and deploy before deleting"
        ) from None
    LOG.info("final backup %s of %s started", backup["BackupId"], fs_id)
    return {"BackupId": backup["BackupId"]}


def _final_backups(fsx, fs_id: str) -> dict | None:
    """A usable or in-progress backup this handler started for ``fs_id`` (a retried delete resumes it)."""
    paginator_args = {"Filters": [{"Name": "file-system-id", "Values": [fs_id]}]}
    token = None
    while True:
        page = fsx.describe_backups(**paginator_args, **({"NextToken": token} if token else {}))
        for backup in page.get("Backups", []):
            tags = {t["Key"]: t["Value"] for t in backup.get("Tags", [])}
            if tags.get(FINAL_BACKUP_TAG) == fs_id and backup.get("Lifecycle") in ("AVAILABLE", *_IN_PROGRESS):
                return backup
        token = page.get("NextToken")
        if not token:
            return None


def describe_existing(fsx, fs_id: str, vpc_id: str) -> dict:
    try:
        (fs,) = fsx.describe_file_systems(FileSystemIds=[fs_id])["FileSystems"] or [None]
    except ClientError as exc:
        raise ExistingFileSystemUnusable(
            f"storage.fsx.existing_file_system_id {fs_id}: {_code(exc)}: {_message(exc)}"
        ) from None
    if fs is None:
        raise ExistingFileSystemUnusable(f"storage.fsx.existing_file_system_id {fs_id}: no such file system")
    if fs.get("FileSystemType") != "LUSTRE":
        raise ExistingFileSystemUnusable(
            f"storage.fsx.existing_file_system_id {fs_id} is {fs.get('FileSystemType')}, not LUSTRE"
        )
    if fs.get("VpcId") and fs["VpcId"] != vpc_id:
        raise ExistingFileSystemUnusable(
            f"storage.fsx.existing_file_system_id {fs_id} is in {fs['VpcId']}, the cluster in {vpc_id}: "
            "HyperPod nodes cannot mount it"
        )
    mount_name = (fs.get("LustreConfiguration") or {}).get("MountName")
    if not mount_name:
        raise ExistingFileSystemUnusable(f"storage.fsx.existing_file_system_id {fs_id} reports no Lustre MountName")
    return {"DNSName": fs["DNSName"], "MountName": mount_name, "StorageCapacity": str(fs.get("StorageCapacity", ""))}


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "Unknown")


def _message(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Message", str(exc))
