"""The rehearsal catches drift between what the app synthesizes and what the handlers and the CLI
expect: each test corrupts one name in a copy of the real ``cdk.out`` and shows the step that
fails and the line it fails with."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from config import outputs as keys
from config.gpu_types import ACCELERATOR_LABEL
from constructs.hyperpod_cluster.infrastructure import RESOURCE_TYPE
from tests.rehearsal.rehearsal import Rehearsal, RehearsalFailure

pytestmark = pytest.mark.slow


def _resources(templates: dict[str, dict], type_name: str) -> Iterator[dict[str, Any]]:
    for template in templates.values():
        for resource in template.get("Resources", {}).values():
            if resource["Type"] == type_name:
                yield resource


def _rewrite_strings(value: Any, rewrite: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return rewrite(value)
    if isinstance(value, list):
        return [_rewrite_strings(v, rewrite) for v in value]
    if isinstance(value, dict):
        return {k: _rewrite_strings(v, rewrite) for k, v in value.items()}
    return value


@pytest.fixture
def rehearse(corrupted, sky_tools_bin, tmp_path):
    def start(mutate: Callable[[dict[str, dict]], None]) -> Rehearsal:
        return Rehearsal(corrupted(mutate), tmp_path / "rehearsal", sky_tools_bin)

    return start


def rename_cluster_request_property(templates):
    (resource,) = _resources(templates, RESOURCE_TYPE)
    resource["Properties"]["ClusterSpec"] = resource["Properties"].pop("ClusterRequest")


def misspell_on_event_handler(templates):
    for function in _resources(templates, "AWS::Lambda::Function"):
        if function["Properties"].get("Handler", "").endswith(".on_event"):
            function["Properties"]["Handler"] += "_handler"


@pytest.mark.parametrize(
    "mutate, message",
    [
        (
            rename_cluster_request_property,
            r"CREATE_FAILED \S+ \(Custom::HyperPodCluster\): property ClusterRequest is missing",
        ),
        (
            misspell_on_event_handler,
            r"CREATE_FAILED \S+ \(Custom::HyperPodCluster\): Handler 'on_event_handler' missing on module "
            r"'hyperpod_cluster_runtime.handler'",
        ),
    ],
    ids=["renamed-property", "misspelled-handler"],
)
def test_a_custom_resource_the_handler_cannot_read_fails_the_deploy_before_any_cluster_exists(
    rehearse, mutate, message
):
    with rehearse(mutate) as r:
        with pytest.raises(RehearsalFailure, match=message):
            r.deploy()
        assert r.aws("sagemaker").list_clusters()["ClusterSummaries"] == []


def test_lifecycle_scripts_uploaded_where_the_cluster_does_not_look_fail_the_deploy(rehearse):
    def move_upload(templates):
        (deployment,) = _resources(templates, "Custom::CDKBucketDeployment")
        deployment["Properties"]["DestinationBucketKeyPrefix"] = "scripts"

    with rehearse(move_upload) as r:
        with pytest.raises(
            RehearsalFailure,
            match=r"HyperPod would fail on its inputs: instance group \S+: "
            r"s3://sagemaker-\S+/lifecycle_scripts/on_create.sh \(LifeCycleConfig "
            r"SourceS3Uri \+ OnCreate\) does not exist",
        ):
            r.deploy()


def test_a_renamed_stack_output_stops_the_cli_at_its_first_step_naming_the_key(rehearse):
    def rename(templates):
        (template,) = [t for t in templates.values() if keys.EKS_CLUSTER_NAME in t.get("Outputs", {})]
        template["Outputs"]["EksName"] = template["Outputs"].pop(keys.EKS_CLUSTER_NAME)

    with rehearse(rename) as r:
        r.deploy()
        with pytest.raises(
            RehearsalFailure,
            match=r"^kubeconfig: exit code 2, expected 0: error: no EKS cluster name: "
            r".*set EksClusterName",
        ):
            r.step_kubeconfig()
        with pytest.raises(RehearsalFailure, match=r"no stack declares output 'EksClusterName'.*EksName"):
            r.output(keys.EKS_CLUSTER_NAME)


def test_a_gpu_label_the_cli_would_rewrite_is_reported_as_a_construct_cli_mismatch(rehearse):
    """HyperPod applies whatever KubernetesConfig.Labels says; SkyPilot needs lowercase values, which
    is what label-gpus writes. An uppercase value from the construct would be fought over forever."""
    label = re.compile(rf'("{re.escape(ACCELERATOR_LABEL)}\\?":\\?")([a-z0-9-]+)')

    def uppercase(templates):
        (resource,) = _resources(templates, RESOURCE_TYPE)
        before = json.dumps(resource["Properties"]["ClusterRequest"])
        resource["Properties"]["ClusterRequest"] = _rewrite_strings(
            resource["Properties"]["ClusterRequest"], lambda s: label.sub(lambda m: m.group(1) + m.group(2).upper(), s)
        )
        assert json.dumps(resource["Properties"]["ClusterRequest"]) != before, "no accelerator label in ClusterRequest"

    with rehearse(uppercase) as r:
        r.deploy()
        r.step_kubeconfig()
        r.step_wait_nodes()
        with pytest.raises(
            RehearsalFailure,
            match=r"label-gpus: had to relabel 2 node\(s\) that HyperPod labelled "
            r"from the construct's KubernetesConfig.Labels.*: H100 -> h100",
        ):
            r.step_label_gpus()
