"""post_deploy on a cluster whose GPU groups Karpenter scales from 0 (``hyperpod.autoscaling: karpenter``):
groups at 0 are normal for wait-nodes, label-gpus and check, the run pipeline passes the groups on, and the
SkyPilot config submit sends is accepted by SkyPilot's own validation.

DescribeCluster goes through botocore's Stubber, nodes through the Kubernetes API double, SkyPilot is the
real 0.14.1 code."""

from __future__ import annotations

import argparse
import json

import boto3
import pytest
from botocore.stub import Stubber
from sky.utils import config_utils

from config import outputs as keys
from post_deploy import autoscaling, labels, nodes, pipeline_run, skypilot_check, submit
from post_deploy.common import StepError
from post_deploy.exit_codes import ExitCode
from post_deploy.outputs import StackOutputs
from tests.k8s_double import seed
from tests.post_deploy.test_nodes import CLUSTER, FakeClock

ARN = f"arn:aws:sagemaker:us-west-2:123456789012:cluster/{CLUSTER}"


def _described(**counts: tuple[int, int]) -> dict:
    return {
        "ClusterArn": ARN,
        "ClusterName": CLUSTER,
        "ClusterStatus": "InService",
        "InstanceGroups": [
            {
                "InstanceGroupName": name,
                "InstanceType": "ml.g5.8xlarge" if name.startswith("gpu") else "ml.m5.xlarge",
                "CurrentCount": current,
                "TargetCount": target,
                "Status": "InService",
            }
            for name, (current, target) in counts.items()
        ],
        "NodeProvisioningMode": "Continuous",
        "AutoScaling": {"Mode": "Enable", "AutoScalerType": "Karpenter", "Status": "InService"},
    }


@pytest.fixture
def sagemaker(aws_env):
    client = boto3.client("sagemaker", region_name="us-west-2")
    with Stubber(client) as stubber:
        client.stubber = stubber
        yield client


# --- wait-nodes ------------------------------------------------------------------------------------


def test_wait_nodes_is_done_with_karpenter_groups_at_zero(k8s_double, k8s_api_client, sagemaker):
    k8s_double.add_node(seed.cpu_hyperpod_node("ml.m5.xlarge", instance_group="system"))
    sagemaker.stubber.add_response("describe_cluster", _described(system=(1, 1), **{"gpu-auto": (0, 0)}))
    clock = FakeClock()

    result = nodes.wait_for_nodes(
        k8s_api_client,
        sagemaker,
        CLUSTER,
        timeout=600,
        clock=clock,
        sleep=clock.sleep,
        karpenter_groups=("gpu-auto",),
    )

    assert result.code == ExitCode.OK and result.elapsed == 0
    assert result.message == (
        f"1 of 1 expected nodes of '{CLUSTER}' are Ready and schedulable; "
        "Karpenter scales gpu-auto (nodes come when pods need them)"
    )


def test_wait_nodes_does_not_wait_for_a_node_karpenter_is_still_adding(k8s_double, k8s_api_client, sagemaker):
    """A pending pod made Karpenter raise gpu-auto to 1: that node is the pod's business, not the deploy's."""
    k8s_double.add_node(seed.cpu_hyperpod_node("ml.m5.xlarge", instance_group="system"))
    sagemaker.stubber.add_response("describe_cluster", _described(system=(1, 1), **{"gpu-auto": (0, 1)}))
    clock = FakeClock()

    result = nodes.wait_for_nodes(
        k8s_api_client, sagemaker, CLUSTER, clock=clock, sleep=clock.sleep, karpenter_groups=("gpu-auto",)
    )

    assert result.code == ExitCode.OK and result.snapshot.expected == 1


def test_without_the_groups_the_same_cluster_waits_for_karpenters_node(k8s_double, k8s_api_client, sagemaker):
    """What --karpenter-groups changes: otherwise the node Karpenter is adding counts, and the wait runs out."""
    k8s_double.add_node(seed.cpu_hyperpod_node("ml.m5.xlarge", instance_group="system"))
    for _ in range(3):
        sagemaker.stubber.add_response("describe_cluster", _described(system=(1, 1), **{"gpu-auto": (0, 1)}))
    clock = FakeClock()

    result = nodes.wait_for_nodes(
        k8s_api_client, sagemaker, CLUSTER, timeout=30, poll_interval=15, clock=clock, sleep=clock.sleep
    )

    assert result.code == ExitCode.NODES_TIMEOUT


def test_wait_nodes_cli_takes_the_groups_as_the_stack_output_spells_them():
    parser = argparse.ArgumentParser()
    nodes.register(parser.add_subparsers())
    args = parser.parse_args(["wait-nodes", "--cluster-name", CLUSTER, "--karpenter-groups", "gpu-auto,h100-auto"])
    assert autoscaling.parse_groups(args.karpenter_groups) == ("gpu-auto", "h100-auto")


# --- label-gpus ------------------------------------------------------------------------------------


def test_label_gpus_with_no_gpu_node_is_a_clean_no_op(k8s_double, k8s_api_client):
    k8s_double.add_node(seed.cpu_hyperpod_node("ml.m5.xlarge", instance_group="system"))
    k8s_double.add_node(seed.system_node())

    report = labels.reconcile_gpu_labels(k8s_api_client, cluster_name=CLUSTER)

    assert report.ok and report.changed == [] and report.writes == 0 and report.not_gpu == 1


# --- check -----------------------------------------------------------------------------------------


def _check(kubeconfig, capsys, *extra: str) -> tuple[int, dict]:
    parser = argparse.ArgumentParser()
    skypilot_check.register(parser.add_subparsers())
    args = parser.parse_args(
        ["check", "--kubeconfig", str(kubeconfig.path), "--context", kubeconfig.context, "--json", *extra]
    )
    code = skypilot_check.run(args)
    return code, json.loads(capsys.readouterr().out)


def test_check_passes_with_no_node_at_all_when_karpenter_scales_the_groups(
    k8s_double, kubeconfig_for_double, skypilot_env, capsys
):
    k8s_double.add_node(seed.sized(seed.system_node("m7i.large")))

    code, summary = _check(kubeconfig_for_double, capsys, "--cluster-name", CLUSTER, "--karpenter-groups", "gpu-auto")

    assert code == ExitCode.OK and summary["problems"] == [] and summary["enabled"] is True
    assert any("Karpenter scales instance group(s) gpu-auto from 0" in n for n in summary["notes"])
    assert any(n.startswith("no HyperPod GPU node runs now: normal") for n in summary["notes"])


def test_the_same_empty_cluster_fails_check_without_the_groups(k8s_double, kubeconfig_for_double, skypilot_env, capsys):
    k8s_double.add_node(seed.sized(seed.system_node("m7i.large")))
    code, summary = _check(kubeconfig_for_double, capsys, "--cluster-name", CLUSTER)
    assert code == ExitCode.SKYPILOT_CHECK
    assert summary["problems"][0].startswith(f"no HyperPod nodes of cluster '{CLUSTER}' found")


# --- the SkyPilot config submit sends --------------------------------------------------------------


def test_submit_config_is_accepted_by_skypilots_validation_and_keeps_the_users_settings():
    config = config_utils.Config(
        {"kubernetes": {"allowed_contexts": ["hp-eks"], "context_configs": {"hp-eks": {"provision_timeout": 600}}}}
    )
    config, replaced = autoscaling.with_autoscaler(config, "hp-eks", timeout=2700)

    assert config.get_nested(("kubernetes", "context_configs", "hp-eks"), None) == {
        "provision_timeout": 600,  # the user's own value wins, and is reported
        "autoscaler": "generic",
    }
    assert replaced == ["provision_timeout"]
    assert config.get_nested(("kubernetes", "allowed_contexts"), None) == ["hp-eks"]
    assert autoscaling.schema_problem(config) is None


def test_skypilots_validation_refuses_an_autoscaler_it_does_not_know():
    config = config_utils.Config({"kubernetes": {"context_configs": {"hp-eks": {"autoscaler": "hyperpod"}}}})
    problem = autoscaling.schema_problem(config)
    assert problem is not None and "'hyperpod' is not one of" in problem and "generic" in problem


def test_submit_refuses_karpenter_groups_without_a_context(tmp_path):
    parser = argparse.ArgumentParser()
    submit.register(parser.add_subparsers())
    args = parser.parse_args(["submit", "--karpenter-groups", "gpu-auto", str(tmp_path / "task.yaml")])
    with pytest.raises(StepError) as err:
        submit.run(args)
    assert err.value.code == ExitCode.USAGE and "needs --context" in err.value.message


# --- run -------------------------------------------------------------------------------------------


def test_run_passes_the_karpenter_groups_output_to_wait_nodes_check_and_submit():
    outs = StackOutputs(
        region="us-west-2",
        eks_cluster_name="hp-eks",
        hyperpod_cluster_name=CLUSTER,
        hyperpod_karpenter_groups="gpu-auto,h100-auto",
        hyperpod_accelerators="a10g,h100",
    )
    args = argparse.Namespace(
        profile=None,
        node_timeout=None,
        expected_nodes=None,
        tasks=["sky_tasks/smoke.yaml"],
        down=True,
        managed=False,
        outputs=None,
    )
    plan = dict(pipeline_run.step_argv(args, outs, "/tmp/kubeconfig", "hp-eks"))
    for step in ("wait-nodes", "check", "submit"):
        i = plan[step].index("--karpenter-groups")
        assert plan[step][i + 1] == "gpu-auto,h100-auto", step
    assert "--karpenter-groups" not in plan["label-gpus"]
    assert plan["submit"][plan["submit"].index("--cluster-accelerators") + 1] == "a10g,h100"
    without = dict(
        pipeline_run.step_argv(
            args,
            StackOutputs(region="us-west-2", eks_cluster_name="hp-eks", hyperpod_cluster_name=CLUSTER),
            "/k",
            "hp-eks",
        )
    )
    assert not any("--karpenter-groups" in argv for argv in without.values())
    assert keys.HYPERPOD_KARPENTER_GROUPS == "HyperPodKarpenterGroups"


def test_a_task_listing_several_gpus_keeps_only_those_an_instance_group_offers():
    import sky

    task = sky.Task.from_yaml("sky_tasks/smoke.yaml")
    dropped = autoscaling.narrow_accelerators(task, ("a10g", "h100"))
    assert sorted(a for r in task.resources for a in r.accelerators) == ["A10G", "H100"]
    assert dropped == ["A100", "A100-80GB", "B200", "H200", "L4", "L40S"]


def test_a_task_whose_gpus_no_group_offers_is_refused_before_launch():
    import sky

    task = sky.Task.from_yaml("sky_tasks/nccl-test-efa.yaml")
    with pytest.raises(StepError) as err:
        autoscaling.narrow_accelerators(task, ("a10g",))
    assert err.value.code == ExitCode.TASK_INVALID and "offer only a10g" in err.value.message


def test_without_offered_accelerators_nothing_is_narrowed():
    import sky

    task = sky.Task.from_yaml("sky_tasks/smoke.yaml")
    assert autoscaling.narrow_accelerators(task, ()) == [] and len(task.resources) == 8
