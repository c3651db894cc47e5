"""``Custom::KubernetesObjects``: a few plain Kubernetes objects applied from CloudFormation and removed
again on delete, by the same function, role and EKS access entry as the Helm chart installer.

Why not a second mechanism (``aws_eks_v2.KubernetesManifest`` brings its own kubectl provider, function
and access entry per cluster): this function already authenticates to the cluster (``eks_auth``) and
runs in its VPC. Why not kubectl: server-side apply is one PATCH per object over the API, which needs no
discovery or OpenAPI download and is the same call ``kubectl apply --server-side`` makes.

- Create/Update: server-side apply of every object, in the given order (``force``: this stack owns the
  fields it sets). An Update then deletes the objects the old properties had and the new ones do not.
- Delete: every object in reverse order, then waits until each is gone, so a PersistentVolumeClaim and
  its PersistentVolume are released before CloudFormation deletes what they point to (a claim still
  mounted by a pod stays Terminating: that fails the delete with the claim named, instead of leaving a
  file system deleted under a running pod). A cluster that no longer exists means the objects are gone.
- 401/403 (a new access entry not honoured yet), 429, 5xx and connection errors are retried a bounded
  number of times; anything else fails with the API server's own message.
"""

from __future__ import annotations

import base64
import json
import logging
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

LOG = logging.getLogger(__name__)

RESOURCE_TYPE = "Custom::KubernetesObjects"
FIELD_MANAGER = "hyperpod-sky-cloudformation"
# (apiVersion, kind) -> (API path prefix, resource plural, namespaced). Kinds outside this table are
# refused at synth time by the construct, so a typo cannot reach a cluster.
KINDS: dict[tuple[str, str], tuple[str, str, bool]] = {
    ("v1", "Namespace"): ("/api/v1", "namespaces", False),
    ("v1", "ConfigMap"): ("/api/v1", "configmaps", True),
    ("v1", "PersistentVolume"): ("/api/v1", "persistentvolumes", False),
    ("v1", "PersistentVolumeClaim"): ("/api/v1", "persistentvolumeclaims", True),
    ("storage.k8s.io/v1", "StorageClass"): ("/apis/storage.k8s.io/v1", "storageclasses", False),
    # HyperPod's managed Karpenter (constructs/karpenter_autoscaling): CRDs HyperPod installs with autoscaling.
    ("karpenter.sagemaker.amazonaws.com/v1", "HyperpodNodeClass"): (
        "/apis/karpenter.sagemaker.amazonaws.com/v1",
        "hyperpodnodeclasses",
        False,
    ),
    ("karpenter.sh/v1", "NodePool"): ("/apis/karpenter.sh/v1", "nodepools", False),
}
_RETRYABLE = {401, 403, 429, 500, 502, 503, 504}


class KubernetesApiError(RuntimeError):
    """The API server refused a request (or kept failing); the message carries its own."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ObjectRef:
    api_version: str
    kind: str
    name: str
    namespace: str | None

    @classmethod
    def of(cls, manifest: dict) -> ObjectRef:
        key = (manifest.get("apiVersion"), manifest.get("kind"))
        if key not in KINDS:
            raise ValueError(f"unsupported object {key[1]} ({key[0]}); supported: {supported_kinds()}")
        meta = manifest.get("metadata") or {}
        if not meta.get("name"):
            raise ValueError(f"{key[1]} without metadata.name")
        namespaced = KINDS[key][2]
        namespace = meta.get("namespace") or ("default" if namespaced else None)
        if not namespaced and meta.get("namespace"):
            raise ValueError(f"{key[1]} {meta['name']} is cluster-scoped but names namespace {meta['namespace']}")
        return cls(key[0], key[1], meta["name"], namespace)

    @property
    def path(self) -> str:
        prefix, plural, _ = KINDS[(self.api_version, self.kind)]
        scope = f"/namespaces/{self.namespace}" if self.namespace else ""
        return f"{prefix}{scope}/{plural}/{self.name}"

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"


def supported_kinds() -> str:
    return ", ".join(f"{kind} ({api})" for api, kind in KINDS)


def parse_manifests(text: str) -> list[dict]:
    manifests = json.loads(text)
    if not isinstance(manifests, list) or not all(isinstance(m, dict) for m in manifests):
        raise ValueError("property Manifests must be a JSON list of objects")
    refs = [ObjectRef.of(m) for m in manifests]
    if len(set(refs)) != len(refs):
        raise ValueError("property Manifests names an object twice")
    return manifests


class KubeApi:
    """The few REST calls this needs, with a fresh bearer token per request (tokens live 15 minutes)."""

    def __init__(
        self,
        endpoint: str,
        certificate_authority_data: str | None,
        token: Callable[[], str],
        *,
        attempts: int = 8,
        delay: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        timeout: float = 30.0,
    ):
        self.endpoint = endpoint.rstrip("/")
        self.token, self.attempts, self.delay, self.sleep, self.timeout = token, attempts, delay, sleep, timeout
        self._ssl = None
        if endpoint.startswith("https://"):
            cadata = base64.b64decode(certificate_authority_data).decode() if certificate_authority_data else None
            self._ssl = ssl.create_default_context(cadata=cadata)

    def request(self, method: str, path: str, *, body: Any = None, content_type: str | None = None, query=None):
        """Returns (status, decoded body); 404 is returned, other errors retried or raised."""
        url = self.endpoint + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        data = json.dumps(body).encode() if body is not None else None
        last = ""
        for attempt in range(1, self.attempts + 1):
            headers = {"Authorization": f"Bearer {self.token()}", "Accept": "application/json"}
            if content_type:
                headers["Content-Type"] = content_type
            req = urllib.request.Request(url, data=data, method=method, headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=self.timeout, context=self._ssl) as resp:
                    return resp.status, _json(resp.read())
            except urllib.error.HTTPError as err:
                payload = _json(err.read())
                if err.code == 404:
                    return 404, payload
                message = (payload or {}).get("message") if isinstance(payload, dict) else None
                last = f"{method} {path}: HTTP {err.code}: {message or err.reason}"
                if err.code not in _RETRYABLE:
                    raise KubernetesApiError(last, err.code) from None
                retry_after = err.headers.get("Retry-After")
                wait = float(retry_after) if retry_after and retry_after.isdigit() else self.delay * attempt
            except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
                last = f"{method} {path}: {getattr(err, 'reason', err)}"
                wait = self.delay * attempt
            if attempt < self.attempts:
                LOG.warning("%s (attempt %d/%d), retrying in %.0fs", last, attempt, self.attempts, wait)
                self.sleep(wait)
        raise KubernetesApiError(f"gave up after {self.attempts} attempts: {last}")


def apply(api: KubeApi, manifest: dict) -> dict:
    ref = ObjectRef.of(manifest)
    status, body = api.request(
        "PATCH",
        ref.path,
        body=manifest,
        content_type="application/apply-patch+yaml",  # JSON is YAML; the API server accepts it as such
        query={"fieldManager": FIELD_MANAGER, "force": "true"},
    )
    if status == 404:  # the namespace of a namespaced object does not exist
        raise KubernetesApiError(f"apply {ref}: {body.get('message') if isinstance(body, dict) else body}", 404)
    LOG.info("applied %s", ref)
    return body


def delete_and_wait(
    api: KubeApi,
    refs: list[ObjectRef],
    *,
    deadline: float,
    clock: Callable[[], float] = time.monotonic,
    poll: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Delete ``refs`` in the order given, then wait until every one is gone (or fail at ``deadline``)."""
    for ref in refs:
        status, _ = api.request(
            "DELETE", ref.path, body={"propagationPolicy": "Foreground"}, content_type="application/json"
        )
        LOG.info("deleted %s" if status != 404 else "%s was already gone", ref)
    pending = list(refs)
    while pending:
        still = []
        for ref in pending:
            status, body = api.request("GET", ref.path)
            if status != 404:
                still.append((ref, body))
        if not still:
            return
        if clock() >= deadline:
            detail = "; ".join(_why_still_there(ref, body) for ref, body in still)
            raise KubernetesApiError(f"objects still present after delete: {detail}")
        pending = [ref for ref, _ in still]
        sleep(poll)


def _why_still_there(ref: ObjectRef, body: Any) -> str:
    meta = (body or {}).get("metadata", {}) if isinstance(body, dict) else {}
    finalizers = ", ".join(meta.get("finalizers") or []) or "none"
    hint = ""
    if ref.kind == "PersistentVolumeClaim":
        hint = (
            " (a pod still mounts it: `kubectl get pods -n "
            f"{ref.namespace} -o wide` and `sky down` the SkyPilot clusters using it, then delete the stack again)"
        )
    return f"{ref} is terminating, finalizers: {finalizers}{hint}"


def handle(event: dict, api_for: Callable[[dict], KubeApi | None], *, deadline: float) -> dict:
    """``api_for(props)`` returns the API of the cluster the properties name, or None if it is gone."""
    request, props = event["RequestType"], event["ResourceProperties"]
    # A new cluster is a new resource: CloudFormation then deletes the objects from the old one.
    physical_id = f"{props['ClusterName']}/kubernetes-objects/{event['LogicalResourceId']}"
    manifests = parse_manifests(props["Manifests"])
    refs = [ObjectRef.of(m) for m in manifests]
    if request == "Delete":
        api = api_for(props)
        if api is None:
            LOG.info("EKS cluster %s no longer exists; its objects are gone with it", props["ClusterName"])
        else:
            delete_and_wait(api, list(reversed(refs)), deadline=deadline, sleep=api.sleep)
        return {"PhysicalResourceId": event.get("PhysicalResourceId", physical_id)}
    if request not in ("Create", "Update"):
        raise ValueError(f"unknown RequestType {request!r}")
    api = api_for(props)
    if api is None:
        raise KubernetesApiError(f"EKS cluster {props['ClusterName']} does not exist")
    for manifest in manifests:
        apply(api, manifest)
    if request == "Update":
        old = event.get("OldResourceProperties") or {}
        if old.get("ClusterName") == props["ClusterName"] and old.get("Manifests"):
            gone = [r for r in (ObjectRef.of(m) for m in parse_manifests(old["Manifests"])) if r not in refs]
            if gone:
                delete_and_wait(api, list(reversed(gone)), deadline=deadline, sleep=api.sleep)
    return {"PhysicalResourceId": physical_id, "Data": {"Objects": ", ".join(str(r) for r in refs)}}


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except json.JSONDecodeError:
        return raw.decode(errors="replace")
