"""EKS authentication for helm without the AWS CLI or aws-iam-authenticator.

An EKS bearer token is a presigned STS GetCallerIdentity URL whose signature covers the header
``x-k8s-aws-id: <cluster name>``, base64url-encoded without padding behind ``k8s-aws-v1.``. EKS
replays the URL to STS to learn the caller's IAM identity, then maps it through the access entry.
botocore (present in every Lambda Python runtime) can presign it, so the layer only needs helm.
The token is short-lived, so the installer writes a fresh kubeconfig before every cluster call.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import botocore.session

TOKEN_PREFIX = "k8s-aws-v1."
CLUSTER_ID_HEADER = "x-k8s-aws-id"
# What `aws eks get-token` uses; EKS accepts a token for up to 15 minutes after signing.
PRESIGN_EXPIRES_SECONDS = 60


def bearer_token(session: botocore.session.Session, cluster_name: str, region: str) -> str:
    """A k8s-aws-v1 token for ``cluster_name`` signed with ``session``'s credentials."""
    # Regional STS endpoint: EKS in any region accepts it, and it works where the global one is off.
    session.set_config_variable("sts_regional_endpoints", "regional")
    sts = session.create_client("sts", region_name=region)

    def add_cluster_header(request, **_):
        request.headers[CLUSTER_ID_HEADER] = cluster_name

    sts.meta.events.register("before-sign.sts.GetCallerIdentity", add_cluster_header)
    url = sts.generate_presigned_url(
        "get_caller_identity", Params={}, ExpiresIn=PRESIGN_EXPIRES_SECONDS, HttpMethod="GET"
    )
    return TOKEN_PREFIX + base64.urlsafe_b64encode(url.encode("utf-8")).decode("ascii").rstrip("=")


def kubeconfig(*, cluster_name: str, endpoint: str, certificate_authority_data: str, token: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster_name,
                "cluster": {"server": endpoint, "certificate-authority-data": certificate_authority_data},
            }
        ],
        "users": [{"name": "hyperpod-helm-chart-installer", "user": {"token": token}}],
        "contexts": [
            {"name": cluster_name, "context": {"cluster": cluster_name, "user": "hyperpod-helm-chart-installer"}}
        ],
        "current-context": cluster_name,
    }


def write_kubeconfig(path: Path, **kwargs) -> Path:
    """Write the kubeconfig as JSON (valid YAML, so no YAML library is needed), readable by owner only."""
    data = json.dumps(kubeconfig(**kwargs), indent=2)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(data)
    os.replace(tmp, path)
    return path
