"""checkov skips: one check id and the reason a reviewer reads, as CloudFormation metadata on the resource.

checkov (CloudFormation framework) honours ``Metadata: {checkov: {skip: [{id, comment}]}}`` on a resource;
every other check still applies to it. A plain module under constructs/, like ``nag_acknowledgment``."""

from __future__ import annotations

from aws_cdk import CfnResource


def skip(resource: CfnResource, check_id: str, reason: str) -> None:
    if not reason.strip():
        raise ValueError(f"a checkov skip of {check_id} needs a reason")
    metadata = resource.get_metadata("checkov") or {}
    skips = [s for s in metadata.get("skip", []) if s["id"] != check_id]
    resource.add_metadata("checkov", {**metadata, "skip": [*skips, {"id": check_id, "comment": reason}]})
