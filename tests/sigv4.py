"""SigV4 query-string signatures recomputed from the AWS spec, not from botocore, so tests of EKS
tokens (the Helm installer's and the post-deploy CLI's) can check a signature independently."""

from __future__ import annotations

import hashlib
import hmac
import urllib.parse


def sigv4_signature(url: urllib.parse.SplitResult, headers: dict[str, str], secret: str) -> str:
    """Recompute a SigV4 query-string signature from the spec (not botocore) for the given headers."""
    query = urllib.parse.parse_qsl(url.query, keep_blank_values=True)
    params = sorted((k, v) for k, v in query if k != "X-Amz-Signature")
    canonical_query = "&".join(
        f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}" for k, v in params
    )
    qs = dict(query)
    signed = qs["X-Amz-SignedHeaders"].split(";")
    canonical_headers = "".join(f"{h}:{headers[h].strip()}\n" for h in signed)
    canonical_request = "\n".join(
        [
            "GET",
            url.path or "/",
            canonical_query,
            canonical_headers,
            qs["X-Amz-SignedHeaders"],
            hashlib.sha256(b"").hexdigest(),
        ]
    )
    date, region, service, _ = qs["X-Amz-Credential"].split("/")[1:]
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", qs["X-Amz-Date"], scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    key = f"AWS4{secret}".encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
