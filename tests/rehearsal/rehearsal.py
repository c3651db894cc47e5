"""One rehearsal: the synthesized stacks deployed into moto_server, then the post-deploy CLI run
against it and the Kubernetes API double, then the HyperPod cluster deleted again.

Everything crosses a real boundary: the handlers run from their ``cdk.out`` asset in child
interpreters and reach moto over HTTP (``AWS_ENDPOINT_URL``); the CLI runs as
``python -m post_deploy`` subprocesses with a private HOME, reaching moto over HTTP and the
double through the kubeconfig it writes itself, authenticating with its own exec plugin.

Two redirections stand in for what only AWS can provide:

- moto runs in this process (``ThreadedMotoServer``, still real HTTP on 127.0.0.1) so that the
  EKS cluster's endpoint, which DescribeCluster reports and the ``kubeconfig`` step writes, can be
  set to the double's URL in moto's backend right after the template's cluster is created;
- HyperPod's node registration: once moto lists the cluster's nodes, the double registers one
  Kubernetes node per instance with the labels HyperPod sets, plus the instance group's
  ``KubernetesConfig.Labels`` exactly as the handler sent them in CreateCluster (read from moto's
  record of the request: DescribeCluster's model reports labels under other names, which moto does
  not fill). GPU and EFA capacity come from moto's EC2 instance-type data, not from the project's
  own GPU table, so the table is cross-checked rather than echoed.

Every failure is a ``RehearsalFailure`` whose first line names the step and what disagreed.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import requests
from moto.core import DEFAULT_ACCOUNT_ID
from moto.eks.models import eks_backends
from moto.sagemaker.models import sagemaker_backends
from moto.server import ThreadedMotoServer

from config import outputs as output_keys
from post_deploy.outputs import read_outputs
from tests.hyperpod_cluster.conftest import HandleServer
from tests.k8s_double import seed
from tests.rehearsal.assembly import CloudAssembly
from tests.rehearsal.eks_auth import EksAuthK8sDouble
from tests.rehearsal.intrinsics import Unresolvable
from tests.rehearsal.moto_stacks import HYPERPOD_CLUSTER_TYPE, DeploymentFailed, MotoStacks

REPO = Path(__file__).resolve().parents[2]
ACCOUNT = DEFAULT_ACCOUNT_ID  # the fake account the templates' AWS::AccountId resolves to (moto's own)
DEFAULT_REGION = "us-east-1"  # for environment-agnostic stacks
HYPERPOD_LABELS = (seed.CLUSTER_NAME_LABEL, seed.HEALTH_LABEL, seed.DEEP_HEALTH_LABEL)


class RehearsalFailure(AssertionError):
    """A step of the rehearsal failed; the message names the step and the disagreement."""


@dataclass
class CliResult:
    argv: list[str]
    code: int
    summary: dict[str, Any] | None  # the step's --json summary
    stderr: str
    seconds: float


class Rehearsal:
    def __init__(self, cdk_out: Path, workdir: Path, tools_bin: Path):
        self.assembly = CloudAssembly(cdk_out)
        self.workdir, self.tools_bin = Path(workdir), Path(tools_bin)
        self.home = self.workdir / "home"
        self.kubeconfig = self.workdir / "kube" / "config"
        self.outputs_path = self.workdir / "cdk-outputs.json"
        self.k8s: EksAuthK8sDouble | None = None
        self.outputs: dict[str, dict[str, Any]] = {}
        self.timings: dict[str, float] = {}
        self.context = ""  # set by the kubeconfig step
        self._handles: list[HandleServer] = []

    # ----- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> Rehearsal:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.home.mkdir(parents=True, exist_ok=True)
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._moto.start()
        host, port = self._moto.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self._reset_moto()  # moto's backends are process-wide; start from nothing
        self.stacks = self._moto_stacks()
        return self

    def _moto_stacks(self) -> MotoStacks:
        return MotoStacks(
            self.assembly,
            endpoint=self.endpoint,
            account=ACCOUNT,
            default_region=DEFAULT_REGION,
            wait_handle=self._new_handle,
            on_eks_cluster=self._point_eks_at_double,
        )

    def use_assembly(self, cdk_out: Path) -> None:
        """Rehearse another cloud assembly before deploying: one synthesized with the ids of resources
        created in moto first (an existing VPC or bucket), which moto only knows once they exist."""
        self.stacks.close()
        self.assembly = CloudAssembly(cdk_out)
        self.stacks = self._moto_stacks()

    def __exit__(self, *exc: object) -> None:
        self.stacks.close()
        if self.k8s is not None:
            self.k8s.__exit__(None, None, None)
        for handle in self._handles:
            handle.close()
        self._reset_moto()
        self._moto.stop()

    def _reset_moto(self) -> None:
        requests.post(f"{self.endpoint}/moto-api/reset", timeout=10).raise_for_status()

    def _new_handle(self, name: str) -> HandleServer:
        handle = HandleServer()
        self._handles.append(handle)
        return handle

    def _point_eks_at_double(self, cluster_name: str, region: str) -> None:
        if self.k8s is not None:
            raise RehearsalFailure(f"deploy: a second EKS cluster {cluster_name!r}; the rehearsal serves one")
        self.k8s = EksAuthK8sDouble(cluster_name).__enter__()
        eks_backends[ACCOUNT][region].clusters[cluster_name].endpoint = self.k8s.url

    def aws(self, service: str, region: str | None = None):
        return boto3.client(
            service,
            region_name=region or self.region,
            endpoint_url=self.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    # ----- step 1: deploy -------------------------------------------------------------------------
    def deploy(self, only: set[str] | None = None) -> dict[str, dict[str, Any]]:
        """Every stack (or those in ``only``) in ``cdk deploy --all`` order; returns what ``--outputs-file``
        would record."""
        started = time.monotonic()
        for stack in self.assembly.stacks:
            if only is not None and stack.name not in only:
                continue
            try:
                self.outputs[stack.name] = self.stacks.deploy(stack.name)
            except (DeploymentFailed, Unresolvable) as exc:
                raise RehearsalFailure(f"deploy {stack.name}: {exc}") from exc
        problems = self.hyperpod_input_problems()
        if problems:
            raise RehearsalFailure(
                "deploy: moto accepted CreateCluster, but HyperPod would fail on its inputs: " + "; ".join(problems)
            )
        self.outputs_path.write_text(json.dumps(self.outputs, indent=1))
        self.timings["deploy"] = time.monotonic() - started
        return self.outputs

    @property
    def hyperpod_resource(self) -> tuple[str, str]:
        """(stack name, logical id) of the HyperPod custom resource."""
        found = [
            (s.name, logical_id)
            for s in self.assembly.stacks
            for logical_id, _ in s.resources_of_type(HYPERPOD_CLUSTER_TYPE)
        ]
        if len(found) != 1:
            raise RehearsalFailure(f"deploy: expected one {HYPERPOD_CLUSTER_TYPE} in the assembly, found {found}")
        return found[0]

    @property
    def cluster_request(self) -> dict[str, Any]:
        """The CreateCluster request the custom resource received (resolved ClusterRequest property)."""
        physical = self.stacks.physical.get(self.hyperpod_resource)
        if physical is None:
            raise RehearsalFailure("the HyperPod custom resource was not created")
        return json.loads(physical.details["ClusterRequest"])

    @property
    def region(self) -> str:
        stack = self.assembly.stack(self.hyperpod_resource[0])
        return self.stacks.region(stack)

    def received_instance_groups(self, cluster_name: str) -> list[dict[str, Any]]:
        """Instance groups as moto received them in CreateCluster (KubernetesConfig included)."""
        cluster = sagemaker_backends[ACCOUNT][self.region].clusters.get(cluster_name)
        if cluster is None:
            raise RehearsalFailure(f"HyperPod cluster {cluster_name!r} is not in moto")
        return cluster.instance_groups

    def hyperpod_input_problems(self) -> list[str]:
        """What HyperPod itself would refuse or fail on that moto does not check: the lifecycle script
        must be readable where LifeCycleConfig points, and every referenced resource must exist."""
        request = self.cluster_request
        problems = []
        s3, iam, ec2, eks = self.aws("s3"), self.aws("iam"), self.aws("ec2"), self.aws("eks")
        for group in request["InstanceGroups"]:
            uri, script = group["LifeCycleConfig"]["SourceS3Uri"], group["LifeCycleConfig"]["OnCreate"]
            bucket, _, prefix = uri.removeprefix("s3://").partition("/")
            key = f"{prefix.rstrip('/')}/{script}".lstrip("/")
            listed = (
                s3.list_objects_v2(Bucket=bucket, Prefix=key).get("Contents", []) if _bucket_exists(s3, bucket) else []
            )
            if not any(o["Key"] == key for o in listed):
                problems.append(
                    f"instance group {group['InstanceGroupName']}: s3://{bucket}/{key} "
                    "(LifeCycleConfig SourceS3Uri + OnCreate) does not exist"
                )
            role_name = group["ExecutionRole"].rsplit("/", 1)[-1]
            try:
                iam.get_role(RoleName=role_name)
            except iam.exceptions.NoSuchEntityException:
                problems.append(
                    f"instance group {group['InstanceGroupName']}: ExecutionRole "
                    f"{group['ExecutionRole']} does not exist"
                )
        vpc = request["VpcConfig"]
        subnets = ec2.describe_subnets(Filters=[{"Name": "subnet-id", "Values": vpc["Subnets"]}])["Subnets"]
        if len(subnets) != len(vpc["Subnets"]):
            problems.append(f"VpcConfig.Subnets {vpc['Subnets']}: only {[s['SubnetId'] for s in subnets]} exist")
        groups = ec2.describe_security_groups(Filters=[{"Name": "group-id", "Values": vpc["SecurityGroupIds"]}])[
            "SecurityGroups"
        ]
        if len(groups) != len(vpc["SecurityGroupIds"]):
            problems.append(
                f"VpcConfig.SecurityGroupIds {vpc['SecurityGroupIds']}: only {[g['GroupId'] for g in groups]} exist"
            )
        if len({s["VpcId"] for s in subnets} | {g["VpcId"] for g in groups}) > 1:
            problems.append("VpcConfig subnets and security groups are in different VPCs")
        eks_arn = request["Orchestrator"]["Eks"]["ClusterArn"]
        if eks_arn not in [eks.describe_cluster(name=n)["cluster"]["arn"] for n in eks.list_clusters()["clusters"]]:
            problems.append(f"Orchestrator.Eks.ClusterArn {eks_arn} is not an existing EKS cluster")
        return problems

    # ----- outputs as the CLI reads them ------------------------------------------------------------
    def output(self, key: str) -> str:
        """A stack output through the CLI's own reader, so a renamed output key fails here by name."""
        value = read_outputs(self.outputs_path, environ={}).as_dict().get(key)
        if not value:
            declared = sorted(k for outs in self.outputs.values() for k in outs if not k.startswith("ExportsOutput"))
            raise RehearsalFailure(
                f"outputs: no stack declares output {key!r}, which post_deploy reads "
                f"(config/outputs.py); the stacks declare {', '.join(declared)}"
            )
        return value

    # ----- HyperPod's part: nodes join the EKS cluster -------------------------------------------
    def register_hyperpod_nodes(self) -> list[dict[str, Any]]:
        """One Kubernetes node per instance moto lists, labelled as HyperPod labels nodes."""
        assert self.k8s is not None
        name = self.output(output_keys.HYPERPOD_CLUSTER_NAME)
        sagemaker, ec2 = self.aws("sagemaker"), self.aws("ec2")
        groups = {g["InstanceGroupName"]: g for g in self.received_instance_groups(name)}
        subnet = self.cluster_request["VpcConfig"]["Subnets"][0]
        zone = ec2.describe_subnets(SubnetIds=[subnet])["Subnets"][0]["AvailabilityZone"]
        registered = []
        for summary in sagemaker.list_cluster_nodes(ClusterName=name)["ClusterNodeSummaries"]:
            group = groups[summary["InstanceGroupName"]]
            labels = dict((group.get("KubernetesConfig") or {}).get("Labels") or {})
            labels.update({"topology.kubernetes.io/zone": zone, "topology.kubernetes.io/region": self.region})
            gpus, efa = self.accelerators(summary["InstanceType"])
            node = seed.hyperpod_node(
                summary["InstanceType"],
                cluster=name,
                instance_group=summary["InstanceGroupName"],
                gpus=gpus,
                efa=efa,
                name=f"hyperpod-{summary['InstanceId']}",
                extra_labels=labels,
            )
            registered.append(self.k8s.add_node(node))
        return registered

    def accelerators(self, instance_type: str) -> tuple[int, int]:
        """GPU count and EFA interfaces of an ml.* type, from moto's EC2 instance-type data."""
        info = self.aws("ec2").describe_instance_types(InstanceTypes=[instance_type.removeprefix("ml.")])[
            "InstanceTypes"
        ][0]
        gpus = sum(g["Count"] for g in info.get("GpuInfo", {}).get("Gpus", []))
        return gpus, info.get("NetworkInfo", {}).get("EfaInfo", {}).get("MaximumEfaInterfaces", 0)

    # ----- the CLI --------------------------------------------------------------------------------
    def cli_env(self) -> dict[str, str]:
        return {
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), str(self.tools_bin), "/usr/bin", "/bin"]),
            "HOME": str(self.home),
            "LANG": "C.UTF-8",
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
            "SKYPILOT_DISABLE_USAGE_COLLECTION": "1",
        }

    def start_cli(self, *argv: str) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-m", "post_deploy", *argv],
            cwd=REPO,
            env=self.cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        process.started = time.monotonic()  # type: ignore[attr-defined]
        return process

    def cli(
        self, *argv: str, expect: int | None = 0, timeout: float = 180, process: subprocess.Popen | None = None
    ) -> CliResult:
        """Run ``python -m post_deploy <argv>`` (or finish ``process``); RehearsalFailure on another exit code."""
        process = process or self.start_cli(*argv)
        started = process.started  # type: ignore[attr-defined]
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
            raise RehearsalFailure(f"{argv[0]}: no exit within {timeout:g} s\n{stderr[-3000:]}") from None
        lines = [line for line in stdout.splitlines() if line.strip()]
        summary = None
        if lines:
            try:
                summary = json.loads(lines[-1])
            except json.JSONDecodeError:
                pass
        result = CliResult(list(argv), process.returncode, summary, stderr, time.monotonic() - started)
        self.timings[argv[0]] = self.timings.get(argv[0], 0.0) + result.seconds
        if expect is not None and result.code != expect:
            last = next((line for line in reversed(stderr.splitlines()) if line.strip()), "")
            raise RehearsalFailure(
                f"{argv[0]}: exit code {result.code}, expected {expect}: {last}\n"
                f"argv: {' '.join(argv)}\nstderr:\n{stderr[-3000:]}"
            )
        return result

    # ----- the post-deploy steps, as `run` chains them ------------------------------------------
    def k8s_args(self) -> list[str]:
        return ["--kubeconfig", str(self.kubeconfig), "--context", self.context]

    def step_kubeconfig(self) -> CliResult:
        result = self.cli(
            "kubeconfig", "--outputs", str(self.outputs_path), "--kubeconfig", str(self.kubeconfig), "--json"
        )
        assert self.k8s is not None and result.summary is not None
        if result.summary["endpoint"] != self.k8s.url:
            raise RehearsalFailure(
                f"kubeconfig: wrote endpoint {result.summary['endpoint']}, but the EKS cluster "
                f"the stacks created serves {self.k8s.url}"
            )
        self.context = result.summary["context"]
        return result

    def step_wait_nodes(self, timeout: float = 60) -> CliResult:
        """Started while the cluster has no node yet (HyperPod reports InService first); the nodes join
        once the step has looked for them at least once."""
        assert self.k8s is not None
        process = self.start_cli(
            "wait-nodes",
            *self.k8s_args(),
            "--cluster-name",
            self.output(output_keys.HYPERPOD_CLUSTER_NAME),
            "--region",
            self.output(output_keys.REGION),
            "--timeout",
            str(timeout),
            "--poll-interval",
            "0.2",
            "--json",
        )
        deadline = time.monotonic() + timeout
        while not any(r.path == "/api/v1/nodes" for r in list(self.k8s.requests)):
            if process.poll() is not None or time.monotonic() > deadline:
                return self.cli("wait-nodes", process=process)  # fails with the step's own message
            time.sleep(0.05)
        self.register_hyperpod_nodes()
        return self.cli("wait-nodes", process=process)

    def step_label_gpus(self, *, expected_changes: frozenset[str] = frozenset()) -> CliResult:
        """``label-gpus``; the nodes it changes must be exactly ``expected_changes``. Nodes HyperPod
        labelled from the construct's KubernetesConfig.Labels must need no change."""
        result = self.cli(
            "label-gpus", *self.k8s_args(), "--cluster-name", self.output(output_keys.HYPERPOD_CLUSTER_NAME), "--json"
        )
        assert result.summary is not None
        changed = {c["node"]: c for c in result.summary["changed"]}
        unexpected = sorted(set(changed) - expected_changes)
        if unexpected:
            detail = "; ".join(f"{n}: {changed[n]['old']} -> {changed[n]['new']}" for n in unexpected)
            raise RehearsalFailure(
                f"label-gpus: had to relabel {len(unexpected)} node(s) that HyperPod labelled from "
                f"the construct's KubernetesConfig.Labels, so the construct and the CLI disagree: {detail}"
            )
        missing = sorted(expected_changes - set(changed))
        if missing:
            raise RehearsalFailure(f"label-gpus: left {', '.join(missing)} unlabelled")
        return result

    def step_check(self) -> CliResult:
        return self.cli(
            "check", *self.k8s_args(), "--cluster-name", self.output(output_keys.HYPERPOD_CLUSTER_NAME), "--json"
        )

    def step_submit_validation(self, *tasks: Path) -> CliResult:
        return self.cli("submit", *map(str, tasks), "--validate-only", *self.k8s_args(), "--json")

    def seed_skypilot_catalog(self) -> Path:
        """SkyPilot's optimizer reads ``common/accelerators.csv`` and ``metadata.csv`` and downloads them
        from GitHub when missing; the rows are built from moto's EC2 instance-type data instead (every
        GPU AWS lists, with its memory), not from the task or the project's GPU table. Read from the
        data module moto serves DescribeInstanceTypes from: paging 1,400 types over HTTP takes seconds."""
        from moto.ec2.models.instance_types import INSTANCE_TYPES

        gpus: dict[str, tuple[float, str]] = {}
        for instance_type in INSTANCE_TYPES.values():
            for gpu in instance_type.get("GpuInfo", {}).get("Gpus", []):
                gpus.setdefault(gpu["Name"], (gpu["MemoryInfo"]["SizeInMiB"] / 1024, gpu["Manufacturer"]))
        catalog = self.home / ".sky" / "catalogs" / "v8" / "common"
        catalog.mkdir(parents=True, exist_ok=True)
        (catalog / "accelerators.csv").write_text(
            "AcceleratorName,Clouds\n" + "".join(f"{name},Kubernetes\n" for name in sorted(gpus))
        )
        (catalog / "metadata.csv").write_text(
            "AcceleratorName,MemoryGB,Manufacturer\n"
            + "".join(f"{name},{memory:g},{maker}\n" for name, (memory, maker) in sorted(gpus.items()))
        )
        return catalog

    def step_launch_dryrun(self, task: Path) -> dict[str, Any]:
        """What the SkyPilot API server does with ``submit``'s launch, stopping where it would create
        the pod (``sky_launch_dryrun``); RehearsalFailure if SkyPilot finds nothing to run it on."""
        started = time.monotonic()
        completed = subprocess.run(
            [
                sys.executable,
                "-m",
                "tests.rehearsal.sky_launch_dryrun",
                str(task),
                "--kubeconfig",
                str(self.kubeconfig),
                "--context",
                self.context,
            ],
            cwd=REPO,
            env=self.cli_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        self.timings["launch-dryrun"] = time.monotonic() - started
        lines = completed.stdout.strip().splitlines()
        result = json.loads(lines[-1]) if lines else {"error": "no result line"}
        if completed.returncode != 0 or "error" in result:
            raise RehearsalFailure(f"launch dryrun of {task.name}: {result.get('error')}\n{completed.stderr[-3000:]}")
        return result

    # ----- step: delete -------------------------------------------------------------------------
    def destroy(self) -> None:
        """``cdk destroy`` of the HyperPod stack: the custom resource's Delete, through the Provider framework."""
        started = time.monotonic()
        stack_name, logical_id = self.hyperpod_resource
        try:
            self.stacks.delete(stack_name, logical_id)
        except DeploymentFailed as exc:
            raise RehearsalFailure(f"destroy {stack_name}: {exc}") from exc
        self.timings["destroy"] = time.monotonic() - started


def _bucket_exists(s3, bucket: str) -> bool:
    try:
        s3.head_bucket(Bucket=bucket)
        return True
    except s3.exceptions.ClientError:
        return False
