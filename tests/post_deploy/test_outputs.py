"""The outputs reader: ``cdk deploy --outputs-file`` JSON and the pipeline's env vars, same keys."""

from __future__ import annotations

import json

import pytest

from config import outputs as keys
from post_deploy.outputs import OutputsError, read_outputs

ARN = "arn:aws:eks:eu-west-1:123456789012:cluster/hp-eks"


def write(tmp_path, data) -> str:
    path = tmp_path / "cdk-outputs.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return str(path)


def test_keys_are_found_in_whichever_stack_exports_them(tmp_path):
    path = write(
        tmp_path,
        {
            "HpNetwork": {"VpcId": "vpc-1"},
            "HpEks": {keys.EKS_CLUSTER_NAME: "hp-eks", keys.EKS_CLUSTER_ARN: ARN, keys.REGION: "eu-west-1"},
            "HpCluster": {keys.HYPERPOD_CLUSTER_NAME: "hp", keys.LIFECYCLE_BUCKET_NAME: "sagemaker-hp-lc"},
        },
    )
    outs = read_outputs(path, environ={})
    assert (outs.eks_cluster_name, outs.hyperpod_cluster_name, outs.region) == ("hp-eks", "hp", "eu-west-1")
    assert outs.lifecycle_bucket_name == "sagemaker-hp-lc"
    assert outs.sources[keys.EKS_CLUSTER_NAME] == "cdk-outputs.json:HpEks"
    assert outs.sources[keys.HYPERPOD_CLUSTER_NAME] == "cdk-outputs.json:HpCluster"


def test_environment_variables_of_the_same_names_work_without_a_file():
    env = {keys.EKS_CLUSTER_NAME: "from-env", keys.HYPERPOD_CLUSTER_NAME: "hp-env", keys.REGION: "us-east-2"}
    outs = read_outputs(None, environ=env)
    assert (outs.eks_cluster_name, outs.hyperpod_cluster_name, outs.region) == ("from-env", "hp-env", "us-east-2")
    assert outs.sources[keys.REGION] == "environment"


def test_file_wins_over_environment_and_environment_fills_gaps(tmp_path):
    path = write(tmp_path, {"HpEks": {keys.EKS_CLUSTER_NAME: "from-file"}})
    outs = read_outputs(path, environ={keys.EKS_CLUSTER_NAME: "from-env", keys.HYPERPOD_CLUSTER_NAME: "hp-env"})
    assert outs.eks_cluster_name == "from-file"
    assert outs.hyperpod_cluster_name == "hp-env"


def test_region_falls_back_to_the_cluster_arn(tmp_path):
    outs = read_outputs(write(tmp_path, {"HpEks": {keys.EKS_CLUSTER_ARN: ARN}}), environ={})
    assert outs.region == "eu-west-1"
    assert outs.sources[keys.REGION] == "cluster ARN"


def test_same_key_with_different_values_in_two_stacks_is_refused(tmp_path):
    path = write(tmp_path, {"HpEks": {keys.EKS_CLUSTER_NAME: "a"}, "OldEks": {keys.EKS_CLUSTER_NAME: "b"}})
    with pytest.raises(OutputsError, match=r"EksClusterName differs between stacks HpEks \('a'\) and OldEks \('b'\)"):
        read_outputs(path, environ={})


def test_same_key_with_the_same_value_in_two_stacks_is_fine(tmp_path):
    path = write(tmp_path, {"A": {keys.REGION: "us-west-2"}, "B": {keys.REGION: "us-west-2"}})
    assert read_outputs(path, environ={}).region == "us-west-2"


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "is not valid JSON"),
        (json.dumps(["HpEks"]), "must map stack names to objects"),
        (json.dumps({"HpEks": "hp-eks"}), "must map stack names to objects"),
        (json.dumps({"HpEks": {keys.EKS_CLUSTER_NAME: ""}}), "HpEks.EksClusterName must be a non-empty string"),
        (json.dumps({"HpEks": {keys.EKS_CLUSTER_NAME: 42}}), "HpEks.EksClusterName must be a non-empty string, got 42"),
    ],
)
def test_malformed_files_fail_with_one_line_naming_the_problem(tmp_path, content, message):
    with pytest.raises(OutputsError, match=message) as err:
        read_outputs(write(tmp_path, content), environ={})
    assert "\n" not in str(err.value)


def test_missing_file_says_how_to_write_it(tmp_path):
    with pytest.raises(OutputsError, match="cdk deploy --outputs-file"):
        read_outputs(tmp_path / "nope.json", environ={})


def test_require_names_every_missing_key():
    outs = read_outputs(None, environ={keys.REGION: "us-west-2"})
    outs.require(keys.REGION)
    with pytest.raises(OutputsError, match="EksClusterName, HyperPodClusterName"):
        outs.require(keys.REGION, keys.EKS_CLUSTER_NAME, keys.HYPERPOD_CLUSTER_NAME)


def test_blank_environment_values_count_as_missing():
    outs = read_outputs(None, environ={keys.EKS_CLUSTER_NAME: "  "})
    assert outs.eks_cluster_name is None
