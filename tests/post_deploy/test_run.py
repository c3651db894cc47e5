"""``run``: every step in order, end to end, against loopback stand-ins for every service.

- AWS: moto in-process (EKS DescribeCluster, SageMaker HyperPod DescribeCluster, STS). The EKS
  cluster's endpoint is the Kubernetes double's URL, so the kubeconfig the first step writes is
  the one every later step (and SkyPilot) uses.
- Kubernetes: the loopback API double (``tests/k8s_double``), authenticating like EKS: a bearer
  token is accepted when its presigned STS URL, replayed with the cluster-name header, returns a
  caller identity. The token comes from our exec plugin, run by the kubernetes client as a
  subprocess, exactly as in production.
- SkyPilot API server: ``sky_api_double`` (the real SDK on the client side).

Inputs come the two ways the two deploy paths provide them: the ``cdk deploy --outputs-file``
JSON and the pipeline's environment variables.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import boto3
import pytest
import requests
import yaml
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.eks.models import eks_backends
from sky.server import common as server_common

from config import outputs as keys
from config.gpu_types import ACCELERATOR_LABEL
from post_deploy.cli import main
from post_deploy.exit_codes import ExitCode
from tests.k8s_double import seed
from tests.k8s_double.server import K8sDouble
from tests.post_deploy.sky_api_double import Scenario, SkyApiDouble

REPO = Path(__file__).resolve().parents[2]
REGION = "us-west-2"
EKS = "hp-eks"
HYPERPOD = "hp-test"
SMOKE = str(REPO / "sky_tasks" / "smoke.yaml")
STEPS = ["kubeconfig", "wait-nodes", "label-gpus", "check", "submit"]


class EksAuthK8sDouble(K8sDouble):
    """The Kubernetes double behind EKS-style authentication (aws-iam-authenticator's check)."""

    def __init__(self, cluster_name: str, **kwargs):
        super().__init__(**kwargs)
        self.cluster_name = cluster_name
        self.sts_checks = 0

    def handle(self, request, authorization):
        prefix = "Bearer k8s-aws-v1."
        if authorization and authorization.startswith(prefix):
            body = authorization[len(prefix) :]
            url = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
            reply = requests.get(url, headers={"x-k8s-aws-id": self.cluster_name}, timeout=10)
            self.sts_checks += 1
            if reply.status_code == 200 and "<GetCallerIdentityResult>" in reply.text:
                authorization = f"Bearer {self.token}"  # authenticated: proceed as the double's user
        return super().handle(request, authorization)


def _clear_sdk_caches() -> None:
    for cached in (
        server_common.get_server_url,
        server_common.is_api_server_local,
        server_common.get_api_server_status_response,
    ):
        cached.cache_clear()


@pytest.fixture
def cluster(aws_env, skypilot_env, monkeypatch):
    """A deployed stack as the post-deploy step finds it: EKS + HyperPod in moto, two GPU nodes
    (no SkyPilot label yet) in the Kubernetes double, the SkyPilot API double."""
    for var in ("SKYPILOT_API_SERVER_ENDPOINT", "SKYPILOT_API_SERVER_LOCAL_PORT", "AWS_ENDPOINT_URL", *FIELDS_ENV):
        monkeypatch.delenv(var, raising=False)
    with mock_aws(), EksAuthK8sDouble(EKS) as api, SkyApiDouble() as sky_api:
        boto3.client("eks", region_name=REGION).create_cluster(
            name=EKS,
            roleArn="arn:aws:iam::123456789012:role/eks",
            version="1.33",
            resourcesVpcConfig={"subnetIds": ["subnet-0a"]},
        )
        eks_backends[DEFAULT_ACCOUNT_ID][REGION].clusters[EKS].endpoint = api.url
        boto3.client("sagemaker", region_name=REGION).create_cluster(
            ClusterName=HYPERPOD,
            InstanceGroups=[
                {
                    "InstanceGroupName": "worker-group-1",
                    "InstanceType": "ml.p5.48xlarge",
                    "InstanceCount": 2,
                    "LifeCycleConfig": {"SourceS3Uri": "s3://sagemaker-hp-lifecycle/", "OnCreate": "on_create.sh"},
                    "ExecutionRole": "arn:aws:iam::123456789012:role/hp-exec",
                    "ThreadsPerCore": 1,
                }
            ],
            Orchestrator={"Eks": {"ClusterArn": f"arn:aws:eks:{REGION}:123456789012:cluster/{EKS}"}},
            VpcConfig={"SecurityGroupIds": ["sg-0a"], "Subnets": ["subnet-0a"]},
        )
        for _ in range(2):
            api.add_node(seed.hyperpod_node("ml.p5.48xlarge", cluster=HYPERPOD))
        api.add_node(seed.system_node())
        monkeypatch.setenv("SKYPILOT_API_SERVER_ENDPOINT", sky_api.url)
        _clear_sdk_caches()
        yield api, sky_api
    _clear_sdk_caches()


FIELDS_ENV = (
    keys.REGION,
    keys.EKS_CLUSTER_NAME,
    keys.EKS_CLUSTER_ARN,
    keys.HYPERPOD_CLUSTER_NAME,
    keys.HYPERPOD_CLUSTER_ARN,
    keys.LIFECYCLE_BUCKET_NAME,
)


def outputs_file(tmp_path: Path) -> str:
    path = tmp_path / "cdk-outputs.json"
    path.write_text(
        json.dumps(
            {
                "HpNetwork": {"VpcId": "vpc-0a"},
                "HpEks": {keys.EKS_CLUSTER_NAME: EKS, keys.REGION: REGION},
                "HpHyperPod": {
                    keys.HYPERPOD_CLUSTER_NAME: HYPERPOD,
                    keys.LIFECYCLE_BUCKET_NAME: "sagemaker-hp-lifecycle",
                },
            }
        )
    )
    return str(path)


def run_summary(capsys) -> dict:
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, f"stdout must be one JSON summary, got {out!r}"
    return json.loads(out[0])


def test_run_from_the_outputs_file_goes_from_stack_outputs_to_a_finished_job(cluster, tmp_path, capsys):
    api, sky_api = cluster
    kubeconfig = tmp_path / "run-kubeconfig"
    code = main(
        [
            "run",
            "--outputs",
            outputs_file(tmp_path),
            "--kubeconfig",
            str(kubeconfig),
            "--tasks",
            SMOKE,
            "--down",
            "--json",
        ]
    )

    summary = run_summary(capsys)
    assert code == ExitCode.OK, summary
    assert [s["step"] for s in summary["steps"]] == STEPS
    assert all(s["exit_code"] == 0 for s in summary["steps"])
    assert summary["context"] == EKS and summary["outputs"][keys.HYPERPOD_CLUSTER_NAME] == HYPERPOD
    # kubeconfig: the context points at the cluster endpoint and authenticates through our plugin.
    written = yaml.safe_load(kubeconfig.read_text())
    assert written["current-context"] == EKS
    assert written["clusters"][0]["cluster"]["server"] == api.url
    assert api.sts_checks > 0
    # label-gpus labelled both GPU nodes for SkyPilot; the system node was left alone.
    labels = {n["metadata"]["name"]: n["metadata"]["labels"].get(ACCELERATOR_LABEL) for n in api.nodes()}
    assert sorted(v for v in labels.values() if v) == ["h100", "h100"]
    # check saw every GPU; submit ran the smoke task on the context and tore it down.
    by_step = {s["step"]: s["summary"] for s in summary["steps"]}
    assert by_step["check"]["ok"] is True
    assert by_step["submit"]["tasks"][0]["torn_down"] is True
    launch = sky_api.bodies("/launch")[0]
    assert launch["cluster_name"] == "smoke"
    assert EKS in launch["override_skypilot_config"]["kubernetes"]["allowed_contexts"]


def test_run_from_pipeline_environment_variables_and_a_failing_job_passes_its_code_through(
    cluster, tmp_path, capsys, monkeypatch
):
    api, sky_api = cluster
    for key, value in {
        keys.EKS_CLUSTER_NAME: EKS,
        keys.HYPERPOD_CLUSTER_NAME: HYPERPOD,
        keys.EKS_CLUSTER_ARN: f"arn:aws:eks:{REGION}:123456789012:cluster/{EKS}",
    }.items():
        monkeypatch.setenv(key, value)  # no Region: taken from the cluster ARN
    sky_api.scenario = Scenario(job_exit_code=100)
    code = main(["run", "--kubeconfig", str(tmp_path / "config"), "--tasks", SMOKE, "--json"])
    summary = run_summary(capsys)
    assert code == 100
    assert summary["exit_code"] == 100 and summary["ok"] is False
    assert [s["exit_code"] for s in summary["steps"]] == [0, 0, 0, 0, 100]
    assert summary["outputs"][keys.REGION] == REGION


def test_run_stops_at_the_first_failing_step_with_its_exit_code(cluster, tmp_path, capsys):
    api, sky_api = cluster
    for node in list(api.nodes()):
        api.remove_node(node["metadata"]["name"])  # HyperPod says 2 nodes; none has joined
    code = main(
        [
            "run",
            "--outputs",
            outputs_file(tmp_path),
            "--kubeconfig",
            str(tmp_path / "config"),
            "--node-timeout",
            "0.5",
            "--tasks",
            SMOKE,
            "--json",
        ]
    )
    summary = run_summary(capsys)
    assert code == ExitCode.NODES_TIMEOUT
    assert [s["step"] for s in summary["steps"]] == ["kubeconfig", "wait-nodes"]
    assert not [r for r in api.requests if r.method == "PATCH"]  # label-gpus never ran
    assert sky_api.calls == []  # nor did submit


def test_run_twice_is_idempotent(cluster, tmp_path, capsys):
    api, _ = cluster
    args = ["run", "--outputs", outputs_file(tmp_path), "--kubeconfig", str(tmp_path / "config"), "--json"]
    assert main(args) == ExitCode.OK
    capsys.readouterr()
    writes_after_first = len(api.writes())
    assert main(args) == ExitCode.OK
    summary = run_summary(capsys)
    assert [s["step"] for s in summary["steps"]] == STEPS[:-1]  # no --tasks: no submit
    assert len(api.writes()) == writes_after_first  # labels already right: nothing rewritten
    written = yaml.safe_load((tmp_path / "config").read_text())
    assert [len(written[s]) for s in ("clusters", "users", "contexts")] == [1, 1, 1]


def test_missing_outputs_are_a_usage_error_naming_them_before_anything_runs(cluster, tmp_path, capsys):
    api, sky_api = cluster
    path = tmp_path / "cdk-outputs.json"
    path.write_text(json.dumps({"HpEks": {keys.EKS_CLUSTER_NAME: EKS, keys.REGION: REGION}}))
    code = main(["run", "--outputs", str(path), "--kubeconfig", str(tmp_path / "config"), "--json"])
    assert code == ExitCode.USAGE
    assert "HyperPodClusterName" in run_summary(capsys)["error"]
    assert api.requests == [] and sky_api.calls == []
    assert not (tmp_path / "config").exists()
