"""The deployment rehearsed on this machine: synthesized templates -> moto_server -> HyperPod handlers
-> post-deploy CLI -> delete. See ``rehearsal.py`` for what is real and what stands in for AWS."""

from __future__ import annotations

import json

import pytest

from config import outputs as keys
from config.gpu_types import ACCELERATOR_LABEL
from tests.k8s_double import seed
from tests.rehearsal.rehearsal import ACCOUNT, REPO, Rehearsal

SMOKE = REPO / "sky_tasks" / "smoke.yaml"
pytestmark = pytest.mark.slow


def _only(stack, type_name):
    (found,) = list(stack.resources_of_type(type_name))
    return found


def test_rehearsal_deploys_the_synthesized_stacks_runs_every_post_deploy_step_and_deletes(rehearsal: Rehearsal):
    r = rehearsal
    outputs = r.deploy()

    # --- the prerequisites exist in moto as the templates declare them ---------------------------
    (network,) = [s for s in r.assembly.stacks if list(s.resources_of_type("AWS::EC2::VPC"))]
    ec2 = r.aws("ec2", r.stacks.region(network))
    vpc_id, vpc = _only(network, "AWS::EC2::VPC")
    assert (
        ec2.describe_vpcs(VpcIds=[r.stacks.physical[(network.name, vpc_id)].ref])["Vpcs"][0]["CidrBlock"]
        == vpc["Properties"]["CidrBlock"]
    )
    declared = {
        (s["Properties"]["CidrBlock"], s["Properties"]["AvailabilityZone"])
        for _, s in network.resources_of_type("AWS::EC2::Subnet")
    }
    (default_vpc,) = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    assert {
        (s["CidrBlock"], s["AvailabilityZone"])
        for s in ec2.describe_subnets()["Subnets"]
        if s["VpcId"] != default_vpc["VpcId"]
    } == declared

    bucket = r.output(keys.LIFECYCLE_BUCKET_NAME)
    assert bucket.startswith("sagemaker-") and bucket.endswith(f"-{ACCOUNT}-{r.region}")
    (lifecycle,) = [s for s in r.assembly.stacks if list(s.resources_of_type("Custom::CDKBucketDeployment"))]
    prefix = _only(lifecycle, "Custom::CDKBucketDeployment")[1]["Properties"]["DestinationBucketKeyPrefix"]
    s3 = r.aws("s3")
    uploaded = {
        o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
        for o in s3.list_objects_v2(Bucket=bucket)["Contents"]
    }
    scripts = REPO / "lifecycle_scripts"
    assert uploaded == {
        f"{prefix}/{p.relative_to(scripts).as_posix()}": p.read_bytes()
        for p in scripts.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }

    (eks_stack,) = [s for s in r.assembly.stacks if list(s.resources_of_type("AWS::EKS::Cluster"))]
    eks_props = _only(eks_stack, "AWS::EKS::Cluster")[1]["Properties"]
    eks = r.aws("eks").describe_cluster(name=r.output(keys.EKS_CLUSTER_NAME))["cluster"]
    assert (eks["name"], eks["version"], eks["endpoint"]) == (eks_props["Name"], eks_props["Version"], r.k8s.url)
    assert eks["arn"] == r.output(keys.EKS_CLUSTER_ARN)

    # --- HyperPod: created by the handlers, inputs usable, the WaitCondition released -----------------
    name = r.output(keys.HYPERPOD_CLUSTER_NAME)
    described = r.aws("sagemaker").describe_cluster(ClusterName=name)
    assert described["ClusterStatus"] == "InService" and described["ClusterArn"] == r.output(keys.HYPERPOD_CLUSTER_ARN)
    assert r.hyperpod_input_problems() == []  # deploy() checked it too: lifecycle script, role, VPC, EKS ARN
    (handle,) = r.stacks.handles.values()
    (signal,) = handle.bodies()
    assert signal["Status"] == "SUCCESS" and "every node Running" in signal["Reason"], signal

    # --- storage: the FSx file system in the HyperPod subnet, on the group HyperPod nodes carry ------------
    from moto.fsx.models import fsx_backends

    fs_id = r.output(keys.FSX_FILE_SYSTEM_ID)
    fs = fsx_backends[ACCOUNT][r.region].file_systems[fs_id]
    vpc_config = r.cluster_request["VpcConfig"]
    assert fs.subnet_ids == vpc_config["Subnets"][:1] and fs.security_group_ids == vpc_config["SecurityGroupIds"]
    assert fs.lustre_configuration["DeploymentType"] == "PERSISTENT_2"
    (storage_outputs,) = [o for o in outputs.values() if keys.FSX_DNS_NAME in o]
    assert storage_outputs[keys.FSX_DNS_NAME] == fs.dns_name
    assert storage_outputs[keys.FSX_MOUNT_NAME] == fs.lustre_configuration["MountName"]

    # --- the CLI, as a user (or the pipeline) runs it after deploying --------------------------------
    assert json.loads(r.outputs_path.read_text()) == outputs
    r.step_kubeconfig()
    assert r.context == r.output(keys.EKS_CLUSTER_NAME)

    waited = r.step_wait_nodes()
    registered = r.k8s.nodes()
    construct_labels = {
        g["InstanceGroupName"]: g.get("KubernetesConfig", {}).get("Labels", {})
        for g in r.cluster_request["InstanceGroups"]
    }
    assert waited.summary["ok"] is True and len(waited.summary["nodes"]) == sum(
        g["InstanceCount"] for g in r.cluster_request["InstanceGroups"]
    ) == len(registered)
    for node in registered:  # HyperPod applied the group's labels the construct synthesized
        labels = node["metadata"]["labels"]
        assert labels.get(ACCELERATOR_LABEL) == construct_labels[
            labels["sagemaker.amazonaws.com/instance-group-name"]
        ].get(ACCELERATOR_LABEL), labels

    labelled = r.step_label_gpus()
    assert labelled.summary["changed"] == [] and labelled.summary["already_correct"] == len(registered)
    writes_before = len(r.k8s.writes())
    assert writes_before == 0  # nothing to fix: not a single write reached the API

    # A node without the construct's label (joined before HyperPod applied it, or labelled by hand):
    # label-gpus must fix exactly that one.
    template = registered[0]["metadata"]["labels"]
    instance_type = template["node.kubernetes.io/instance-type"]
    gpus, efa = r.accelerators(instance_type)
    stray = r.k8s.add_node(
        seed.hyperpod_node(
            instance_type,
            cluster=name,
            gpus=gpus,
            efa=efa,
            instance_group=template["sagemaker.amazonaws.com/instance-group-name"],
            name="hyperpod-i-0aaaaaaaaaaaaaaaa",
        )
    )
    r.step_label_gpus(expected_changes=frozenset({stray["metadata"]["name"]}))
    assert r.k8s.node(stray["metadata"]["name"])["metadata"]["labels"][ACCELERATOR_LABEL] == template[ACCELERATOR_LABEL]
    assert len(r.k8s.writes(successful=True)) == 1

    checked = r.step_check()
    nodes = registered + [stray]
    assert checked.summary["ok"] is True and checked.summary["enabled"] is True
    assert {n["node"] for n in checked.summary["nodes"]} == {n["metadata"]["name"] for n in nodes}
    accelerator = template[ACCELERATOR_LABEL].upper()
    assert checked.summary["gpus"][accelerator]["capacity"] == gpus * len(nodes)

    submitted = r.step_submit_validation(SMOKE)
    assert submitted.summary["validated"] == [str(SMOKE)]
    # ...and SkyPilot's own launch of the same task, up to where it would create the pod: it must
    # choose this context and the GPU the construct labelled, and create nothing.
    r.seed_skypilot_catalog()
    writes_before, unknown_before = len(r.k8s.writes()), len(r.k8s.unknown_requests)
    launch = r.step_launch_dryrun(SMOKE)
    assert (launch["cloud"], launch["context"]) == ("Kubernetes", r.context)
    assert launch["accelerators"] == {accelerator: 1}, launch
    assert len(r.k8s.writes()) == writes_before and len(r.k8s.unknown_requests) == unknown_before

    # Every Kubernetes call the CLI and SkyPilot made carried a token our exec plugin signed for
    # this EKS cluster, checked as EKS checks it.
    assert r.k8s.identities and not r.k8s.rejections
    assert not [q for q in r.k8s.requests if q.status == 401]

    # --- cdk destroy ------------------------------------------------------------------------------
    r.destroy()
    assert r.aws("sagemaker").list_clusters()["ClusterSummaries"] == []
    print("rehearsal timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in r.timings.items()))
