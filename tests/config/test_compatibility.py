"""Combinations AWS refuses at deploy time stop synth with one line naming the key (config/compatibility.py).

Sources: EKS (AL2 AMIs end with Kubernetes 1.32; an AMI type must match the instance architecture),
AWS docs "Deep health checks" (GPU and Trainium only; InstanceConnectivity needs multi-node networking
and at least 2 nodes). The offline data the rules rest on is cross-checked against EC2's
DescribeInstanceTypes data shipped with moto and botocore's EKS model.
"""

from __future__ import annotations

import gzip
import importlib.resources
import json

import botocore.session
import pytest

from config import ConfigError
from config import compatibility as compat
from config.gpu_types import GPU_INSTANCE_TYPES
from config.sagemaker_api import cluster_instance_types
from tests.conftest import make_config


def _ec2_types() -> dict[str, dict]:
    data = importlib.resources.files("moto.ec2") / "resources" / "instance_types.json.gz"
    with data.open("rb") as raw:
        return json.load(gzip.open(raw))


EC2_TYPES = _ec2_types()


def test_architecture_rule_agrees_with_ec2_data_for_every_instance_type():
    checked = 0
    for name, info in EC2_TYPES.items():
        supported = info["ProcessorInfo"]["SupportedArchitectures"]
        if any(a.endswith("_mac") for a in supported):
            with pytest.raises(ValueError, match="Mac"):
                compat.ec2_architecture(name)
            continue
        expected = compat.ARM64 if "arm64" in supported else compat.X86_64
        assert compat.ec2_architecture(name) == expected, (name, supported)
        checked += 1
    assert checked > 1000


def test_every_ami_type_offered_is_one_the_eks_api_knows():
    enum = botocore.session.get_session().get_service_model("eks").shape_for("AMITypes").enum
    assert set(compat.NODE_AMI_TYPES) <= set(enum)
    assert compat.default_node_ami_type("m7i.large") in enum and compat.default_node_ami_type("m7g.large") in enum


def test_trainium_efa_table_matches_ec2_and_covers_every_hyperpod_trainium_type():
    hyperpod_trainium = {t for t in cluster_instance_types() if t.startswith("ml.trn")}
    assert set(compat.TRAINIUM_EFA_INTERFACES) == hyperpod_trainium
    for name, efa in compat.TRAINIUM_EFA_INTERFACES.items():
        info = EC2_TYPES[name.removeprefix("ml.")]
        assert info["NeuronInfo"]["NeuronDevices"][0]["Name"].startswith("Trainium")
        assert info["NetworkInfo"].get("EfaInfo", {}).get("MaximumEfaInterfaces", 0) == efa, name


def test_accelerated_types_are_exactly_the_gpu_and_trainium_ones():
    for name in cluster_instance_types():
        ec2 = EC2_TYPES.get(name.removeprefix("ml."))
        if ec2 is None:  # newer than moto's data (p6e-gb200): the GPU table is the only source
            assert name in GPU_INSTANCE_TYPES, name
            continue
        has_accelerator = "GpuInfo" in ec2 or any(
            d["Name"].startswith("Trainium") for d in ec2.get("NeuronInfo", {}).get("NeuronDevices", [])
        )
        assert compat.is_accelerated(name) == has_accelerator, name


def test_default_system_nodes_get_al2023_for_their_architecture():
    assert make_config().eks.system_node_group.resolved_ami_type == "AL2023_x86_64_STANDARD"
    graviton = make_config(**{"eks.system_node_group.instance_type": "m7g.large"})
    assert graviton.eks.system_node_group.resolved_ami_type == "AL2023_ARM_64_STANDARD"


ACCEPTED = [
    {"eks.system_node_group.ami_type": "BOTTLEROCKET_x86_64"},
    {"eks.system_node_group.ami_type": "BOTTLEROCKET_ARM_64", "eks.system_node_group.instance_type": "c7g.xlarge"},
    {"eks.system_node_group.ami_type": "AL2_x86_64", "eks.version": "1.32"},
    {"eks.system_node_group.ami_type": "AL2023_ARM_64_STANDARD", "eks.system_node_group.instance_type": "a1.large"},
    {"hyperpod.instance_groups[0].instance_type": "ml.trn1.32xlarge"},
    {"hyperpod.instance_groups[0].instance_type": "ml.g5.8xlarge"},
    {
        "hyperpod.instance_groups[0].instance_type": "ml.g5.xlarge",
        "hyperpod.instance_groups[0].deep_health_checks": "[InstanceStress]",
    },
    {
        "hyperpod.instance_groups[0].instance_type": "ml.m5.2xlarge",
        "hyperpod.instance_groups[0].deep_health_checks": "[]",
    },
]


@pytest.mark.parametrize("overrides", ACCEPTED, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_combinations_aws_accepts_synthesize(overrides):
    make_config(**overrides)


REFUSED = [
    (
        {"eks.system_node_group.ami_type": "AL2_x86_64"},
        'eks.system_node_group.ami_type = "AL2_x86_64": EKS has no Amazon Linux 2 AMIs for Kubernetes 1.33',
    ),
    (
        {
            "eks.system_node_group.ami_type": "AL2_ARM_64",
            "eks.version": "1.34",
            "eks.system_node_group.instance_type": "m7g.large",
        },
        'eks.system_node_group.ami_type = "AL2_ARM_64": EKS has no Amazon Linux 2 AMIs for Kubernetes 1.34',
    ),
    (
        {"eks.system_node_group.ami_type": "AL2023_ARM_64_STANDARD"},
        'eks.system_node_group.ami_type = "AL2023_ARM_64_STANDARD": is for arm64 but '
        "eks.system_node_group.instance_type m7i.large is x86_64",
    ),
    (
        {"eks.system_node_group.ami_type": "BOTTLEROCKET_x86_64", "eks.system_node_group.instance_type": "m7g.large"},
        'eks.system_node_group.ami_type = "BOTTLEROCKET_x86_64": is for x86_64 but',
    ),
    (
        {"eks.system_node_group.ami_type": "WINDOWS_CORE_2022_x86_64"},
        'eks.system_node_group.ami_type = "WINDOWS_CORE_2022_x86_64": must be one of AL2023_x86_64_STANDARD',
    ),
    (
        {"eks.system_node_group.instance_type": "mac2.metal"},
        'eks.system_node_group.instance_type = "mac2.metal": Mac instances cannot join EKS node groups',
    ),
    (
        {"hyperpod.instance_groups[0].instance_type": "ml.m5.2xlarge"},
        'hyperpod.instance_groups[0].deep_health_checks = ["InstanceStress", "InstanceConnectivity"]: '
        "deep health checks run only on GPU and Trainium instance types, not ml.m5.2xlarge",
    ),
    (
        {
            "hyperpod.instance_groups[0].instance_type": "ml.c7g.4xlarge",
            "hyperpod.instance_groups[0].deep_health_checks": "[InstanceStress]",
        },
        'hyperpod.instance_groups[0].deep_health_checks = ["InstanceStress"]: deep health checks run only on GPU',
    ),
    (
        {"hyperpod.instance_groups[0].instance_type": "ml.g5.xlarge"},
        'hyperpod.instance_groups[0].deep_health_checks = ["InstanceStress", "InstanceConnectivity"]: '
        "InstanceConnectivity needs multi-node networking (EFA), which ml.g5.xlarge does not have",
    ),
    (
        {"hyperpod.instance_groups[0].instance_count": "1"},
        'hyperpod.instance_groups[0].deep_health_checks = ["InstanceStress", "InstanceConnectivity"]: '
        "InstanceConnectivity tests between nodes and needs instance_count >= 2 (is 1)",
    ),
    (
        {
            "hyperpod.instance_groups[0].instance_type": "ml.trn1.32xlarge",
            "hyperpod.instance_groups[0].instance_count": "0",
        },
        "hyperpod.instance_groups[0].deep_health_checks = [",
    ),
]


@pytest.mark.parametrize(
    ("overrides", "expected"), REFUSED, ids=[e.split(":")[0] + str(i) for i, (_, e) in enumerate(REFUSED)]
)
def test_combinations_aws_refuses_stop_synth_with_one_line_naming_the_key(overrides, expected):
    with pytest.raises(ConfigError) as err:
        make_config(**overrides)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"config error: {expected}")


def test_the_second_group_is_named_by_its_index():
    groups = (
        "[{name: a, instance_type: ml.p5.48xlarge, instance_count: 2}, "
        "{name: b, instance_type: ml.m5.xlarge, instance_count: 1, deep_health_checks: [InstanceStress]}]"
    )
    with pytest.raises(ConfigError, match=r"^config error: hyperpod\.instance_groups\[1\]\.deep_health_checks = "):
        make_config(**{"hyperpod.instance_groups": groups})
