"""``hyperpod.autoscaling: karpenter`` and the per-group ``karpenter`` / ``min_instance_count`` settings: AWS's
rules for HyperPod autoscaling are refused before synth, one line naming the key and the value.

Sources: "Autoscaling on SageMaker HyperPod EKS" (prerequisites: continuous provisioning, NodeRecovery
Automatic), "Create a NodeClass" (start at 0, at most 10 groups, one AZ per group, on-demand only, no deep
health checks), "Create a NodePool" (amd64 only), botocore's MinInstanceCount (<= InstanceCount).
"""

from __future__ import annotations

import json

import pytest

from config import ConfigError
from tests.conftest import make_config

STATIC = {"name": "system", "instance_type": "ml.m5.xlarge", "instance_count": 1}
SCALED = {"name": "gpu-auto", "instance_type": "ml.g5.8xlarge", "instance_count": 0, "karpenter": True}


def config(*groups: dict, **overrides):
    return make_config(
        **{"hyperpod.autoscaling": "karpenter", "hyperpod.instance_groups": json.dumps(list(groups)), **overrides}
    )


def refused(*groups: dict, **overrides) -> str:
    with pytest.raises(ConfigError) as err:
        config(*groups, **overrides)
    message = str(err.value)
    assert "\n" not in message and message.startswith("config error: ")
    return message


def test_karpenter_config_implies_continuous_provisioning_and_lists_the_scaled_groups():
    hyperpod = config(STATIC, SCALED).hyperpod
    assert hyperpod.provisioning_mode == "Continuous"
    assert hyperpod.node_provisioning_mode is None  # not written back: the request derives it
    assert hyperpod.karpenter_groups == ("gpu-auto",)


def test_defaults_leave_autoscaling_off():
    hyperpod = make_config().hyperpod
    assert hyperpod.autoscaling is None and hyperpod.karpenter_groups == () and hyperpod.provisioning_mode is None


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"instance_count": 2}, "hyperpod.instance_groups[1].instance_count = 2: must be 0 for a karpenter group"),
        (
            {"deep_health_checks": ["InstanceStress"]},
            'hyperpod.instance_groups[1].deep_health_checks = ["InstanceStress"]: must be [] for a karpenter group',
        ),
        (
            {"training_plan_arn": "arn:aws:sagemaker:us-east-1:123456789012:training-plan/p5-plan"},
            'hyperpod.instance_groups[1].training_plan_arn = "arn:aws:sagemaker:us-east-1:123456789012:training-plan'
            '/p5-plan": must be unset for a karpenter group',
        ),
        (
            {"instance_type": "ml.c7g.4xlarge"},
            'hyperpod.instance_groups[1].instance_type = "ml.c7g.4xlarge": is Arm-based',
        ),
        ({"min_instance_count": 1}, "hyperpod.instance_groups[1].min_instance_count = 1: must not exceed"),
    ],
)
def test_a_group_karpenter_cannot_scale_is_refused_naming_the_field(change, expected):
    assert refused(STATIC, {**SCALED, **change}).startswith(f"config error: {expected}")


def test_karpenter_group_without_autoscaling_is_refused():
    message = refused(STATIC, SCALED, **{"hyperpod.autoscaling": None})
    assert message.startswith("config error: hyperpod.instance_groups[1].karpenter = true: needs hyperpod.autoscaling")


def test_autoscaling_without_a_karpenter_group_is_refused():
    message = refused(STATIC)
    assert message.startswith('config error: hyperpod.autoscaling = "karpenter": needs at least one instance group')


def test_more_groups_than_a_node_class_holds_are_refused():
    groups = [{**SCALED, "name": f"auto-{i}"} for i in range(11)]
    assert "at most 10 instance groups; 11 have karpenter: true" in refused(STATIC, *groups)


def test_autoscaling_needs_automatic_node_recovery_and_the_in_service_wait():
    assert refused(STATIC, SCALED, **{"hyperpod.node_recovery": "None"}).startswith(
        'config error: hyperpod.node_recovery = "None": must be Automatic'
    )
    assert refused(STATIC, SCALED, **{"hyperpod.wait_for_in_service": "false"}).startswith(
        "config error: hyperpod.wait_for_in_service = false: must be true"
    )


def test_karpenter_groups_need_a_single_hyperpod_az():
    message = refused(STATIC, SCALED, **{"hyperpod.availability_zones": "[us-east-1a, us-east-1b]"})
    assert message.startswith('config error: hyperpod.availability_zones = ["us-east-1a", "us-east-1b"]')
    assert "gpu-auto" in message


def test_min_instance_count_needs_continuous_provisioning():
    groups = json.dumps([{**STATIC, "instance_count": 4, "min_instance_count": 2}])
    with pytest.raises(ConfigError) as err:
        make_config(**{"hyperpod.instance_groups": groups})
    assert str(err.value).startswith(
        "config error: hyperpod.instance_groups[0].min_instance_count = 2: needs hyperpod.node_provisioning_mode"
    )
    ok = make_config(**{"hyperpod.instance_groups": groups, "hyperpod.node_provisioning_mode": "Continuous"})
    assert ok.hyperpod.instance_groups[0].min_instance_count == 2


def test_a_fixed_group_at_zero_is_accepted_without_autoscaling():
    groups = json.dumps([STATIC, {**STATIC, "name": "spare", "instance_count": 0}])
    assert make_config(**{"hyperpod.instance_groups": groups}).hyperpod.instance_groups[1].instance_count == 0


def test_the_autoscaling_lines_of_the_example_config_are_valid_once_uncommented(tmp_path):
    from tests.conftest import REPO

    lines = []
    for line in (REPO / "examples" / "cluster.yaml").read_text().splitlines():
        if line.startswith("  # autoscaling: karpenter"):
            line = "  autoscaling: karpenter"
        elif line.startswith(("    # - name: g5-auto", "    #   ")):
            line = line.replace("    # ", "    ", 1)
        lines.append(line)
    path = tmp_path / "cluster.yaml"
    path.write_text("\n".join(lines) + "\n")
    hyperpod = make_config(config=str(path)).hyperpod
    assert hyperpod.autoscaling == "karpenter" and hyperpod.karpenter_groups == ("g5-auto",)
