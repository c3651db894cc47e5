"""The ``kubeconfig`` and ``token`` steps against moto's EKS and STS, in process and as ``moto_server``.

What is checked is what kubectl and SkyPilot rely on: the file loads with the real kubernetes
client (which runs our exec plugin as a subprocess while loading), points at the cluster's
endpoint and CA, leaves other entries alone, and the token is an STS GetCallerIdentity URL that
signs the cluster-name header and that STS (moto) answers.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import boto3
import pytest
import requests
import yaml
from botocore.stub import Stubber
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from moto import mock_aws

from post_deploy.cli import main
from post_deploy.common import StepError
from post_deploy.exit_codes import ExitCode
from post_deploy.kubeconfig import PROJECT_ROOT, describe_cluster, update_kubeconfig

REPO = Path(__file__).resolve().parents[2]
REGION = "us-west-2"
CLUSTER = "hp-eks"


def create_eks_cluster(endpoint_url: str | None = None, name: str = CLUSTER) -> dict:
    eks = boto3.client("eks", region_name=REGION, endpoint_url=endpoint_url)
    return eks.create_cluster(
        name=name,
        roleArn="arn:aws:iam::123456789012:role/eks",
        version="1.33",
        resourcesVpcConfig={"subnetIds": ["subnet-0a", "subnet-0b"]},
    )["cluster"]


def loaded_configuration(path: Path, context: str | None = None) -> k8s_client.Configuration:
    configuration = k8s_client.Configuration()
    k8s_config.load_kube_config(config_file=str(path), context=context, client_configuration=configuration)
    return configuration


def decode_token(token: str) -> str:
    assert token.startswith("k8s-aws-v1.")
    body = token[len("k8s-aws-v1.") :]
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()


@pytest.fixture
def aws(monkeypatch):
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_REGION"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")


@pytest.fixture
def moto_eks(aws):
    with mock_aws():
        yield create_eks_cluster()


@pytest.fixture(scope="module")
def moto_server_url():
    """``moto_server`` as its own process on a free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                requests.get(f"{url}/moto-api/", timeout=1)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline or server.poll() is not None:
                    pytest.fail("moto_server did not start")
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


# --- in-process moto ------------------------------------------------------------------------------


def test_written_kubeconfig_loads_and_points_at_the_cluster_endpoint_and_ca(moto_eks, tmp_path):
    path = tmp_path / "kube" / "config"
    result = update_kubeconfig(CLUSTER, REGION, path=path)

    assert result["context"] == CLUSTER and result["current_context"] == CLUSTER
    configuration = loaded_configuration(path)  # runs `python -m post_deploy token` as the exec plugin
    assert configuration.host == moto_eks["endpoint"].rstrip("/")
    assert Path(configuration.ssl_ca_cert).read_bytes() == base64.b64decode(moto_eks["certificateAuthority"]["data"])
    bearer = configuration.api_key["authorization"]
    assert bearer.startswith("Bearer k8s-aws-v1.")
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_user_entry_uses_the_exec_plugin_with_this_python_and_checkout(moto_eks, tmp_path, monkeypatch):
    credentials = tmp_path / "credentials"
    credentials.write_text("[ops]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    path = tmp_path / "config"
    update_kubeconfig(CLUSTER, REGION, path=path, profile="ops")
    config = yaml.safe_load(path.read_text())
    exec_ = config["users"][0]["user"]["exec"]
    assert exec_["apiVersion"] == "client.authentication.k8s.io/v1beta1"
    assert exec_["command"] == sys.executable and os.path.isabs(exec_["command"])
    assert exec_["args"] == ["-m", "post_deploy", "token", "--cluster-name", CLUSTER, "--region", REGION]
    assert {"name": "PYTHONPATH", "value": str(PROJECT_ROOT)} in exec_["env"]
    assert {"name": "AWS_PROFILE", "value": "ops"} in exec_["env"]
    # Named like `aws eks update-kubeconfig` names them, so the two tools update the same entries.
    assert config["clusters"][0]["name"] == moto_eks["arn"] == config["users"][0]["name"]


def test_exec_plugin_works_from_any_working_directory(moto_eks, tmp_path, monkeypatch):
    path = tmp_path / "config"
    update_kubeconfig(CLUSTER, REGION, path=path)
    monkeypatch.chdir(tmp_path)  # nowhere near the checkout, as for kubectl or the SkyPilot API server
    monkeypatch.delenv("PYTHONPATH", raising=False)
    assert loaded_configuration(path).api_key["authorization"].startswith("Bearer k8s-aws-v1.")


def test_merge_keeps_other_clusters_users_and_contexts(moto_eks, tmp_path):
    path = tmp_path / "config"
    other = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "kind-dev",
        "clusters": [{"name": "kind-dev", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "kind-dev", "user": {"token": "abc"}}],
        "contexts": [{"name": "kind-dev", "context": {"cluster": "kind-dev", "user": "kind-dev"}}],
    }
    path.write_text(yaml.safe_dump(other))

    update_kubeconfig(CLUSTER, REGION, path=path)
    update_kubeconfig(CLUSTER, REGION, path=path)  # a second run replaces, never duplicates

    merged = yaml.safe_load(path.read_text())
    for section in ("clusters", "users", "contexts"):
        names = [entry["name"] for entry in merged[section]]
        assert names.count("kind-dev") == 1 and len(names) == 2
    assert merged["current-context"] == CLUSTER
    assert next(u for u in merged["users"] if u["name"] == "kind-dev") == other["users"][0]
    assert loaded_configuration(path, context="kind-dev").host == "https://127.0.0.1:6443"


def test_keep_current_context_flag_leaves_it_alone(moto_eks, tmp_path, capsys):
    path = tmp_path / "config"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "kind-dev",
                "clusters": [{"name": "kind-dev", "cluster": {"server": "https://127.0.0.1:6443"}}],
                "users": [{"name": "kind-dev", "user": {"token": "abc"}}],
                "contexts": [{"name": "kind-dev", "context": {"cluster": "kind-dev", "user": "kind-dev"}}],
            }
        )
    )
    code = main(
        [
            "kubeconfig",
            "--cluster-name",
            CLUSTER,
            "--region",
            REGION,
            "--kubeconfig",
            str(path),
            "--context",
            "hyperpod",
            "--keep-current-context",
            "--json",
        ]
    )
    assert code == ExitCode.OK
    summary = json.loads(capsys.readouterr().out)
    assert summary["context"] == "hyperpod" and summary["current_context"] == "kind-dev"
    assert yaml.safe_load(path.read_text())["current-context"] == "kind-dev"
    assert loaded_configuration(path, context="hyperpod").host == moto_eks["endpoint"].rstrip("/")


def test_prints_the_equivalent_aws_cli_line(moto_eks, tmp_path, capsys):
    path = tmp_path / "config"
    assert (
        main(
            ["kubeconfig", "--cluster-name", CLUSTER, "--region", REGION, "--kubeconfig", str(path), "--context", "hp"]
        )
        == ExitCode.OK
    )
    err = capsys.readouterr().err
    assert f"aws eks update-kubeconfig --name {CLUSTER} --region {REGION} --alias hp --kubeconfig {path}" in err


def test_cluster_name_and_region_come_from_the_outputs_file(moto_eks, tmp_path):
    outputs = tmp_path / "cdk-outputs.json"
    outputs.write_text(json.dumps({"HpEks": {"EksClusterName": CLUSTER, "Region": REGION}}))
    path = tmp_path / "config"
    assert main(["kubeconfig", "--outputs", str(outputs), "--kubeconfig", str(path)]) == ExitCode.OK
    assert yaml.safe_load(path.read_text())["current-context"] == CLUSTER


def test_unknown_cluster_is_an_aws_error_naming_it(moto_eks, tmp_path, capsys):
    code = main(["kubeconfig", "--cluster-name", "nope", "--region", REGION, "--kubeconfig", str(tmp_path / "c")])
    assert code == ExitCode.AWS_API
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: eks:DescribeCluster 'nope' in {REGION}: ResourceNotFoundException: No cluster found for name: nope."
    ]
    assert not (tmp_path / "c").exists()


def test_a_cluster_that_is_not_active_yet_is_not_ready(aws):
    eks = boto3.client("eks", region_name=REGION)
    with Stubber(eks) as stub:
        stub.add_response(
            "describe_cluster",
            {
                "cluster": {
                    "name": CLUSTER,
                    "arn": "arn:aws:eks:us-west-2:123456789012:cluster/hp-eks",
                    "status": "CREATING",
                }
            },
            {"name": CLUSTER},
        )
        with pytest.raises(StepError) as err:
            describe_cluster(CLUSTER, REGION, eks=eks)
    assert err.value.code == ExitCode.CLUSTER_NOT_READY
    assert "is CREATING" in err.value.message


def test_an_unreadable_existing_kubeconfig_is_a_usage_error_and_is_not_overwritten(moto_eks, tmp_path, capsys):
    path = tmp_path / "config"
    path.write_text("clusters: [unclosed\n")
    code = main(["kubeconfig", "--cluster-name", CLUSTER, "--region", REGION, "--kubeconfig", str(path)])
    assert code == ExitCode.USAGE
    assert "cannot be read as YAML" in capsys.readouterr().err
    assert path.read_text() == "clusters: [unclosed\n"


def test_an_unwritable_kubeconfig_path_is_a_usage_error(moto_eks, capsys):
    code = main(["kubeconfig", "--cluster-name", CLUSTER, "--region", REGION, "--kubeconfig", "/dev/null/config"])
    assert code == ExitCode.USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot write kubeconfig '/dev/null/config': ")


def test_missing_cluster_name_is_a_usage_error(aws, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("EksClusterName", raising=False)
    assert main(["kubeconfig", "--region", REGION, "--kubeconfig", str(tmp_path / "c")]) == ExitCode.USAGE
    assert "no EKS cluster name" in capsys.readouterr().err


# --- token ------------------------------------------------------------------------------------------


def test_token_subcommand_prints_an_exec_credential_with_a_presigned_sts_url(aws, capsys):
    assert main(["token", "--cluster-name", CLUSTER, "--region", REGION]) == ExitCode.OK
    credential = json.loads(capsys.readouterr().out)
    assert credential["kind"] == "ExecCredential"
    assert credential["apiVersion"] == "client.authentication.k8s.io/v1beta1"
    assert credential["status"]["expirationTimestamp"].endswith("Z")
    url = urlparse(decode_token(credential["status"]["token"]))
    query = parse_qs(url.query)
    assert url.scheme == "https" and url.hostname == f"sts.{REGION}.amazonaws.com"
    assert query["Action"] == ["GetCallerIdentity"] and query["X-Amz-Expires"] == ["60"]
    assert query["X-Amz-SignedHeaders"] == ["host;x-k8s-aws-id"]
    assert query["X-Amz-Credential"][0].split("/")[2:4] == [REGION, "sts"]


def test_sts_answers_the_token_url_with_the_caller_identity(moto_eks, tmp_path):
    """EKS authenticates a request by replaying the token's URL (with the cluster header) against
    STS; moto's STS, reached through its in-process interception of the AWS hostnames, does the
    same. (``moto_server`` cannot: it routes a header-less presigned GET to S3.)"""
    path = tmp_path / "config"
    update_kubeconfig(CLUSTER, REGION, path=path)
    url = decode_token(loaded_configuration(path).api_key["authorization"].removeprefix("Bearer "))
    reply = requests.get(url, headers={"x-k8s-aws-id": CLUSTER}, timeout=10)
    assert reply.status_code == 200, reply.text
    assert "<Arn>arn:aws:sts::123456789012:user/moto</Arn>" in reply.text


def test_token_without_credentials_fails_with_an_aws_error(monkeypatch, capsys):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert main(["token", "--cluster-name", CLUSTER, "--region", REGION]) == ExitCode.AWS_API
    assert "no AWS credentials" in capsys.readouterr().err


# --- moto_server (out of process, AWS_ENDPOINT_URL) ---------------------------------------------------


def test_against_moto_server_the_cli_writes_a_kubeconfig_whose_token_sts_answers(aws, moto_server_url, tmp_path):
    cluster = create_eks_cluster(endpoint_url=moto_server_url, name="hp-eks-server")
    env = {**os.environ, "AWS_ENDPOINT_URL": moto_server_url}
    path = tmp_path / "config"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "post_deploy",
            "kubeconfig",
            "--cluster-name",
            "hp-eks-server",
            "--region",
            REGION,
            "--kubeconfig",
            str(path),
            "--json",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["endpoint"] == cluster["endpoint"]

    os.environ["AWS_ENDPOINT_URL"] = moto_server_url  # the exec plugin inherits it, as it would in CI
    try:
        configuration = loaded_configuration(path)
    finally:
        del os.environ["AWS_ENDPOINT_URL"]
    assert configuration.host == cluster["endpoint"].rstrip("/")
    assert Path(configuration.ssl_ca_cert).read_bytes() == base64.b64decode(cluster["certificateAuthority"]["data"])

    url = decode_token(configuration.api_key["authorization"].removeprefix("Bearer "))
    assert url.startswith(moto_server_url + "/?Action=GetCallerIdentity")
    assert "X-Amz-SignedHeaders=host%3Bx-k8s-aws-id" in url
