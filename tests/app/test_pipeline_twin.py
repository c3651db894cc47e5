"""Every stack the pipeline's Stage deploys is the twin of the same stack synthesized for ``cdk deploy --all``:
the two paths manage the very same CloudFormation stacks, so switching between them must not replace or
lock anything. Differences are allowed only where listed below, each with why it is harmless."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from constructs.hyperpod_cluster.request import OWNER_TAG_KEY

# (path pattern, why the difference is harmless). Paths are "/"-joined template keys, [i] for list items.
ALLOWED = [
    (
        r"/Resources/[^/]+/Metadata/aws:cdk:path",
        "construct path metadata for the console; not a resource property",
    ),
    (
        r"/Resources/[^/]+/Metadata/aws:asset:path",
        "where the asset sits inside cdk.out (the Stage's assembly is one folder down); the S3 keys, which are "
        "content hashes, are identical",
    ),
    (r"/Resources/CDKMetadata/.*", "CDK's analytics resource; the construct paths it compresses differ"),
    (
        r"/Resources/[^/]+Providerframework(onEvent|isComplete|onTimeout)[0-9A-F]+/Properties/Description",
        "aws-cdk-lib writes the Provider's construct path into its framework functions' descriptions: "
        "an in-place description update",
    ),
    (
        r"/Resources/Vpc[^/]*/Properties/Tags\[\d+\]/Value",
        "aws-cdk-lib names VPC resources by construct path (Name tag): an in-place tag update, no replacement",
    ),
    (
        r"/Resources/Bucket[0-9A-F]+/Properties/Tags\[\d+\]/Key",
        "BucketDeployment's aws-cdk:cr-owned tag key hashes its construct address: an in-place tag update of "
        "the lifecycle bucket",
    ),
]


def differences(direct: Any, twin: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    if type(direct) is not type(twin):
        yield path, direct, twin
    elif isinstance(direct, dict):
        for key in sorted(set(direct) | set(twin)):
            if key not in direct or key not in twin:
                yield f"{path}/{key}", direct.get(key, "<absent>"), twin.get(key, "<absent>")
            else:
                yield from differences(direct[key], twin[key], f"{path}/{key}")
    elif isinstance(direct, list):
        if len(direct) != len(twin):
            yield path, f"{len(direct)} items", f"{len(twin)} items"
        else:
            for i, (a, b) in enumerate(zip(direct, twin, strict=True)):
                yield from differences(a, b, f"{path}[{i}]")
    elif direct != twin:
        yield path, direct, twin


def unexplained(direct: dict, twin: dict) -> list[tuple[str, Any, Any]]:
    return [d for d in differences(direct, twin) if not any(re.fullmatch(p, d[0]) for p, _ in ALLOWED)]


def test_the_stage_deploys_exactly_the_stacks_cdk_deploy_all_does(day_two_templates):
    direct, pipeline = day_two_templates["direct"], day_two_templates["pipeline"]
    assert set(pipeline) == {"team-a-network", "team-a-lifecycle", "team-a-eks", "team-a-hyperpod"}
    assert set(direct) == set(pipeline) | {"team-a-pipeline"}


def test_every_stack_matches_its_pipeline_twin_apart_from_the_listed_differences(day_two_templates):
    direct, pipeline = day_two_templates["direct"], day_two_templates["pipeline"]
    found = {name: unexplained(direct[name], pipeline[name]) for name in pipeline}
    assert found == {name: [] for name in pipeline}, {n: d[:5] for n, d in found.items() if d}
    # Same logical ids and types everywhere: nothing is replaced when the deploy path changes.
    for name in pipeline:
        assert {k: r["Type"] for k, r in direct[name]["Resources"].items()} == {
            k: r["Type"] for k, r in pipeline[name]["Resources"].items()
        }


def test_the_hyperpod_owner_tag_is_the_same_on_both_paths(day_two_templates):
    def owner(template):
        (resource,) = [r for r in template["Resources"].values() if r["Type"] == "Custom::HyperPodCluster"]
        request = resource["Properties"]["ClusterRequest"]["Fn::Join"][1]
        text = "".join(part for part in request if isinstance(part, str))
        value = re.search(rf'"Key":"{re.escape(OWNER_TAG_KEY)}","Value":"([^"]+)"', text).group(1)
        return value, resource["Properties"]["LegacyOwnerTagValues"]

    direct = owner(day_two_templates["direct"]["team-a-hyperpod"])
    assert direct == owner(day_two_templates["pipeline"]["team-a-hyperpod"])
    value, legacy = direct
    assert value == "team-a-hyperpod/Cluster" and len(legacy) == 2  # both old addr-based values still admitted


def test_each_allowed_difference_still_occurs(day_two_templates):
    """An allowance nothing needs any more is removed, so the list stays an honest account."""
    direct, pipeline = day_two_templates["direct"], day_two_templates["pipeline"]
    seen = [d[0] for name in pipeline for d in differences(direct[name], pipeline[name])]
    unused = [p for p, _ in ALLOWED if not any(re.fullmatch(p, path) for path in seen)]
    assert unused == []
