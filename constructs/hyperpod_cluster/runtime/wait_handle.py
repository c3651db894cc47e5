"""Signals a CloudFormation WaitConditionHandle, the only way to hold ``cdk deploy`` beyond one hour.

The handle is a presigned S3 URL. CloudFormation expects a PUT whose body is
``{"Status": "SUCCESS"|"FAILURE", "Reason": ..., "UniqueId": ..., "Data": ...}`` and no content type (the
URL is signed without one). Signals with the same UniqueId replace each other, so a retried signal is safe.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

# CloudFormation shows the reason in the stack events; long HyperPod messages are cut, not dropped.
MAX_REASON = 1000
MAX_DATA = 4000


class SignalError(RuntimeError):
    """The handle did not accept the signal; the caller's retry policy decides what happens next."""


def send(url: str, *, success: bool, reason: str, unique_id: str, data: str, timeout: float = 10.0) -> dict:
    body = {
        "Status": "SUCCESS" if success else "FAILURE",
        "Reason": _cut(reason, MAX_REASON),
        "UniqueId": unique_id,
        "Data": _cut(data, MAX_DATA),
    }
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode("utf-8"),
        method="PUT",
        headers={"Content-Type": ""},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - URL comes from CloudFormation
            response.read()
    except urllib.error.HTTPError as exc:
        raise SignalError(f"WaitConditionHandle answered HTTP {exc.code}: {exc.read()[:200]!r}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise SignalError(f"could not reach the WaitConditionHandle: {exc}") from None
    return body


def _cut(text: str, limit: int) -> str:
    text = " ".join(str(text).split()) if "\n" in str(text) else str(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."
