"""``token``: the EKS bearer token as a client-go ExecCredential, without the AWS CLI.

The kubeconfig this project writes authenticates through the standard exec plugin mechanism, and
the plugin is this subcommand run by an absolute Python path: CodeBuild images, the SkyPilot API
server (which does not inherit the caller's PATH) and slim containers then need no ``aws`` binary.
The token is what ``aws eks get-token`` produces: a presigned STS GetCallerIdentity URL that signs
the ``x-k8s-aws-id: <cluster>`` header, base64url-encoded behind ``k8s-aws-v1.``; EKS replays the
URL against STS to learn the caller's identity.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json

from botocore.exceptions import BotoCoreError, ClientError

from post_deploy.common import AWS_RETRY_CONFIG, StepError, aws_session
from post_deploy.exit_codes import ExitCode

CLUSTER_ID_HEADER = "x-k8s-aws-id"
TOKEN_PREFIX = "k8s-aws-v1."
EXEC_API_VERSION = "client.authentication.k8s.io/v1beta1"
URL_EXPIRES_SECONDS = 60
# EKS accepts a token for 15 minutes; ask clients to refresh a minute early, as the AWS CLI does.
TOKEN_LIFETIME = dt.timedelta(minutes=14)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "token",
        help="print an EKS token as ExecCredential JSON (the kubeconfig's exec plugin)",
        description="Print an EKS bearer token as a client.authentication.k8s.io/v1beta1 ExecCredential. "
        "kubectl, the kubernetes client and SkyPilot run this through the kubeconfig written by "
        "the `kubeconfig` step.",
    )
    parser.add_argument("--cluster-name", required=True, help="EKS cluster name (signed into the token)")
    parser.add_argument("--region", help="AWS region of the cluster's STS endpoint")
    parser.add_argument("--profile", help="AWS profile to sign with")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    credential = exec_credential(args.cluster_name, region=args.region, profile=args.profile)
    print(json.dumps(credential))
    return ExitCode.OK


def exec_credential(
    cluster_name: str, region: str | None = None, profile: str | None = None, now: dt.datetime | None = None
) -> dict:
    now = now or dt.datetime.now(dt.UTC)
    return {
        "kind": "ExecCredential",
        "apiVersion": EXEC_API_VERSION,
        "spec": {},
        "status": {
            "expirationTimestamp": (now + TOKEN_LIFETIME).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "token": generate_token(cluster_name, region=region, profile=profile),
        },
    }


def generate_token(cluster_name: str, region: str | None = None, profile: str | None = None) -> str:
    session = aws_session(profile, region)
    if session.get_credentials() is None:
        raise StepError(
            ExitCode.AWS_API,
            "no AWS credentials found to sign the EKS token "
            "(set AWS_PROFILE/--profile or the AWS_* credential variables)",
        )
    sts = session.client("sts", config=AWS_RETRY_CONFIG)
    # The header must be part of the signature but is not a GetCallerIdentity parameter: carry it
    # from the call's params to the request context, then into the headers right before signing.
    sts.meta.events.register("provide-client-params.sts.GetCallerIdentity", _move_cluster_id_to_context)
    sts.meta.events.register("before-sign.sts.GetCallerIdentity", _add_cluster_id_header)
    try:
        url = sts.generate_presigned_url(
            "get_caller_identity",
            Params={CLUSTER_ID_HEADER: cluster_name},
            ExpiresIn=URL_EXPIRES_SECONDS,
            HttpMethod="GET",
        )
    except (BotoCoreError, ClientError) as exc:
        raise StepError(ExitCode.AWS_API, f"could not sign the EKS token for {cluster_name!r}: {exc}") from None
    return TOKEN_PREFIX + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


def _move_cluster_id_to_context(params: dict, context: dict, **_) -> None:
    if CLUSTER_ID_HEADER in params:
        context[CLUSTER_ID_HEADER] = params.pop(CLUSTER_ID_HEADER)


def _add_cluster_id_header(request, **_) -> None:
    if CLUSTER_ID_HEADER in request.context:
        request.headers[CLUSTER_ID_HEADER] = request.context[CLUSTER_ID_HEADER]
