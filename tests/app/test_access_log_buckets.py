"""Every S3 access-log bucket, in every synthesized stack (the pipeline's artifact logs included), is deleted
by its cleanup after the buckets that log into it, never emptied early by auto-delete (aws/aws-cdk#21776)."""

from __future__ import annotations

from constructs.access_log_bucket.infrastructure import RESOURCE_TYPE


def log_targets(template: dict) -> dict[str, list[str]]:
    """``{log bucket logical id: [logical ids of the buckets logging into it]}``."""
    targets: dict[str, list[str]] = {}
    for logical_id, resource in template["Resources"].items():
        destination = resource.get("Properties", {}).get("LoggingConfiguration", {}).get("DestinationBucketName")
        if resource["Type"] == "AWS::S3::Bucket" and destination:
            targets.setdefault(destination["Ref"], []).append(logical_id)
    return targets


def depends_on(resource: dict) -> list[str]:
    value = resource.get("DependsOn", [])
    return [value] if isinstance(value, str) else value


def problems(name: str, template: dict) -> list[str]:
    found = []
    resources = template["Resources"]
    for log_bucket, sources in log_targets(template).items():

        def for_bucket(kind: str, key: str, log_bucket: str = log_bucket) -> list[str]:
            return [
                k for k, r in resources.items() if r["Type"] == kind and r["Properties"].get(key) == {"Ref": log_bucket}
            ]

        if for_bucket("Custom::S3AutoDeleteObjects", "BucketName"):
            found.append(f"{name}/{log_bucket}: auto-deleted, which races the last log deliveries")
        cleanups = for_bucket(RESOURCE_TYPE, "BucketName")
        if len(cleanups) != 1:
            found.append(f"{name}/{log_bucket}: {len(cleanups)} cleanup resources, expected one")
            continue
        for source in sources:
            if cleanups[0] not in depends_on(resources[source]):
                found.append(f"{name}/{source}: not deleted before the cleanup of {log_bucket}")
        for policy in for_bucket("AWS::S3::BucketPolicy", "Bucket"):
            if cleanups[0] not in depends_on(resources[policy]):
                found.append(f"{name}/{policy}: log delivery grant outlives the cleanup start")
        if resources[log_bucket].get("DeletionPolicy") != "Delete":
            found.append(f"{name}/{log_bucket}: DeletionPolicy {resources[log_bucket].get('DeletionPolicy')}")
    return found


def test_the_lifecycle_access_logs_are_deleted_after_their_source(templates):
    assert log_targets(templates["hyperpod-sky-lifecycle"])  # the rule below has something to check
    assert [p for name, t in templates.items() for p in problems(name, t)] == []


def test_the_pipeline_artifact_access_logs_too_and_the_stage_copies(day_two_templates):
    direct, stage = day_two_templates["direct"], day_two_templates["pipeline"]
    assert log_targets(direct["team-a-pipeline"]) and log_targets(stage["team-a-lifecycle"])
    everything = {**{f"direct:{n}": t for n, t in direct.items()}, **{f"stage:{n}": t for n, t in stage.items()}}
    assert [p for name, t in everything.items() for p in problems(name, t)] == []
