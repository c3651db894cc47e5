"""The EKS bearer token: a k8s-aws-v1 presigned STS GetCallerIdentity URL bound to the cluster name."""

from __future__ import annotations

import base64
import json
import stat
import urllib.parse

import botocore.session
import pytest

from constructs.hyperpod_helm_chart.runtime.helm_chart_installer import eks_auth
from tests.sigv4 import sigv4_signature


def _decode(token: str) -> urllib.parse.SplitResult:
    assert token.startswith("k8s-aws-v1.")
    body = token[len("k8s-aws-v1.") :]
    assert "=" not in body  # unpadded base64url, as aws-iam-authenticator expects
    return urllib.parse.urlsplit(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode())


@pytest.mark.parametrize(
    "region, host",
    [
        ("us-west-2", "sts.us-west-2.amazonaws.com"),
        ("us-east-1", "sts.us-east-1.amazonaws.com"),
        ("cn-north-1", "sts.cn-north-1.amazonaws.com.cn"),
    ],
)
def test_token_is_a_presigned_regional_get_caller_identity_url(region, host):
    token = eks_auth.bearer_token(botocore.session.Session(), "hp-eks", region)
    url = _decode(token)
    qs = dict(urllib.parse.parse_qsl(url.query))
    assert (url.scheme, url.netloc, url.path) == ("https", host, "/")
    assert qs["Action"] == "GetCallerIdentity" and qs["Version"] == "2011-06-15"
    assert qs["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert qs["X-Amz-Credential"].startswith("testing/") and qs["X-Amz-Credential"].endswith(
        f"/{region}/sts/aws4_request"
    )
    assert qs["X-Amz-Expires"] == "60"
    assert qs["X-Amz-SignedHeaders"] == "host;x-k8s-aws-id"
    assert qs["X-Amz-Security-Token"] == "testing"


def test_signature_binds_the_cluster_name_header():
    url = _decode(eks_auth.bearer_token(botocore.session.Session(), "hp-eks", "us-west-2"))
    signature = dict(urllib.parse.parse_qsl(url.query))["X-Amz-Signature"]
    headers = {"host": url.netloc}
    assert sigv4_signature(url, {**headers, "x-k8s-aws-id": "hp-eks"}, "testing") == signature
    # EKS replays the URL with x-k8s-aws-id: <its own name>; another cluster's name does not verify.
    assert sigv4_signature(url, {**headers, "x-k8s-aws-id": "other-cluster"}, "testing") != signature


def test_token_needs_credentials(monkeypatch):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key)
    with pytest.raises(Exception, match="[Cc]redentials"):
        eks_auth.bearer_token(botocore.session.Session(), "hp-eks", "us-west-2")


def test_kubeconfig_is_owner_only_json_with_the_token(tmp_path):
    path = eks_auth.write_kubeconfig(
        tmp_path / "kubeconfig",
        cluster_name="hp-eks",
        endpoint="https://ABC.gr7.us-west-2.eks.amazonaws.com",
        certificate_authority_data="Q0FEQVRB",
        token="k8s-aws-v1.abc",
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    config = json.loads(path.read_text())
    assert config["current-context"] == "hp-eks"
    assert config["clusters"][0]["cluster"] == {
        "server": "https://ABC.gr7.us-west-2.eks.amazonaws.com",
        "certificate-authority-data": "Q0FEQVRB",
    }
    assert config["users"][0]["user"] == {"token": "k8s-aws-v1.abc"}
    assert not list(tmp_path.glob("*.tmp"))
