"""The names ``config.names`` derives are the names the synthesized templates carry, so the CLI
(teardown, ``make pipeline``) and the length checks speak of what CloudFormation will create."""

from __future__ import annotations

from config import names
from tests.conftest import make_config


def test_the_synthesized_templates_use_exactly_these_names(templates):
    config = make_config()
    stacks = names.stack_names(config)
    assert set(templates) == set(stacks.values())
    eks = templates[stacks["eks"]]["Resources"]
    (cluster,) = [r for r in eks.values() if r["Type"] == "AWS::EKS::Cluster"]
    assert cluster["Properties"]["Name"] == names.eks_cluster_name(config)
    # The control-plane group is adopted (create-or-adopt custom resource), not an AWS::Logs::LogGroup.
    adopted = {r["Properties"]["LogGroupName"] for r in eks.values() if r["Type"] == "Custom::ServiceLogGroupRetention"}
    assert adopted == {names.eks_control_plane_log_group(config)}
    lifecycle = templates[stacks["lifecycle_bucket"]]["Resources"]
    bucket_names = [
        r["Properties"]["BucketName"]
        for r in lifecycle.values()
        if r["Type"] == "AWS::S3::Bucket" and "BucketName" in r["Properties"]
    ]
    pseudo = {"AWS::AccountId": "<account>", "AWS::Region": "<region>"}
    rendered = ["".join(p if isinstance(p, str) else pseudo[p["Ref"]] for p in n["Fn::Join"][1]) for n in bucket_names]
    assert rendered == [names.lifecycle_bucket_name(config, "<account>", "<region>")]
