"""Storage objects for the Kubernetes API double: PersistentVolumes, PersistentVolumeClaims and
StorageClasses, written with server-side apply and deleted with the protection finalizers.

What it reproduces of the real API server and controllers (the behaviour the storage code relies on):

- ``PATCH`` with ``application/apply-patch+yaml`` (server-side apply) creates the object or updates the
  fields it names; ``fieldManager`` is required (400 otherwise), a namespaced object needs its namespace
  (404), and a claim's spec is immutable after creation except ``resources.requests`` (422, as the API
  server answers ``spec is immutable after creation except resources.requests ...``);
- the PV controller's static binding: a claim with ``spec.volumeName`` whose PV exists, has the same
  ``storageClassName``, offers the claim's access modes and at least its requested size (and a
  ``claimRef`` naming that claim, if any) is ``Bound`` on both sides; otherwise the claim is ``Pending``;
  a ``Retain`` volume whose claim is deleted becomes ``Released``;
- ``kubernetes.io/pvc-protection`` and ``kubernetes.io/pv-protection``: a claim a pod still mounts, or a
  volume still bound to an existing claim, gets a ``deletionTimestamp`` and stays (Terminating) until
  the pod (``remove_pod``) or the claim is gone.
"""

from __future__ import annotations

import copy
import re
import time
from typing import Any

APPLY_PATCH = "application/apply-patch+yaml"
PLURALS = {
    "persistentvolumes": ("PersistentVolume", "v1", False),
    "persistentvolumeclaims": ("PersistentVolumeClaim", "v1", True),
    "storageclasses": ("StorageClass", "storage.k8s.io/v1", False),
}
_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "": 1}
PVC_PROTECTION = "kubernetes.io/pvc-protection"
PV_PROTECTION = "kubernetes.io/pv-protection"


def quantity_bytes(value: str) -> int:
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti|Pi|)", str(value))
    if not m:
        raise ValueError(f"quantity {value!r} is not a binary-suffixed integer")
    return int(m[1]) * _UNITS[m[2]]


def _deep_merge(base: dict, patch: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class StorageObjects:
    """Mixed into ``K8sDouble``; every method runs under the double's lock."""

    # ----- direct inspection ---------------------------------------------------------------------
    def storage_object(self, plural: str, name: str, namespace: str | None = None) -> dict | None:
        with self._lock:
            obj = self._store.objects.get((plural, namespace, name))
            return copy.deepcopy(obj) if obj else None

    def storage_objects(self, plural: str) -> list[dict]:
        with self._lock:
            return [copy.deepcopy(o) for (p, _, _), o in sorted(self._store.objects.items()) if p == plural]

    def remove_pod(self, namespace: str, name: str) -> None:
        """A pod went away (as when SkyPilot's cluster is torn down): protected claims may now go."""
        with self._lock:
            self._store.pods.pop((namespace, name), None)
            self._revision += 1
            self._finish_deletions()

    # ----- HTTP handlers ---------------------------------------------------------------------------
    def _storage_list(self, request, plural: str, namespace: str | None = None) -> dict:
        kind, api_version, _ = PLURALS[plural]
        items = [
            copy.deepcopy(o)
            for (p, ns, _), o in sorted(self._store.objects.items())
            if p == plural and namespace in (None, ns)
        ]
        return {
            "kind": f"{kind}List",
            "apiVersion": api_version,
            "metadata": {"resourceVersion": str(self._revision)},
            "items": items,
        }

    def _storage_get(self, request, plural: str, name: str, namespace: str | None = None) -> dict:
        return copy.deepcopy(self._existing_object(plural, name, namespace))

    def _storage_apply(self, request, plural: str, name: str, namespace: str | None = None) -> dict:
        from tests.k8s_double.server import ApiError

        kind, api_version, namespaced = PLURALS[plural]
        if request.content_type != APPLY_PATCH:
            raise ApiError(415, f"the double accepts only {APPLY_PATCH} for {plural}")
        if not request.query.get("fieldManager"):
            raise ApiError(
                400, 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch'
            )
        body = request.body
        if not isinstance(body, dict) or body.get("kind") != kind or body.get("apiVersion") != api_version:
            raise ApiError(400, f"the body must be a {api_version} {kind}")
        if (body.get("metadata") or {}).get("name") != name:
            raise ApiError(
                400,
                f"the name of the object ({(body.get('metadata') or {}).get('name')}) does not match the name on the URL ({name})",
            )
        if namespaced and namespace not in self._store.namespaces:
            raise ApiError(404, f'namespaces "{namespace}" not found', name=namespace, kind="namespaces")
        key = (plural, namespace, name)
        current = self._store.objects.get(key)
        if current is None:
            obj = self._new(body)
            if namespaced:
                obj["metadata"]["namespace"] = namespace
            protection = {"persistentvolumeclaims": PVC_PROTECTION, "persistentvolumes": PV_PROTECTION}.get(plural)
            if protection:
                obj["metadata"].setdefault("finalizers", []).append(protection)
        else:
            if current["metadata"].get("deletionTimestamp"):
                raise ApiError(409, f'{plural} "{name}" is being deleted', name=name, kind=plural)
            if plural == "persistentvolumeclaims":
                self._check_claim_update(current, body, name)
            obj = _deep_merge(current, {k: v for k, v in body.items() if k != "status"})
            self._bump(obj)
        obj.setdefault("managedFields", [])
        obj["metadata"].setdefault("annotations", {})
        self._store.objects[key] = obj
        self._bind_claims()
        return copy.deepcopy(self._store.objects[key])

    def _storage_delete(self, request, plural: str, name: str, namespace: str | None = None) -> dict:
        obj = self._existing_object(plural, name, namespace)
        if not obj["metadata"].get("deletionTimestamp"):
            obj["metadata"]["deletionTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            self._bump(obj)
        self._finish_deletions()
        return copy.deepcopy(obj)

    # ----- controllers -----------------------------------------------------------------------------
    def _existing_object(self, plural: str, name: str, namespace: str | None) -> dict:
        from tests.k8s_double.server import ApiError

        obj = self._store.objects.get((plural, namespace, name))
        if obj is None:
            raise ApiError(404, f'{plural} "{name}" not found', name=name, kind=plural)
        return obj

    @staticmethod
    def _check_claim_update(current: dict, body: dict, name: str) -> None:
        from tests.k8s_double.server import ApiError

        old = {k: v for k, v in current.get("spec", {}).items() if k != "resources"}
        new = _deep_merge(current.get("spec", {}), body.get("spec", {}))
        new.pop("resources", None)
        if old != new:
            raise ApiError(
                422,
                f'PersistentVolumeClaim "{name}" is invalid: spec: Forbidden: spec is immutable after creation '
                "except resources.requests and volumeAttributesClassName for bound claims",
                name=name,
                kind="PersistentVolumeClaim",
            )

    def _bind_claims(self) -> None:
        volumes = {n: o for (p, _, n), o in self._store.objects.items() if p == "persistentvolumes"}
        for (plural, namespace, name), claim in self._store.objects.items():
            if plural != "persistentvolumeclaims":
                continue
            spec = claim.get("spec", {})
            pv = volumes.get(spec.get("volumeName", ""))
            phase = "Pending"
            if pv is not None and self._matches(pv, claim, namespace, name):
                phase = "Bound"
                pv["spec"]["claimRef"] = {
                    "kind": "PersistentVolumeClaim",
                    "namespace": namespace,
                    "name": name,
                    "uid": claim["metadata"]["uid"],
                    "apiVersion": "v1",
                }
                pv["status"] = {"phase": "Bound"}
                claim["status"] = {
                    "phase": "Bound",
                    "accessModes": list(pv["spec"].get("accessModes", [])),
                    "capacity": dict(pv["spec"].get("capacity", {})),
                }
            else:
                claim["status"] = {"phase": phase}
        for pv in volumes.values():
            ref = pv.get("spec", {}).get("claimRef")
            if ref and ("persistentvolumeclaims", ref.get("namespace"), ref.get("name")) not in self._store.objects:
                if ref.get("uid"):  # it was bound, and its claim is gone
                    pv["status"] = {"phase": "Released"}
            elif not ref:
                pv["status"] = {"phase": "Available"}

    @staticmethod
    def _matches(pv: dict, claim: dict, namespace: str, name: str) -> bool:
        spec, want = pv.get("spec", {}), claim.get("spec", {})
        ref = spec.get("claimRef")
        if ref and (ref.get("namespace"), ref.get("name")) != (namespace, name):
            return False
        if spec.get("storageClassName", "") != want.get("storageClassName", ""):
            return False
        if not set(want.get("accessModes", [])) <= set(spec.get("accessModes", [])):
            return False
        requested = (want.get("resources") or {}).get("requests", {}).get("storage", "0")
        return quantity_bytes(spec.get("capacity", {}).get("storage", "0")) >= quantity_bytes(requested)

    def _claim_in_use(self, namespace: str, name: str) -> bool:
        for (ns, _), pod in self._store.pods.items():
            if ns != namespace:
                continue
            for volume in (pod.get("spec") or {}).get("volumes") or []:
                if (volume.get("persistentVolumeClaim") or {}).get("claimName") == name:
                    return True
        return False

    def _finish_deletions(self) -> None:
        """Drop deleted objects whose protection finalizer no longer holds, until nothing changes."""
        changed = True
        while changed:
            changed = False
            for key, obj in list(self._store.objects.items()):
                if not obj["metadata"].get("deletionTimestamp"):
                    continue
                plural, namespace, name = key
                if plural == "persistentvolumeclaims" and self._claim_in_use(namespace, name):
                    continue
                if plural == "persistentvolumes":
                    ref = obj.get("spec", {}).get("claimRef") or {}
                    if ("persistentvolumeclaims", ref.get("namespace"), ref.get("name")) in self._store.objects:
                        continue
                del self._store.objects[key]
                self._revision += 1
                changed = True
            self._bind_claims()

    def discovery_groups(self) -> list[dict[str, Any]]:
        return [
            {
                "name": "storage.k8s.io",
                "versions": [{"groupVersion": "storage.k8s.io/v1", "version": "v1"}],
                "preferredVersion": {"groupVersion": "storage.k8s.io/v1", "version": "v1"},
            }
        ]
