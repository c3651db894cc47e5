"""The Kubernetes API double behind the check EKS makes on a bearer token.

EKS (aws-iam-authenticator) accepts ``k8s-aws-v1.<base64url presigned STS GetCallerIdentity
URL>`` when STS, given the URL back with the header ``x-k8s-aws-id: <its own cluster name>``,
verifies the signature and answers with a caller identity. moto's STS does not verify signatures,
so this double does that part itself (with the rehearsal's fake secret) before replaying the URL
against moto for the caller identity: a token signed for another cluster name, or not signed over
the header, gets 401.
"""

from __future__ import annotations

import base64
import urllib.parse

import requests

from tests.k8s_double.server import K8sDouble
from tests.sigv4 import sigv4_signature

TOKEN_PREFIX = "Bearer k8s-aws-v1."
CLUSTER_ID_HEADER = "x-k8s-aws-id"


class EksAuthK8sDouble(K8sDouble):
    def __init__(self, cluster_name: str, *, secret_key: str = "testing", **kwargs):
        super().__init__(**kwargs)
        self.cluster_name, self.secret_key = cluster_name, secret_key
        self.identities: list[str] = []  # caller ARNs of accepted tokens
        self.rejections: list[str] = []  # why tokens were refused

    def handle(self, request, authorization):
        if authorization and authorization.startswith(TOKEN_PREFIX):
            identity = self._verify(authorization[len(TOKEN_PREFIX) :])
            if identity is not None:
                self.identities.append(identity)
                authorization = f"Bearer {self.token}"  # authenticated: proceed as the double's user
        return super().handle(request, authorization)

    def _verify(self, body: str) -> str | None:
        try:
            url = urllib.parse.urlsplit(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode())
        except ValueError:
            self.rejections.append("token is not base64url")
            return None
        query = dict(urllib.parse.parse_qsl(url.query))
        signed_headers = query.get("X-Amz-SignedHeaders", "").split(";")
        if query.get("Action") != "GetCallerIdentity" or CLUSTER_ID_HEADER not in signed_headers:
            self.rejections.append(f"not a GetCallerIdentity URL signed over {CLUSTER_ID_HEADER}")
            return None
        headers = {"host": url.netloc, CLUSTER_ID_HEADER: self.cluster_name}
        if sigv4_signature(url, headers, self.secret_key) != query.get("X-Amz-Signature"):
            self.rejections.append(f"signature does not verify for {CLUSTER_ID_HEADER}={self.cluster_name}")
            return None
        # moto_server picks the service from an Authorization header's credential scope only (a query-
        # signed URL would reach its S3 default), so the same SigV4 fields travel as a header too.
        authorization = (
            f"AWS4-HMAC-SHA256 Credential={query['X-Amz-Credential']}, "
            f"SignedHeaders={query['X-Amz-SignedHeaders']}, Signature={query['X-Amz-Signature']}"
        )
        reply = requests.get(
            url.geturl(), headers={CLUSTER_ID_HEADER: self.cluster_name, "Authorization": authorization}, timeout=10
        )
        if reply.status_code != 200 or "<GetCallerIdentityResult>" not in reply.text:
            self.rejections.append(f"STS answered {reply.status_code}")
            return None
        return reply.text.split("<Arn>", 1)[1].split("</Arn>", 1)[0]
