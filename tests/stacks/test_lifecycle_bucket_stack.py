"""The lifecycle bucket: sagemaker-* name, locked down, logged, versioned, whole folder uploaded."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk.assertions import Match, Template

from stacks.lifecycle_bucket import LifecycleBucketStack
from tests.conftest import make_config


def _stack(**overrides) -> LifecycleBucketStack:
    config = make_config(**overrides)
    return LifecycleBucketStack(cdk.App(), "Lifecycle", config=config, env=cdk.Environment(region=config.region))


def _bucket(template: Template) -> tuple[str, dict]:
    buckets = {k: v for k, v in template.find_resources("AWS::S3::Bucket").items() if k.startswith("Bucket")}
    ((logical_id, bucket),) = buckets.items()
    return logical_id, bucket


def test_bucket_name_starts_with_sagemaker_so_the_managed_policy_can_read_it():
    _, bucket = _bucket(Template.from_stack(_stack()))
    name = bucket["Properties"]["BucketName"]["Fn::Join"][1]
    assert name[0] == "sagemaker-hyperpod-sky-lifecycle-"


def test_bucket_is_private_encrypted_versioned_and_logged():
    _, bucket = _bucket(Template.from_stack(_stack()))
    props = bucket["Properties"]
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "AES256"
    }
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["LoggingConfiguration"]["LogFilePrefix"] == "lifecycle-bucket/"


def test_bucket_policy_denies_plain_http():
    template = Template.from_stack(_stack())
    logical_id, _ = _bucket(template)
    template.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "Bucket": {"Ref": logical_id},
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Action": "s3:*",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        )
                    ]
                )
            },
        },
    )


def test_whole_lifecycle_folder_is_uploaded_under_its_prefix_and_pruned():
    template = Template.from_stack(_stack())
    template.has_resource_properties(
        "Custom::CDKBucketDeployment",
        {
            "DestinationBucketKeyPrefix": "lifecycle_scripts",
            "Prune": True,
            "SourceObjectKeys": Match.any_value(),
        },
    )


def test_default_removal_empties_and_deletes_the_buckets():
    template = Template.from_stack(_stack())
    for bucket in template.find_resources("AWS::S3::Bucket").values():
        assert bucket["DeletionPolicy"] == "Delete"
    # The lifecycle bucket empties itself; its access-log bucket is drained and deleted after it (#21776).
    (auto_delete,) = template.find_resources("Custom::S3AutoDeleteObjects").values()
    (cleanup,) = template.find_resources("Custom::AccessLogBucketCleanup").values()
    assert auto_delete["Properties"]["BucketName"] != cleanup["Properties"]["BucketName"]


def test_retain_keeps_buckets_and_their_objects():
    template = Template.from_stack(_stack(**{"lifecycle_bucket.removal_policy": "retain"}))
    for bucket in template.find_resources("AWS::S3::Bucket").values():
        assert bucket["DeletionPolicy"] == "Retain"
    assert not template.find_resources("Custom::S3AutoDeleteObjects")
    assert not template.find_resources("Custom::AccessLogBucketCleanup")


def test_consumers_get_a_bucket_reference_that_waits_for_the_upload():
    stack = _stack()
    # deployed_bucket resolves through the BucketDeployment custom resource, so anything using it
    # is ordered after the upload.
    resolved = str(stack.resolve(stack.deployed_bucket.bucket_name))
    (deployment_id,) = Template.from_stack(stack).find_resources("Custom::CDKBucketDeployment")
    assert f"'Fn::GetAtt': ['{deployment_id}', 'DestinationBucketArn']" in resolved
